// bigvalues_test.go: values at Limits.MaxValueSize through every path that
// moves data between nodes (§4.5-§4.9), on real TCP and bbolt: put, get, read
// repair, hint delivery, anti-entropy exchange, join transfer and leave push.
// Each path moves more than one 16 MiB frame's worth of values at once.
package dynamo

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/storage/bolt"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// tcpCluster is Stores on TCP (127.0.0.1) and bbolt, with a static member
// list the test drives.
type tcpCluster struct {
	t       testing.TB
	dir     string
	members *membership.Static
	stores  map[string]*Store
	closers map[string]func()
}

func newTCPCluster(t testing.TB, ids ...string) *tcpCluster {
	c := &tcpCluster{t: t, dir: t.TempDir(), members: membership.NewStatic(), stores: map[string]*Store{}, closers: map[string]func(){}}
	for _, id := range ids {
		c.start(id)
	}
	return c
}

// stop closes node id (store, transport, bbolt), keeping its data directory,
// and marks it down.
func (c *tcpCluster) stop(id string) {
	c.closers[id]()
	c.members.SetReachable(id, false)
}

func (c *tcpCluster) start(id string) *Store {
	c.t.Helper()
	tr, err := tcp.Listen("127.0.0.1:0", tcp.Options{})
	require.NoError(c.t, err)
	db, err := bolt.Open(filepath.Join(c.dir, id+".db"), &bolt.Options{LogSize: 16 << 20})
	require.NoError(c.t, err)
	c.members.Add(Member{ID: id, Addr: tr.Addr()})
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Partitions = id, 64
	cfg.Transport, cfg.Storage, cfg.Membership = tr, db, c.members
	// Generous timeouts: 1 MiB values under -race on a loaded machine.
	cfg.ReplicaTimeout, cfg.RequestTimeout = 20*time.Second, time.Minute
	cfg.AntiEntropy.Interval = -1
	cfg.Handoff.Interval = time.Hour
	s, err := New(cfg)
	require.NoError(c.t, err)
	c.stores[id] = s
	c.closers[id] = func() {
		s.Close()
		tr.Close()
		db.Close()
	}
	c.t.Cleanup(c.closers[id])
	return s
}

func TestBigValues_EveryPath(t *testing.T) {
	if testing.Short() {
		t.Skip("moves about 100 MiB through TCP and bbolt; skipped in -short")
	}
	c := newTCPCluster(t, "a", "b", "c", "d")
	ctx := context.Background()
	a := c.stores["a"]
	size := a.cfg.Limits.MaxValueSize
	const perPath = 17 // 17 MiB: more than one frame

	// keysOn returns n new keys (named prefix-i) whose primaries are a, b and
	// c, in any order, and whose first fallback is d: so one fallback holds
	// every hint for b, and one peer of b holds every key b misses, more
	// than a frame's worth in one batch unless batches are bounded in bytes.
	keysOn := func(prefix string, n int) [][]byte {
		var out [][]byte
		for i := 0; len(out) < n; i++ {
			k := fmt.Appendf(nil, "%s-%04d", prefix, i)
			if pref := a.PreferenceList(k, 4); pref[3].ID == "d" {
				out = append(out, k)
			}
		}
		return out
	}
	readBack := func(via *Store, keys [][]byte, r int) {
		t.Helper()
		for i, k := range keys {
			sibs, _, err := via.Get(ctx, k, WithR(r))
			require.NoError(t, err, "get %s", k)
			require.Len(t, sibs, 1, "get %s", k)
			require.Equal(t, bigValue(i, size), sibs[0].Value, "get %s", k)
		}
	}
	holdsAll := func(id string, keys [][]byte, what string) {
		t.Helper()
		for i, k := range keys {
			sibs, err := c.stores[id].LocalGet(k)
			require.NoError(t, err)
			require.Len(t, sibs, 1, "%s: %s holds %s", what, id, k)
			require.Equal(t, bigValue(i, size), sibs[0].Value, "%s: %s holds %s", what, id, k)
		}
	}

	t.Run("put and get", func(t *testing.T) {
		keys := keysOn("pg", perPath)
		for i, k := range keys {
			require.NoError(t, a.Put(ctx, k, bigValue(i, size), Context{}))
		}
		readBack(c.stores["c"], keys, 2)
	})

	t.Run("read repair", func(t *testing.T) {
		keys := keysOn("rr", perPath)
		c.members.SetReachable("b", false)
		for i, k := range keys {
			require.NoError(t, a.Put(ctx, k, bigValue(i, size), Context{}, WithPrimariesOnly()))
		}
		c.members.SetReachable("b", true)
		before := a.Stats().ReadRepairs
		readBack(a, keys, 3)
		eventually(t, func() bool { return a.Stats().ReadRepairs-before >= perPath }, "every stale replica repaired")
		holdsAll("b", keys, "read repair")
	})

	t.Run("hint delivery", func(t *testing.T) {
		keys := keysOn("hd", perPath)
		c.members.SetReachable("b", false)
		for i, k := range keys {
			require.NoError(t, a.Put(ctx, k, bigValue(i, size), Context{}))
		}
		c.members.SetReachable("b", true)
		d := c.stores["d"]
		// The hint write may finish just after the acknowledgement.
		eventually(t, func() bool { return pendingFor(d, "b") == perPath }, "d holds every hint for b")
		for pendingFor(d, "b") > 0 {
			_, err := d.DeliverHints(ctx)
			require.NoError(t, err)
		}
		holdsAll("b", keys, "hint delivery")
	})

	t.Run("anti-entropy exchange", func(t *testing.T) {
		keys := keysOn("ae", perPath)
		c.members.SetReachable("b", false)
		for i, k := range keys {
			require.NoError(t, a.Put(ctx, k, bigValue(i, size), Context{}, WithPrimariesOnly()))
		}
		c.members.SetReachable("b", true)
		res, err := c.stores["a"].AntiEntropy(ctx) // a holds every key b misses
		require.NoError(t, err)
		require.GreaterOrEqual(t, res.KeysSent, perPath)
		require.Greater(t, res.BytesSent, int64(perPath*size))
		holdsAll("b", keys, "anti-entropy")
	})

	var all [][]byte
	values := map[string][]byte{}
	for _, pfx := range []string{"pg", "rr", "hd", "ae"} {
		for i, k := range keysOn(pfx, perPath) {
			all = append(all, k)
			values[string(k)] = bigValue(i, size)
		}
	}
	checkAll := func(via *Store) {
		t.Helper()
		for _, k := range all {
			sibs, _, err := via.Get(ctx, k, WithR(3))
			require.NoError(t, err, "get %s", k)
			require.Len(t, sibs, 1, "get %s", k)
			require.Equal(t, values[string(k)], sibs[0].Value, "get %s", k)
		}
	}

	t.Run("join transfer", func(t *testing.T) {
		e := c.start("e")
		require.NoError(t, e.TransferRound(ctx))
		require.Zero(t, e.PendingTransfers())
		owned := 0
		for _, k := range all {
			if containsID(e.PreferenceList(k, 3), "e") {
				sibs, err := e.LocalGet(k)
				require.NoError(t, err)
				require.Len(t, sibs, 1, "e pulled %s", k)
				owned++
			}
		}
		require.Greater(t, owned, perPath, "e took more than a frame's worth")
		for _, id := range []string{"a", "b", "c", "d"} {
			require.NoError(t, c.stores[id].TransferRound(ctx), "%s hands e's partitions over", id)
		}
		checkAll(a)
	})

	t.Run("leave push", func(t *testing.T) {
		e := c.stores["e"]
		held := 0
		for _, k := range all {
			if sibs, err := e.LocalGet(k); err == nil && len(sibs) == 1 {
				held++
			}
		}
		require.Greater(t, held, perPath, "e pushes more than a frame's worth")
		require.NoError(t, e.Decommission(ctx))
		e.Close()
		c.members.Remove("e")
		eventually(t, func() bool { return len(a.Members()) == 4 }, "e left a's ring")
		checkAll(c.stores["b"])
	})
}
