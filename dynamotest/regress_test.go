// regress_test.go: the smallest reproductions of root-package bugs the simulation found (§4.4, §4.7; DESIGN §2).
package dynamotest_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

// TestBug_DuplicatedForwardedPut: a Put made through a node that is not a
// replica of the key is forwarded (kindPut) to a replica, which mints a new
// dot for it. When the network delivers that request twice (memnet
// SetDuplicate, or a retry after a lost reply), the replica coordinates it
// twice and one write becomes two siblings with the same value: a false
// conflict (DESIGN §2: siblings never outnumber truly concurrent writers).
// Found by TestSim_Union (18 of seeds 1-50 at 839e8c0); fixed in 8457712 by
// request IDs that replicas deduplicate.
func TestBug_DuplicatedForwardedPut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := memnet.New(memnet.Options{Seed: 1})
		var ms []membership.Member
		for i := range 4 {
			ms = append(ms, membership.Member{ID: fmt.Sprint("n", i), Addr: fmt.Sprint("n", i)})
		}
		members := membership.NewStatic(ms...)
		stores := make([]*dynamo.Store, len(ms))
		for i, m := range ms {
			tr, err := net.Listen(m.Addr)
			require.NoError(t, err)
			cfg := dynamo.DefaultConfig()
			cfg.NodeID, cfg.Transport, cfg.Storage, cfg.Membership, cfg.Partitions = m.ID, tr, memory.New(), members, 64
			stores[i], err = dynamo.New(cfg)
			require.NoError(t, err)
			defer tr.Close()
			defer stores[i].Close()
		}
		key := []byte("k")
		outsider := stores[0].PreferenceList(key, len(ms))[3] // not one of the N=3 replicas
		via := stores[slices.IndexFunc(ms, func(m membership.Member) bool { return m.ID == outsider.ID })]

		net.SetDuplicate(1)
		require.NoError(t, via.Put(context.Background(), key, []byte("v"), dynamo.Context{}))
		net.SetDuplicate(0)
		synctest.Wait()

		sibs, _, err := via.Get(context.Background(), key, dynamo.WithR(3))
		require.NoError(t, err)
		require.Len(t, sibs, 1, "one forwarded Put, delivered twice, became %d siblings", len(sibs))
	})
}

// purgeSpy calls onPurge, once, right after its storage deletes a key that
// ends with suffix: the moment a replica applies a tombstone purge.
type purgeSpy struct {
	storage.Storage
	suffix  []byte
	once    sync.Once
	onPurge func()
}

func (p *purgeSpy) Update(key []byte, fn func(cur []byte) ([]byte, error)) error {
	deleted := false
	err := p.Storage.Update(key, func(cur []byte) ([]byte, error) {
		out, err := fn(cur)
		deleted = err == nil && cur != nil && out == nil && bytes.HasSuffix(key, p.suffix)
		return out, err
	})
	if err == nil && deleted {
		p.once.Do(p.onPurge)
	}
	return err
}

// TestBug_PartialPurgeReusesDots: a tombstone purge that reaches only some
// replicas loses a later acknowledged write. The first primary confirms that
// all three primaries hold the same tombstone-only state, then asks each to
// purge it; here the third never gets the request (it is cut off right after
// the second purged). The purged replicas have forgotten the key's version
// vector, so the next write coordinated by the first primary mints its
// actor's counter from 1 again: a dot the unpurged replica's vector already
// covers. The write is acknowledged (W=2 without the third replica), and as
// soon as the replicas meet again the old tombstone's vector swallows it.
// Found by TestSim_UnionStrict seed 4 and TestSim_Union seed 175 at 839e8c0
// (an element acknowledged, then missing after convergence); fixed in 8457712
// by per-key actor epochs.
func TestBug_PartialPurgeReusesDots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		key := []byte("cart")
		net := memnet.New(memnet.Options{Seed: 1})
		var ms []membership.Member
		for i := range 3 {
			ms = append(ms, membership.Member{ID: fmt.Sprint("n", i), Addr: fmt.Sprint("n", i)})
		}
		members := membership.NewStatic(ms...)
		var second, third string // the key's primaries in purge order: the first purges
		stores := map[string]*dynamo.Store{}
		for _, m := range ms {
			tr, err := net.Listen(m.Addr)
			require.NoError(t, err)
			id := m.ID
			spy := &purgeSpy{Storage: memory.New(), suffix: key, onPurge: func() {
				if id == second {
					net.Isolate(third) // the purge request to the third primary is lost
				}
			}}
			cfg := dynamo.DefaultConfig()
			cfg.NodeID, cfg.Transport, cfg.Storage, cfg.Membership, cfg.Partitions = m.ID, tr, spy, members, 64
			cfg.TombstoneGrace = time.Second
			cfg.AntiEntropy.Interval = time.Second
			cfg.PrimariesOnly = true
			st, err := dynamo.New(cfg)
			require.NoError(t, err)
			stores[m.ID] = st
			defer tr.Close()
			defer st.Close()
		}
		primaries := stores[ms[0].ID].PreferenceList(key, 3)
		first := primaries[0].ID
		second, third = primaries[1].ID, primaries[2].ID
		via := stores[first]

		require.NoError(t, via.Put(ctx, key, []byte("old"), dynamo.Context{}))
		_, c, err := via.Get(ctx, key, dynamo.WithR(3))
		require.NoError(t, err)
		require.NoError(t, via.Delete(ctx, key, c, dynamo.WithW(3)))
		<-time.After(5 * time.Second) // fake time: grace passes, the purge runs, the third replica is cut off
		synctest.Wait()

		_, c, err = via.Get(ctx, key) // reads the two purged replicas: nothing, an empty context
		require.NoError(t, err)
		require.NoError(t, via.Put(ctx, key, []byte("new"), c), "acknowledged by the two purged replicas")

		net.Heal()
		<-time.After(3 * time.Second) // fake time: read repair and anti-entropy meet the third replica
		sibs, _, err := via.Get(ctx, key, dynamo.WithR(3))
		require.NoError(t, err)
		require.Len(t, sibs, 1, "the acknowledged write of \"new\" was lost after a partial purge")
	})
}

// TestBug_RestartReusesForwardIDs: a node that is not a replica of a key
// forwards its Puts with a request ID so that the replica coordinating them
// can drop duplicate deliveries. The IDs are a hash of the node's actor plus a
// counter that starts again at zero when the Store restarts, and a clean
// restart keeps the actor. So the first Puts forwarded after a quick restart
// carry the IDs of the Puts forwarded just before it; the replica, still
// remembering those, answers with their old acknowledgement and stores
// nothing. Found by TestSim_UnionStrict seed 33 and TestSim_Union seed 38 at
// 8457712 (an add acknowledged through a node restarted 4ms earlier, then
// missing).
func TestBug_RestartReusesForwardIDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		key := []byte("k")
		net := memnet.New(memnet.Options{Seed: 1})
		var ms []membership.Member
		for i := range 4 {
			ms = append(ms, membership.Member{ID: fmt.Sprint("n", i), Addr: fmt.Sprint("n", i)})
		}
		members := membership.NewStatic(ms...)
		start := func(m membership.Member, disk dynamo.Storage) (*dynamo.Store, *memnet.Transport) {
			tr, err := net.Listen(m.Addr)
			require.NoError(t, err)
			cfg := dynamo.DefaultConfig()
			cfg.NodeID, cfg.Transport, cfg.Storage, cfg.Membership, cfg.Partitions = m.ID, tr, disk, members, 64
			st, err := dynamo.New(cfg)
			require.NoError(t, err)
			return st, tr
		}
		stores := make([]*dynamo.Store, len(ms))
		trs := make([]*memnet.Transport, len(ms))
		disks := make([]dynamo.Storage, len(ms))
		for i, m := range ms {
			disks[i] = memory.New()
			stores[i], trs[i] = start(m, disks[i])
		}
		defer func() {
			for i := range stores {
				stores[i].Close()
				trs[i].Close()
			}
		}()
		outsider := stores[0].PreferenceList(key, len(ms))[3] // not one of the N=3 replicas
		o := slices.IndexFunc(ms, func(m membership.Member) bool { return m.ID == outsider.ID })

		require.NoError(t, stores[o].Put(ctx, key, []byte("before"), dynamo.Context{}))
		require.NoError(t, stores[o].Close()) // a clean restart keeps the incarnation
		require.NoError(t, trs[o].Close())
		stores[o], trs[o] = start(ms[o], disks[o])
		require.NoError(t, stores[o].Put(ctx, key, []byte("after"), dynamo.Context{}))

		sibs, _, err := stores[o].Get(ctx, key, dynamo.WithR(3))
		require.NoError(t, err)
		var got []string
		for _, sb := range sibs {
			got = append(got, string(sb.Value))
		}
		require.ElementsMatch(t, []string{"before", "after"}, got, "the acknowledged Put of \"after\" was not stored")
	})
}
