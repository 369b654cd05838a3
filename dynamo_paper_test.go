// dynamo_paper_test.go: one test per claim of the Dynamo paper, on an
// in-process cluster over the in-memory network.
package dynamo

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// Reference: §4.4 Figure 3 "Version evolution of an object over time".
func TestPaper_Figure3_VersionEvolution(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	sx, sy, sz := c.stores[0], c.stores[1], c.stores[2]
	const key = "fig3"

	put(t, sx, key, "D1", Context{})
	_, c1 := get(t, sx, key)
	put(t, sx, key, "D2", c1)
	vals, c2 := get(t, sx, key)
	require.Equal(t, []string{"D2"}, vals, "D2 descends from D1 and replaces it")

	put(t, sy, key, "D3", c2)
	put(t, sz, key, "D4", c2)
	vals, c34 := get(t, sx, key, WithR(3))
	require.Equal(t, []string{"D3", "D4"}, vals, "D3 and D4 are concurrent: both are siblings")

	put(t, sx, key, "D5", c34, WithW(3))
	vals, _ = get(t, sx, key, WithR(3))
	require.Equal(t, []string{"D5"}, vals, "D5 reconciles D3 and D4")
	for i := range c.stores {
		require.Equal(t, []string{"D5"}, c.local(i, key), "replica %d holds only D5", i)
		st, err := c.stores[i].localState([]byte(key))
		require.NoError(t, err)
		require.Len(t, st.Siblings, 1, "replica %d keeps no superseded sibling", i)
	}
}

// Reference: §4.4 "the client must perform the reconciliation", with the
// library twist of DESIGN §2: two clients that read the same context and
// write through the same coordinator must both keep their values. Plain
// per-node vector clocks would let the second write dominate the first.
func TestPaper_SameCoordinator_KeepsBothWrites(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	s := c.stores[0]
	put(t, s, "cart", "base", Context{})
	_, ctxA := get(t, s, "cart")
	_, ctxB := get(t, s, "cart")

	put(t, s, "cart", "alice", ctxA)
	put(t, s, "cart", "bob", ctxB)

	vals, _ := get(t, s, "cart", WithR(3))
	require.Equal(t, []string{"alice", "bob"}, vals)
}

// Reference: §4.5 "R + W > N yields a quorum-like system".
func TestPaper_QuorumSettings_ReadYourAckedWrite(t *testing.T) {
	settings := map[string]struct{ n, r, w int }{
		"3,2,2": {3, 2, 2},
		"3,1,3": {3, 1, 3},
		"3,3,3": {3, 3, 3},
		"3,3,1": {3, 3, 1},
	}
	for name, tc := range settings {
		t.Run(name, func(t *testing.T) {
			c := newTestCluster(t, 4, func(cfg *Config) { cfg.N, cfg.R, cfg.W = tc.n, tc.r, tc.w })
			for i := range 20 {
				key := "k" + string(rune('a'+i))
				via := c.stores[i%4]
				put(t, via, key, name, Context{})
				vals, _ := get(t, c.stores[(i+1)%4], key)
				require.Equal(t, []string{name}, vals, "key %s", key)
			}
		})
	}
}

// Reference: §4.5 with (3,1,1): R+W = N is not a quorum system, yet a write is
// still readable once replication has reached the replica read.
func TestPaper_QuorumSettings_311_EventuallyReadable(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.R, cfg.W = 1, 1 })
	put(t, c.stores[0], "k", "v", Context{})
	eventually(t, func() bool {
		vals, _ := get(t, c.stores[2], "k")
		return len(vals) == 1 && vals[0] == "v"
	}, "a (3,1,1) write replicates to every replica")
}

// Reference: §4.5 "a get or put operation ... waits for R / W responses".
// With one of three replicas cut off, (3,2,2) still reads and writes; with
// two cut off, both fail and say how far they got.
func TestPaper_Quorum_Partitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		s := c.stores[0]
		ctx := context.Background()
		put(t, s, "k", "before", Context{})

		c.net.Isolate(nodeID(2))
		_, cx := get(t, s, "k")
		put(t, s, "k", "one-down", cx)
		vals, _ := get(t, s, "k")
		require.Equal(t, []string{"one-down"}, vals)

		c.net.Isolate(nodeID(1))
		err := s.Put(ctx, []byte("k"), []byte("two-down"), Context{})
		require.ErrorIs(t, err, ErrWriteQuorum)
		var qe *QuorumError
		require.True(t, errors.As(err, &qe))
		require.Equal(t, 1, qe.Got)
		require.Equal(t, 2, qe.Need)
		require.Contains(t, err.Error(), "got 1 of 2")

		_, _, err = s.Get(ctx, []byte("k"))
		require.ErrorIs(t, err, ErrReadQuorum)
		require.Contains(t, err.Error(), "got 1 of 2")
		c.net.Heal()
	})
}

// Reference: §4.7 "read repair": a replica that missed a write holds it after
// a Get that reached it.
func TestPaper_ReadRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		c.net.Isolate(nodeID(2))
		put(t, c.stores[0], "k", "v", Context{})
		synctest.Wait()
		require.Empty(t, c.local(2, "k"), "replica 2 missed the write")

		c.net.Heal()
		vals, _ := get(t, c.stores[0], "k", WithR(3))
		require.Equal(t, []string{"v"}, vals)
		synctest.Wait() // read repair runs in the background
		require.Equal(t, []string{"v"}, c.local(2, "k"))
		require.GreaterOrEqual(t, c.stores[0].Stats().ReadRepairs, int64(1))
	})
}

// Reference: §4.7 read repair uses late replies: a Get that returns at R=1
// still repairs a stale replica that answers after it returned. It asks
// every replica, as the paper's coordinator does (ReadAllReplicas).
func TestPaper_ReadRepair_LateReplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.ReadAllReplicas = true })
		c.net.Isolate(nodeID(2))
		put(t, c.stores[0], "k", "v", Context{})
		synctest.Wait() // the write to replica 2 is under way and lost, not yet to be sent after the heal
		c.net.Heal()
		// Remote replies come 50 ms after the coordinator's own, so R=1 is
		// met locally and the stale replica answers after Get returned.
		c.net.SetDelay(50*time.Millisecond, 50*time.Millisecond)
		vals, _ := get(t, c.stores[0], "k", WithR(1))
		require.Equal(t, []string{"v"}, vals)
		require.Empty(t, c.local(2, "k"), "replica 2 is still stale when Get returns")
		advance(time.Second) // the late replies arrive and read repair runs
		require.Equal(t, []string{"v"}, c.local(2, "k"))
		c.net.SetDelay(0, 0)
	})
}

// Reference: §4.4 deletes and DESIGN §2: a tombstone supersedes what its
// context covered and hides the key; a write with the delete's context
// replaces the tombstone.
func TestPaper_Delete_Tombstone(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	s := c.stores[1]
	put(t, s, "k", "v1", Context{})
	_, cx := get(t, s, "k")
	require.NoError(t, s.Delete(context.Background(), []byte("k"), cx))
	vals, cd := get(t, s, "k")
	require.Empty(t, vals)
	require.False(t, cd.IsZero(), "a deleted key still has a context")
	put(t, s, "k", "v2", cd)
	vals, _ = get(t, s, "k", WithR(3))
	require.Equal(t, []string{"v2"}, vals)
	st, err := s.localState([]byte("k"))
	require.NoError(t, err)
	require.Len(t, st.Siblings, 1, "the tombstone was superseded")
}

// A caller owns the values Get returns: changing them after Get returned
// changes nothing the store holds or sends, not even the read repair that
// is still running in the background with the replies Get merged.
func TestGet_CallerOwnsValues_ReadRepairSendsTheStoredOnes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.NoGetCoalescing = true
			cfg.ReadAllReplicas = true // the stale replica is asked, and answers late
		})
		c.net.Isolate(nodeID(2))
		put(t, c.stores[0], "k", "v", Context{})
		synctest.Wait()
		c.net.Heal()
		c.net.SetDelay(50*time.Millisecond, 50*time.Millisecond)
		sibs, _, err := c.stores[0].Get(context.Background(), []byte("k"), WithR(1))
		require.NoError(t, err)
		require.Len(t, sibs, 1)
		sibs[0].Value[0] = 'X' // the caller's bytes
		advance(time.Second)   // the late replies arrive and read repair runs
		require.Equal(t, []string{"v"}, c.local(2, "k"), "read repair sent the stored value")
		require.Equal(t, []string{"v"}, c.local(0, "k"))
		c.net.SetDelay(0, 0)
	})
}
