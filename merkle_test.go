// merkle_test.go: §4.7 anti-entropy and safe deletes on in-process replicas.
package dynamo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// seed writes st for key straight into node i's replica (no replication).
func (c *testCluster) seed(i int, key string, st state) {
	if err := c.stores[i].mergeLocal([]byte(key), st); err != nil {
		c.t.Fatalf("seed %s on node %d: %v", key, i, err)
	}
}

func oneSibling(actor string, n uint64, value string, tomb bool) state {
	return state{VV: versionVector{{actor, n}}, Siblings: []sibling{{Dot: dot{actor, n}, Time: int64(n), Tombstone: tomb, Value: []byte(value)}}}
}

// replicaBytes returns node i's stored state of key, encoded.
func (c *testCluster) replicaBytes(i int, key string) []byte {
	raw, err := c.stores[i].cfg.Storage.Get(c.stores[i].storedKey([]byte(key)))
	if err != nil {
		c.t.Fatalf("read %s on node %d: %v", key, i, err)
	}
	return raw
}

// Reference: §4.7 "Merkle trees ... minimize the amount of data that needs
// to be transferred": two replicas of many keys, 1% divergent (extra
// siblings, tombstones, keys missing on one side), become identical in one
// round that moves at most twice the divergent keys.
func TestAntiEntropy_DivergentReplicas_OneRound(t *testing.T) {
	keys := 100_000
	if testing.Short() {
		keys = 10_000
	}
	c := newTestCluster(t, 2, func(cfg *Config) {
		cfg.N, cfg.R, cfg.W = 2, 1, 1
		cfg.Partitions = 4096
		cfg.AntiEntropy.KeysPerSecond = 1 << 30
		// Listing 100k keys under -race on a loaded machine can take
		// longer than the default round trip allows; the test counts rounds.
		cfg.ReplicaTimeout = 2 * time.Second
	})
	value := bytes.Repeat([]byte("v"), 100)
	divergent := 0
	for i := range keys {
		key := fmt.Sprintf("key-%06d", i)
		base := oneSibling("w/1", uint64(i+1), string(value), false)
		switch {
		case i%100 != 0:
			c.seed(0, key, base)
			c.seed(1, key, base)
			continue
		case i%300 == 0: // a concurrent sibling on one side
			c.seed(0, key, base)
			c.seed(1, key, syncStates(base, oneSibling("x/1", uint64(i+1), "concurrent", false)))
		case i%300 == 100: // a delete the other side missed
			c.seed(0, key, base)
			del, _ := mint(base, base.VV, "y/1", nil, true, int64(i))
			c.seed(1, key, del)
		default: // missing on one side
			c.seed(i%2, key, base)
		}
		divergent++
	}
	res, err := c.stores[0].AntiEntropy(context.Background())
	require.NoError(t, err)
	t.Logf("keys=%d divergent=%d: %+v", keys, divergent, res)
	require.Equal(t, divergent, res.DiffKeys)
	require.LessOrEqual(t, res.KeysSent+res.KeysReceived, 2*divergent)
	for i := range keys {
		key := fmt.Sprintf("key-%06d", i)
		if a, b := c.replicaBytes(0, key), c.replicaBytes(1, key); !bytes.Equal(a, b) {
			t.Fatalf("key %s differs after one round: %x vs %x", key, a, b)
		}
	}
	again, err := c.stores[0].AntiEntropy(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, again.RoundTrips, "identical replicas cost one round trip")
	require.Zero(t, again.DiffKeys)
}

// Comparing identical replicas costs one round trip per peer.
func TestAntiEntropy_Identical_OneRoundTrip(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for i := range 200 {
		put(t, c.stores[i%3], fmt.Sprintf("k%d", i), "v", Context{}, WithW(3))
	}
	res, err := c.stores[0].AntiEntropy(context.Background())
	require.NoError(t, err)
	require.Equal(t, 2, res.Peers)
	require.Equal(t, 2, res.RoundTrips)
	require.Zero(t, res.DiffKeys)
}

// The hash tree tracks every local write, so a rebuilt tree equals the
// incrementally maintained one.
func TestAntiEntropy_TreeMatchesRebuild(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := context.Background()
	for i := range 300 {
		key := fmt.Sprintf("k%d", i%50)
		_, cx := get(t, c.stores[i%3], key)
		if i%7 == 0 {
			require.NoError(t, c.stores[i%3].Delete(ctx, []byte(key), cx))
		} else {
			put(t, c.stores[i%3], key, fmt.Sprint(i), cx)
		}
	}
	for i, s := range c.stores {
		eventually(t, func() bool {
			fresh := newHashTree(s.cfg.Partitions)
			require.NoError(t, s.cfg.Storage.ForEach([]byte{spaceData}, func(k, v []byte) error {
				fresh.xor(int(binary.BigEndian.Uint32(k[1:5])), digest(k[5:], v))
				return nil
			}))
			for p := range fresh.parts {
				if fresh.get(p) != s.rep.tree.get(p) {
					return false
				}
			}
			return true
		}, fmt.Sprintf("node %d's tree equals a rebuild", i))
	}
}

// Reference: §4.7 and DESIGN §6: a replica that missed a delete must not
// resurrect the key. The tombstone is not purged while a replica lacks it;
// after healing, anti-entropy and the grace period, the key is gone from
// every replica and stays gone.
func TestAntiEntropy_MissedDelete_NoResurrection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.TombstoneGrace = time.Minute
			cfg.AntiEntropy.Interval = -1 // rounds run by hand
		})
		ctx := context.Background()
		put(t, c.stores[0], "k", "v", Context{}, WithW(3))
		_, cx := get(t, c.stores[0], "k")
		c.net.Isolate(nodeID(2))
		c.members.SetReachable(nodeID(2), false)
		require.NoError(t, c.stores[0].Delete(ctx, []byte("k"), cx))
		synctest.Wait()
		require.Equal(t, []string{"v"}, c.local(2, "k"), "replica 2 missed the delete")

		advance(2 * time.Minute) // past the grace period
		for _, s := range c.stores[:2] {
			require.Zero(t, s.purgeTombstones(ctx), "no purge while a replica lacks the tombstone")
		}
		require.NotNil(t, c.replicaBytes(0, "k"))

		c.net.Heal()
		c.members.SetReachable(nodeID(2), true)
		for _, s := range c.stores[:2] {
			require.Zero(t, s.purgeTombstones(ctx), "no purge before anti-entropy reached replica 2")
		}
		// A manual round purges too, once every primary holds the tombstone.
		purged := 0
		for _, s := range c.stores[:2] {
			res, err := s.AntiEntropy(ctx)
			require.NoError(t, err)
			purged += res.Purged
		}
		for _, s := range c.stores {
			purged += s.purgeTombstones(ctx)
		}
		require.Equal(t, 1, purged)
		var counted int64
		for _, s := range c.stores {
			counted += s.Stats().TombstonesPurged
		}
		require.EqualValues(t, 1, counted, "Stats counts the purge")
		for i := range c.stores {
			require.Nil(t, c.replicaBytes(i, "k"), "replica %d purged the key", i)
		}
		for range 3 {
			for _, s := range c.stores {
				_, err := s.AntiEntropy(ctx)
				require.NoError(t, err)
			}
		}
		for i := range c.stores {
			require.Nil(t, c.replicaBytes(i, "k"), "replica %d: the key stays gone", i)
			vals, _ := get(t, c.stores[i], "k", WithR(3))
			require.Empty(t, vals)
		}
	})
}
