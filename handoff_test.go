// handoff_test.go: §4.6 sloppy quorum and hinted handoff on the in-memory
// network, in fake time.
package dynamo

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport"
)

// indexOf returns the cluster index of node id.
func indexOf(id string) int {
	var i int
	fmt.Sscanf(id, "n%d", &i)
	return i
}

// down makes node id unreachable: cut off on the network and reported down by
// the failure detector.
func (c *testCluster) down(id string) {
	c.net.Isolate(id)
	c.members.SetReachable(id, false)
}

// up reverses down for every node.
func (c *testCluster) upAll() {
	c.net.Heal()
	for i := range c.stores {
		c.members.SetReachable(nodeID(i), true)
	}
}

func pendingFor(s *Store, id string) int { return s.Stats().Hints.Pending[id] }

// ownerDownWithHint starts 5 nodes in a bubble, takes down the third primary
// of key "k", writes "v" through the first at (3,2,2), and checks the first
// fallback took a hint. It returns the cluster indexes of the first primary,
// the down owner and that fallback.
func ownerDownWithHint(t *testing.T) (c *testCluster, key string, pref []Member, p1, p3, f1 int) {
	t.Helper()
	c = newTestCluster(t, 5, nil)
	key = "k"
	pref = c.stores[0].PreferenceList([]byte(key), 5)
	p1, p3, f1 = indexOf(pref[0].ID), indexOf(pref[2].ID), indexOf(pref[3].ID)
	c.down(pref[2].ID)
	put(t, c.stores[p1], key, "v", Context{})
	synctest.Wait()
	require.Equal(t, 1, pendingFor(c.stores[f1], pref[2].ID), "the first fallback holds a hint for the owner")
	require.Empty(t, c.local(p3, key), "the owner missed the write")
	return c, key, pref, p1, p3, f1
}

// advance moves a synctest bubble's fake clock forward by d: every timer due
// meanwhile fires, as the background loops expect.
func advance(d time.Duration) {
	time.Sleep(d) // inside a bubble: fake time, returns once every goroutine is idle
}

// untilFake advances a synctest bubble's fake clock in small steps until cond
// holds, failing if that takes longer than limit (of fake time).
func untilFake(t *testing.T, limit time.Duration, cond func() bool, msg string) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("after %v of fake time: %s", limit, msg)
		}
		advance(10 * time.Millisecond)
	}
}

// Reference: §4.6 "hinted handoff": with an owner down, a (3,2,2) Put
// succeeds, a fallback keeps a hint, and when the owner returns it receives
// the value and the fallback deletes the hint.
func TestHandoff_OwnerDown_HintDeliveredOnReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, key, pref, p1, p3, f1 := ownerDownWithHint(t)

		vals, _ := get(t, c.stores[p1], key)
		require.Equal(t, []string{"v"}, vals, "reads during the outage see the write")

		c.upAll()
		untilFake(t, c.stores[f1].cfg.Handoff.Interval, func() bool { return pendingFor(c.stores[f1], pref[2].ID) == 0 },
			"the hint is delivered within the handoff interval")
		require.Equal(t, []string{"v"}, c.local(p3, key), "the owner holds the value")
		require.Equal(t, int64(1), c.stores[f1].Stats().Hints.Delivered)
	})
}

// Reference: §4.6 "the first N healthy nodes": with two of three owners down
// the write lands on fallbacks, and a read at R=2 finds it there.
func TestHandoff_TwoOwnersDown_WriteAndReadThroughFallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 5, nil)
		key := "k"
		pref := c.stores[0].PreferenceList([]byte(key), 5)
		p1 := indexOf(pref[0].ID)
		c.down(pref[1].ID)
		c.down(pref[2].ID)

		put(t, c.stores[p1], key, "outage", Context{})
		vals, cx := get(t, c.stores[p1], key, WithR(2))
		require.Equal(t, []string{"outage"}, vals)
		put(t, c.stores[p1], key, "outage-2", cx)
		vals, _ = get(t, c.stores[indexOf(pref[3].ID)], key, WithR(2))
		require.Equal(t, []string{"outage-2"}, vals, "a fallback coordinates the read too")

		c.upAll()
		untilFake(t, 2*c.stores[0].cfg.Handoff.Interval, func() bool { return c.totalPending() == 0 }, "every hint delivered")
		for _, id := range []string{pref[1].ID, pref[2].ID} {
			require.Equal(t, []string{"outage-2"}, c.local(indexOf(id), key), "owner %s got the write home", id)
		}
	})
}

func (c *testCluster) totalPending() int {
	n := 0
	for _, s := range c.stores {
		for _, p := range s.Stats().Hints.Pending {
			n += p
		}
	}
	return n
}

// A primaries-only write (Riak's PW) with two of three owners down fails at
// once and writes nothing anywhere.
func TestHandoff_PrimariesOnly_FailsAndWritesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 5, nil)
		key := "k"
		pref := c.stores[0].PreferenceList([]byte(key), 5)
		p1 := indexOf(pref[0].ID)
		c.down(pref[1].ID)
		c.down(pref[2].ID)

		err := c.stores[p1].Put(context.Background(), []byte(key), []byte("v"), Context{}, WithPrimariesOnly())
		require.ErrorIs(t, err, ErrWriteQuorum)
		require.Contains(t, err.Error(), "primaries only")
		// forwarded from a non-replica, too
		err = c.stores[indexOf(pref[4].ID)].Put(context.Background(), []byte(key), []byte("v"), Context{}, WithPrimariesOnly())
		require.ErrorIs(t, err, ErrWriteQuorum)
		synctest.Wait()
		for i := range c.stores {
			require.Empty(t, c.local(i, key), "node %d stored nothing", i)
			require.Zero(t, c.stores[i].Stats().Hints.Stored, "node %d took no hint", i)
		}
		c.upAll()
	})
}

// A fallback at its hint bound declines; the coordinator tries the next one.
func TestHandoff_HintBound_NextFallbackTakesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 5, func(cfg *Config) { cfg.Handoff.MaxHints = 1 })
		key := "k"
		pref := c.stores[0].PreferenceList([]byte(key), 5)
		p1, f1, f2 := indexOf(pref[0].ID), indexOf(pref[3].ID), indexOf(pref[4].ID)
		c.down(pref[2].ID)
		// fill f1's hint store with an undeliverable hint for the down owner
		filler := state{VV: versionVector{{"x/1", 1}}, Siblings: []sibling{{Dot: dot{"x/1", 1}, Value: []byte("o")}}}
		require.NoError(t, c.stores[f1].hintLocal(pref[2].ID, []byte("other"), filler))
		require.ErrorIs(t, c.stores[f1].hintLocal(pref[2].ID, []byte("third"), filler), ErrHintsFull)

		put(t, c.stores[p1], key, "v", Context{})
		synctest.Wait()
		require.Equal(t, int64(2), c.stores[f1].Stats().Hints.Refused, "f1 declined the new hint too")
		require.Equal(t, 1, pendingFor(c.stores[f2], pref[2].ID), "the next fallback took it")
		c.upAll()
	})
}

// Delivery is throttled by Handoff.Rate and Handoff.Concurrency.
func TestHandoff_Throttle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		probe := &deliveryProbe{max: map[string]int{}, cur: map[string]int{}}
		c := newTestCluster(t, 5, func(cfg *Config) {
			cfg.Handoff.Rate, cfg.Handoff.Concurrency = 20, 2
			if cfg.NodeID == nodeID(4) {
				probe.Transport = cfg.Transport
				cfg.Transport = probe
			}
		})
		c.down(nodeID(4))
		const keys = 60
		holders := map[int]bool{}
		for i := range keys {
			key := fmt.Sprintf("key-%d", i)
			pref := c.stores[0].PreferenceList([]byte(key), 5)
			if !containsID(pref[:3], nodeID(4)) {
				continue
			}
			via := pref[0].ID
			if via == nodeID(4) {
				via = pref[1].ID
			}
			put(t, c.stores[indexOf(via)], key, "v", Context{})
		}
		synctest.Wait()
		total := 0
		for i := range 4 {
			if n := pendingFor(c.stores[i], nodeID(4)); n > 0 {
				holders[i] = true
				total += n
			}
		}
		require.Greater(t, total, 10)
		start := time.Now()
		c.upAll()
		untilFake(t, time.Minute, func() bool { return c.totalPending() == 0 }, "every hint delivered")
		elapsed := time.Since(start)
		// each holder paces itself at 20/s, so the busiest one bounds the time
		busiest := 0
		for i := range holders {
			busiest = max(busiest, int(c.stores[i].Stats().Hints.Delivered))
			require.LessOrEqual(t, probe.most(nodeID(i)), 2, "concurrency bound on node %d", i)
		}
		// hints go in chunks of Rate/10 = 2; the first chunk is not delayed
		require.GreaterOrEqual(t, elapsed, time.Duration(busiest-2)*time.Second/20, "rate bound")
	})
}

// Hints are durable: a fallback that restarts on the same storage still
// delivers them.
func TestHandoff_FallbackRestart_StillDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, key, pref, _, p3, f1 := ownerDownWithHint(t)

		c.stop(f1)
		c.start(f1, c.storages[f1])
		require.Equal(t, 1, pendingFor(c.stores[f1], pref[2].ID), "the hint survived the restart")
		c.upAll()
		untilFake(t, 2*c.stores[f1].cfg.Handoff.Interval, func() bool { return pendingFor(c.stores[f1], pref[2].ID) == 0 }, "delivered after restart")
		require.Equal(t, []string{"v"}, c.local(p3, key))
	})
}

// deliveryProbe wraps a node's transport and records, per sender, the most
// hint deliveries (push-only exchanges) it served at once.
type deliveryProbe struct {
	Transport
	mu       sync.Mutex
	cur, max map[string]int
}

func (p *deliveryProbe) Serve(h transport.Handler) error {
	return p.Transport.Serve(func(ctx context.Context, req []byte) ([]byte, error) {
		m, err := decodeMessage(req, wtLimits)
		if err != nil {
			return h(ctx, req)
		}
		if ex, ok := m.Body.(*exchangeReq); !ok || !ex.PushOnly {
			return h(ctx, req)
		}
		p.mu.Lock()
		p.cur[m.From]++
		p.max[m.From] = max(p.max[m.From], p.cur[m.From])
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.cur[m.From]--
			p.mu.Unlock()
		}()
		return h(ctx, req)
	})
}

func (p *deliveryProbe) most(from string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max[from]
}
