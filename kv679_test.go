// kv679_test.go: DESIGN §2 (Riak kv679) a node that loses part of its data
// but keeps its identity must never issue a dot twice: Riak's own kv679
// scenarios, ported (issue 20).
package dynamo

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage/memory"
)

// kvCluster starts n nodes whose background handoff and anti-entropy wait
// for the test (it calls them), with replication n, r, w.
func kvCluster(t *testing.T, nodes, n, r, w int) *testCluster {
	return newTestCluster(t, nodes, func(cfg *Config) {
		cfg.N, cfg.R, cfg.W = n, r, w
		cfg.Handoff.Interval = time.Hour
		cfg.AntiEntropy.Interval = -1
	})
}

// setDown leaves exactly the nodes ids down: cut off on the network and
// reported down by the failure detector; every other node is up. The nodes
// going down go down before any other comes up, so that no background work
// (a hint delivery woken by the membership change) slips through.
func (c *testCluster) setDown(ids ...string) {
	for _, id := range ids {
		c.members.SetReachable(id, false)
	}
	c.net.Heal()
	for _, id := range ids {
		c.net.Isolate(id)
	}
	for i := range c.stores {
		if !slices.Contains(ids, nodeID(i)) {
			c.members.SetReachable(nodeID(i), true)
		}
	}
}

// snapshot copies node i's storage, as a disk image would.
func (c *testCluster) snapshot(i int) *memory.Store {
	c.t.Helper()
	cp := memory.New()
	require.NoError(c.t, c.storages[i].ForEach(nil, func(k, v []byte) error {
		return cp.Update(k, func([]byte) ([]byte, error) { return v, nil })
	}))
	return cp
}

// loseKey restarts node i without its record of key, keeping its identity
// (the rest of its storage).
func (c *testCluster) loseKey(i int, key string) {
	c.t.Helper()
	dk := c.stores[i].dataKey(c.stores[i].ring.Load(), []byte(key))
	c.stop(i)
	require.NoError(c.t, c.storages[i].Update(dk, func([]byte) ([]byte, error) { return nil, nil }))
	c.start(i, c.storages[i])
}

// healAndConverge brings every node up, delivers every hint and runs
// anti-entropy until the replicas of key agree; it returns their state. No
// merge may have met one dot carrying two versions: no dot was issued twice
// (a merge would keep both, but contexts that covered the dot no longer say
// which one they saw).
func (c *testCluster) healAndConverge(t *testing.T, key string) state {
	t.Helper()
	c.setDown()
	synctest.Wait()
	for range 3 {
		for _, s := range c.stores {
			s.DeliverHints(context.Background())
		}
		synctest.Wait()
	}
	st := requireConverged(t, c, key)
	for i, s := range c.stores {
		require.Zero(t, s.Stats().DotConflicts, "node %d met a dot issued twice", i)
	}
	return st
}

// Reference: issue 20 scenario 1, "a rolled-back disk": A's storage goes back
// to before "bob" with its identity kept. The write A then coordinates must
// not reuse bob's dot: every read returns all three writes, and the replicas
// converge.
func TestKV679_RolledBackDisk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := kvCluster(t, 3, 3, 2, 3)
		a := 0
		put(t, c.stores[a], "k", "phil", Context{})
		image := c.snapshot(a)
		put(t, c.stores[a], "k", "bob", Context{})

		c.stop(a)
		c.setDown(nodeID(1), nodeID(2)) // A comes back alone: it cannot catch up first
		c.start(a, image)
		put(t, c.stores[a], "k", "jon", Context{}, WithW(1))

		st := c.healAndConverge(t, "k")
		require.Equal(t, []string{"bob", "jon", "phil"}, liveValues(st))
		for i := range c.stores {
			vals, _ := get(t, c.stores[i], "k", WithR(3))
			require.Equal(t, []string{"bob", "jon", "phil"}, vals, "read through node %d", i)
		}
	})
}

// Reference: issue 20 scenario 2, Riak's kv679_dataloss_fb (6 nodes): with B
// and C down, A writes "joe" (over "phil") to fallbacks; A then loses its
// record of the key, keeping its identity; B returns and a read gives A the
// older state ("phil"); A coordinates "anne" over it at W=3. Once C returns
// and the fallbacks hand off, "anne" must be there (beside "joe", which it
// did not see).
func TestKV679_DataLossFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := kvCluster(t, 6, 3, 2, 3)
		pref := c.stores[0].PreferenceList([]byte("k"), 6)
		a, b, cc := indexOf(pref[0].ID), pref[1].ID, pref[2].ID
		d, e := pref[3].ID, pref[4].ID

		put(t, c.stores[a], "k", "phil", Context{})
		c.setDown(b, cc)
		_, cx := get(t, c.stores[a], "k", WithR(1))
		put(t, c.stores[a], "k", "joe", cx) // on A and, as hints, on D and E
		require.Equal(t, 1, pendingFor(c.stores[indexOf(d)], b)+pendingFor(c.stores[indexOf(d)], cc))

		c.loseKey(a, "k")
		c.setDown(cc, d, e) // B is back; the hints for it are out of reach
		synctest.Wait()
		vals, cx := get(t, c.stores[a], "k", WithR(2))
		require.Equal(t, []string{"phil"}, vals, "A read the older state")
		put(t, c.stores[a], "k", "anne", cx) // on A, B and a fallback for C
		vals, _ = get(t, c.stores[a], "k", WithR(2))
		require.Contains(t, vals, "anne", "anne reads back right after the write")

		st := c.healAndConverge(t, "k")
		require.Equal(t, []string{"anne", "joe"}, liveValues(st))
	})
}

// Reference: issue 20 scenario 3, Riak's kv679_dataloss_fb2 (N=2, 5 nodes, a
// partition): B is cut off while A writes "joe" (a fallback keeps it for B);
// A loses its record of the key; the partition moves so that the fallback is
// cut off and B is back; A reads B's older state and writes "emma" over it.
// After healing, "emma" must be there beside "joe".
func TestKV679_DataLossFallbackPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := kvCluster(t, 5, 2, 1, 2)
		pref := c.stores[0].PreferenceList([]byte("k"), 5)
		a, b, f := indexOf(pref[0].ID), pref[1].ID, pref[2].ID

		put(t, c.stores[a], "k", "x", Context{})
		c.setDown(b)
		_, cx := get(t, c.stores[a], "k", WithR(1))
		put(t, c.stores[a], "k", "joe", cx) // on A and, as a hint, on F
		require.Equal(t, 1, pendingFor(c.stores[indexOf(f)], b))

		c.loseKey(a, "k")
		c.setDown(f)
		synctest.Wait()
		vals, cx := get(t, c.stores[a], "k", WithR(2))
		require.Equal(t, []string{"x"}, vals, "A read B's older state")
		put(t, c.stores[a], "k", "emma", cx)

		st := c.healAndConverge(t, "k")
		require.Equal(t, []string{"emma", "joe"}, liveValues(st))
	})
}

// record returns node i's stored bytes for key.
func (c *testCluster) record(i int, key string) []byte {
	c.t.Helper()
	raw, err := c.storages[i].Get(c.stores[i].dataKey(c.stores[i].ring.Load(), []byte(key)))
	require.NoError(c.t, err)
	return raw
}

// setRecord overwrites node i's stored bytes for key behind its Store's back,
// as a storage that silently lost a write would.
func (c *testCluster) setRecord(i int, key string, raw []byte) {
	c.t.Helper()
	dk := c.stores[i].dataKey(c.stores[i].ring.Load(), []byte(key))
	require.NoError(c.t, c.storages[i].Update(dk, func([]byte) ([]byte, error) { return raw, nil }))
}

// Reference: issue 20 "evidence": A's record of the key silently goes back
// two versions while A runs. A client then writes through A with a context
// that shows A's actor beyond A's record: A must take a fresh epoch, or its
// next counter reuses the dot of a write the client never saw.
func TestKV679_ContextShowsLostDots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := kvCluster(t, 3, 3, 2, 3)
		put(t, c.stores[0], "k", "v1", Context{})
		_, cx := get(t, c.stores[0], "k", WithR(3))
		put(t, c.stores[0], "k", "v2", cx)
		old := c.record(0, "k")
		_, cx = get(t, c.stores[0], "k", WithR(3))
		put(t, c.stores[0], "k", "v3", cx)
		_, seen := get(t, c.stores[0], "k", WithR(3)) // the client saw v3
		put(t, c.stores[1], "k", "v4", Context{})     // a blind write the client did not see
		_, cx = get(t, c.stores[0], "k", WithR(3))
		put(t, c.stores[0], "k", "v5", cx) // A's actor is now one past the client's context

		c.setRecord(0, "k", old)
		put(t, c.stores[0], "k", "client", seen, WithW(1))
		st := c.healAndConverge(t, "k")
		require.Equal(t, []string{"client", "v5"}, liveValues(st))
	})
}

// Reference: issue 20 "evidence": A's record of the key silently goes back
// while A runs, after A wrote a version that only a fallback holds (two
// primaries were down). A read repair then shows A a peer's state with A's
// actor beyond its record: A must stop trusting its record of the key, or
// its next write reuses the dot of the version on the fallback.
func TestKV679_PeerStateShowsLostDots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := kvCluster(t, 5, 3, 2, 2)
		pref := c.stores[0].PreferenceList([]byte("k"), 5)
		a, b, cc, f1, f2 := indexOf(pref[0].ID), pref[1].ID, pref[2].ID, pref[3].ID, pref[4].ID
		put(t, c.stores[a], "k", "v1", Context{}, WithW(3))
		old := c.record(a, "k")
		_, cx := get(t, c.stores[a], "k", WithR(3))
		put(t, c.stores[a], "k", "v2", cx, WithW(3))
		c.setDown(b, cc)
		_, cx = get(t, c.stores[a], "k", WithR(1))
		put(t, c.stores[a], "k", "v3", cx) // A's actor at 3: on A and a fallback
		c.setRecord(a, "k", old)           // A's record goes back to 1
		c.setDown(cc, f1, f2)              // B (at 2) is back, the fallbacks are out of reach
		vals, cx := get(t, c.stores[a], "k", WithR(2))
		require.Equal(t, []string{"v2"}, vals)
		synctest.Wait() // read repair gives A B's state: its actor at 2
		put(t, c.stores[a], "k", "v4", cx)
		st := c.healAndConverge(t, "k")
		require.Equal(t, []string{"v3", "v4"}, liveValues(st))
	})
}

// Reference: issue 20 "one dot never carries two different values
// silently": replicas holding one dot with different versions (here set
// behind the Stores' backs, as a node that issued the dot twice leaves
// them) keep both, count the conflict, and converge: before, each replica
// kept its own and anti-entropy found the key differing forever.
func TestStore_DotConflict_KeepsBothAndConverges(t *testing.T) {
	c := kvCluster(t, 3, 3, 2, 2)
	put(t, c.stores[0], "k", "phil", Context{})
	requireConverged(t, c, "k")
	base, err := decodeState(c.record(0, "k"))
	require.NoError(t, err)
	reuse := func(value string, tm int64) []byte {
		st, _ := mint(base, nil, base.Siblings[0].Dot.Actor, []byte(value), false, tm)
		return encodeState(st)
	}
	c.setRecord(0, "k", reuse("jon", 2))
	c.setRecord(1, "k", reuse("bob", 1))
	c.setRecord(2, "k", reuse("bob", 1))
	for i := range c.stores { // rebuild the hash trees from the records
		c.stop(i)
		c.start(i, c.storages[i])
	}

	st := requireConverged(t, c, "k")
	require.Equal(t, []string{"bob", "jon", "phil"}, liveValues(st))
	conflicts := int64(0)
	for i := range c.stores {
		conflicts += c.stores[i].Stats().DotConflicts
		vals, _ := get(t, c.stores[i], "k", WithR(3))
		require.Equal(t, []string{"bob", "jon", "phil"}, vals)
	}
	require.Positive(t, conflicts, "the conflict is counted")
	_, cx := get(t, c.stores[1], "k", WithR(3))
	put(t, c.stores[1], "k", "merged", cx)
	require.Equal(t, []string{"merged"}, liveValues(requireConverged(t, c, "k")), "a context supersedes the moved versions")
}
