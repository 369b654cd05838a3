// catchup_test.go: catch-up and availability under silent failures and at
// the value-size limit (§4.6, §4.7, §4.9): byte-bounded batches, per-replica
// timeouts, the node's own failure detector, readiness.
package dynamo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage/memory"
)

// bigValue returns a value of exactly n bytes that names i.
func bigValue(i, n int) []byte {
	v := bytes.Repeat([]byte{byte('a' + i%26)}, n)
	copy(v, fmt.Sprintf("value-%03d:", i))
	return v
}

// A node that missed more than a frame's worth of writes catches up: its
// start-up pull moves 17 values of MaxValueSize (17 MiB, over the 16 MiB
// frame limit) in batches bounded in bytes.
func TestCatchUp_MissedMoreThanAFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		ctx := context.Background()
		size := c.stores[0].cfg.Limits.MaxValueSize
		c.stop(2)
		c.members.SetReachable(nodeID(2), false)
		for i := range 17 {
			require.NoError(t, c.stores[i%2].Put(ctx, fmt.Appendf(nil, "big-%02d", i), bigValue(i, size), Context{}))
		}
		c.start(2, c.storages[2])
		require.NoError(t, c.stores[2].TransferRound(ctx))
		require.Zero(t, c.stores[2].PendingTransfers(), "every partition pulled")
		for i := range 17 {
			vals := c.local(2, fmt.Sprintf("big-%02d", i))
			require.Len(t, vals, 1)
			require.Equal(t, string(bigValue(i, size)), vals[0])
		}
		require.NoError(t, c.stores[2].WaitReady(ctx))
	})
}

// Hints for large values are delivered: 17 hints of MaxValueSize held by one
// fallback for one owner go through in chunks bounded in bytes.
func TestHandoff_LargeHintsDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 4, func(cfg *Config) { cfg.AntiEntropy.Interval = -1; cfg.Handoff.Interval = time.Hour })
		ctx := context.Background()
		size := c.stores[0].cfg.Limits.MaxValueSize
		first := c.stores[0].PreferenceList([]byte("x"), 4)
		owner, fallback := first[0].ID, first[3].ID
		c.down(owner)
		// Keys whose first primary is owner and whose fallback is the same
		// node: their hints all go to it.
		var keys [][]byte
		for i := 0; len(keys) < 17; i++ {
			k := fmt.Appendf(nil, "hint-%04d", i)
			pref := c.stores[0].PreferenceList(k, 4)
			if pref[0].ID == owner && pref[3].ID == fallback {
				keys = append(keys, k)
			}
		}
		via := c.stores[indexOf(first[1].ID)]
		for i, k := range keys {
			require.NoError(t, via.Put(ctx, k, bigValue(i, size), Context{}))
		}
		synctest.Wait() // the hint write may finish after the acknowledgement
		held := c.stores[indexOf(fallback)]
		require.Equal(t, 17, pendingFor(held, owner), "one fallback holds 17 large hints")
		c.upAll()
		for pendingFor(held, owner) > 0 {
			n, err := held.DeliverHints(ctx)
			require.NoError(t, err)
			require.Positive(t, n)
		}
		require.GreaterOrEqual(t, held.Stats().Hints.Delivered, int64(17))
		for i, k := range keys {
			vals := c.local(indexOf(owner), string(k))
			require.Equal(t, []string{string(bigValue(i, size))}, vals)
		}
	})
}

// A node still pulling its partitions answers a read in time although one of
// its previous owners is silently unreachable (cut off, its failure detector
// unaware): its read-through waits for at most half the time left.
func TestReadThrough_SilentSourceDoesNotCostTheQuorum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		ctx := context.Background()
		put(t, c.stores[0], "k", "v", Context{}, WithW(3))
		c.net.Isolate(nodeID(2)) // silent: membership still says it is up
		c.stop(0)
		c.start(0, c.storages[0])
		synctest.Wait()
		require.Positive(t, c.stores[0].PendingTransfers(), "n0 still has to pull from n2")
		select {
		case <-c.stores[0].Ready():
			t.Fatal("n0 is ready before pulling from n2")
		default:
		}
		start := time.Now()
		vals, _ := get(t, c.stores[1], "k", WithR(2))
		require.Equal(t, []string{"v"}, vals)
		require.Less(t, time.Since(start), c.stores[1].cfg.ReplicaTimeout*3/4,
			"n0 answered well within the replica timeout, not at its end")
		c.net.Heal()
		untilFake(t, time.Minute, func() bool { return c.stores[0].PendingTransfers() == 0 }, "n0 pulls from n2 once it is back")
		require.NoError(t, c.stores[0].WaitReady(ctx))
	})
}

// A Put through a node that is not a replica succeeds when the key's first
// primary is silently cut off: the forward pings it, moves on to the next
// replica, and the write is coordinated once.
func TestForward_SilentFirstPrimaryReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 5, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		ctx := context.Background()
		pref := c.stores[0].PreferenceList([]byte("k"), 5)
		via := c.stores[indexOf(pref[4].ID)]
		c.net.Isolate(pref[0].ID)
		start := time.Now()
		require.NoError(t, via.Put(ctx, []byte("k"), []byte("v"), Context{}))
		require.Less(t, time.Since(start), via.cfg.RequestTimeout/2, "the silent primary cost one ping's timeout, not the request's")
		c.net.Heal()
		vals, _ := get(t, c.stores[indexOf(pref[1].ID)], "k", WithR(3))
		require.Equal(t, []string{"v"}, vals, "coordinated once: one sibling")
	})
}

// A forwarded Put that no replica takes says so: ErrNoReplica, and the
// QuorumError with every replica's reason.
func TestForward_NoReplicaAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 5, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		pref := c.stores[0].PreferenceList([]byte("k"), 5)
		via := c.stores[indexOf(pref[4].ID)]
		for _, m := range pref[:3] {
			c.net.Isolate(m.ID)
		}
		err := via.Put(context.Background(), []byte("k"), []byte("v"), Context{})
		require.ErrorIs(t, err, ErrNoReplica)
		require.ErrorIs(t, err, ErrWriteQuorum)
		var qe *QuorumError
		require.True(t, errors.As(err, &qe))
		require.Len(t, qe.PerReplica, 3)
		c.net.Heal()
	})
}

// Hints held for a node that left the ring for good go to the current
// primaries of their keys, and are deleted once all of them hold them.
func TestHandoff_HintsForDepartedNodeRehomed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, key, pref, _, p3, f1 := ownerDownWithHint(t)
		gone := pref[2].ID
		c.stop(p3)
		c.members.Remove(gone)
		synctest.Wait()
		untilFake(t, time.Minute, func() bool { return pendingFor(c.stores[f1], gone) == 0 }, "the hint for the departed node is rehomed")
		require.EqualValues(t, 1, c.stores[f1].Stats().Hints.Rehomed)
		for _, m := range c.stores[f1].PreferenceList([]byte(key), 3) {
			require.Equal(t, []string{"v"}, c.local(indexOf(m.ID), key), "current primary %s holds the rehomed write", m.ID)
		}
	})
}

// With a static member list, a silent peer is routed around after its first
// unanswered call: later writes hand its share to a fallback at once instead
// of waiting out the replica timeout each time.
func TestStaticMembers_SilentPeerRoutedAround(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 4, func(cfg *Config) { cfg.AntiEntropy.Interval = -1; cfg.Handoff.Interval = time.Hour })
		ctx := context.Background()
		pref := c.stores[0].PreferenceList([]byte("k"), 4)
		coord := c.stores[indexOf(pref[0].ID)]
		silent := pref[1].ID
		c.net.Isolate(silent)
		require.NoError(t, coord.Put(ctx, []byte("k"), []byte("v1"), Context{}))
		advance(coord.cfg.ReplicaTimeout + time.Millisecond) // the call to the silent peer times out
		require.False(t, coord.Reachable(silent), "the unanswered call marked the peer down")
		require.True(t, c.members.Reachable(silent), "the membership never noticed")
		start := time.Now()
		require.NoError(t, coord.Put(ctx, []byte("k2"), []byte("v2"), Context{}, WithW(3)))
		require.Less(t, time.Since(start), coord.cfg.ReplicaTimeout/2, "no wait on the suspected peer")
		// Heal: after its backoff the peer is probed again, answers, and is back.
		c.net.Heal()
		untilFake(t, time.Minute, func() bool {
			_ = coord.Put(ctx, []byte("k3"), []byte("v3"), Context{})
			return coord.Reachable(silent)
		}, "the healed peer is probed and cleared")
	})
}

// A fresh cluster is ready; a restarted node whose previous owners are all
// up becomes ready after its pulls.
func TestStore_WaitReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, s := range c.stores {
			require.NoError(t, s.WaitReady(ctx))
		}
		c.stop(1)
		c.start(1, memory.New())
		require.NoError(t, c.stores[1].WaitReady(ctx))
		require.Zero(t, c.stores[1].PendingTransfers())
	})
}
