// transfer_test.go: §4.9 nodes joining and leaving: partitions move to their
// new owners, reads stay correct meanwhile, and old owners drop what they
// gave away.
package dynamo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage/memory"
)

const transferKeys = 1200

// loadKeys writes transferKeys keys. With missing >= 0 that node is cut off
// meanwhile, so each key lives on just W=2 of its replicas.
func loadKeys(t *testing.T, c *testCluster, missing int) []string {
	keys := make([]string, transferKeys)
	w := WithW(3)
	if missing >= 0 {
		c.net.Isolate(nodeID(missing))
		w = WithW(2)
	}
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%04d", i)
		via := i % len(c.stores)
		if via == missing {
			via = (via + 1) % len(c.stores)
		}
		put(t, c.stores[via], keys[i], "v-"+keys[i], Context{}, w)
	}
	if missing >= 0 {
		synctest.Wait()
		c.net.Heal()
	}
	return keys
}

// holders returns the IDs of the live nodes whose storage holds key.
func (c *testCluster) holders(key string) []string {
	var out []string
	for i, s := range c.stores {
		if s == nil {
			continue
		}
		if len(c.replicaBytes(i, key)) > 0 {
			out = append(out, nodeID(i))
		}
	}
	return out
}

func ids(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	slices.Sort(out)
	return out
}

// settledTransfers reports whether no node has a pull pending or holds data of
// a partition it does not own.
func (c *testCluster) settledTransfers() bool {
	for _, s := range c.stores {
		if s == nil {
			continue
		}
		if s.PendingTransfers() > 0 {
			return false
		}
		r := s.ring.Load()
		me := r.index[s.cfg.NodeID]
		for p := 0; p < r.partitions; p++ {
			if s.rep.tree.get(p) != 0 && !r.isPrimary(p, me, s.cfg.N) {
				return false
			}
		}
	}
	return true
}

// readAllKeys checks every key reads back at R=2 through a random node.
func readAllKeys(t *testing.T, c *testCluster, rng *rand.Rand, keys []string) {
	t.Helper()
	for _, k := range keys {
		var via *Store
		for via == nil {
			via = c.stores[rng.IntN(len(c.stores))]
		}
		vals, _ := get(t, via, k, WithR(2))
		require.Equal(t, []string{"v-" + k}, vals, "acknowledged %s reads back at R=2", k)
	}
}

// Reference: §4.9 "Adding storage nodes": a 4th node joins a loaded 3-node
// cluster; reads stay correct during the transfer, the newcomer ends with
// exactly its partitions' keys, the others drop what they gave away, and
// about a quarter of the replicas move.
func TestTransfer_Join(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.AntiEntropy.Interval = -1
			cfg.AntiEntropy.KeysPerSecond = 40 // throttled: the transfer spans many fake seconds
			cfg.ReadAllReplicas = true         // the final reads repair every replica
		})
		keys := loadKeys(t, c, 2) // node 2 misses every write: each key is on 2 replicas
		rng := rand.New(rand.NewPCG(1, 2))

		c.stores = append(c.stores, nil)
		c.storages = append(c.storages, nil)
		c.trans = append(c.trans, nil)
		c.members.Add(Member{ID: nodeID(3), Addr: nodeID(3)})
		c.start(3, memory.New())

		require.Positive(t, c.stores[3].PendingTransfers(), "the newcomer has partitions to pull")
		rounds := 0
		for !c.settledTransfers() {
			readAllKeys(t, c, rng, keys[:200]) // during the transfer
			time.Sleep(100 * time.Millisecond) // fake time: lets the throttled transfer advance
			rounds++
			require.Less(t, rounds, 6000, "transfer did not finish within ten minutes of fake time")
		}
		require.Greater(t, rounds, 1, "reads ran while the transfer was in progress")
		readAllKeys(t, c, rng, keys)
		synctest.Wait() // read repair fills in the replica that missed the writes

		moved, total := 0, 0
		for _, k := range keys {
			want := ids(c.stores[0].PreferenceList([]byte(k), 3))
			require.Equal(t, want, c.holders(k), "key %s lives exactly on its primaries", k)
			total += 3
			if slices.Contains(want, nodeID(3)) {
				moved++
			}
		}
		require.Positive(t, c.stores[3].Stats().PartitionsPulled, "the newcomer pulled its partitions")
		frac := float64(moved) / float64(total)
		t.Logf("replicas moved to the new node: %d of %d (%.3f)", moved, total, frac)
		require.InDelta(t, 0.25, frac, 0.03)
	})
}

// Reference: §4.9 "Removing storage nodes": a node leaving gracefully pushes
// its partitions to the new owners; no key is lost.
func TestTransfer_Leave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 4, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		keys := loadKeys(t, c, -1)
		rng := rand.New(rand.NewPCG(3, 4))
		leaver := 3
		require.NoError(t, c.stores[leaver].Decommission(context.Background()))
		c.members.Remove(nodeID(leaver))
		c.stop(leaver)
		c.stores = c.stores[:leaver]

		untilFake(t, time.Minute, c.settledTransfers, "transfer did not finish")
		readAllKeys(t, c, rng, keys)
		for _, k := range keys {
			require.Equal(t, ids(c.stores[0].PreferenceList([]byte(k), 3)), c.holders(k), "key %s is on its new owners", k)
		}
	})
}

// A transfer interrupted by a crash of the joining node resumes when it
// restarts, and the old owners keep every partition until the new owner has
// it.
func TestTransfer_Join_ResumesAfterCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.AntiEntropy.Interval = -1
			cfg.AntiEntropy.KeysPerSecond = 40
		})
		keys := loadKeys(t, c, -1)
		rng := rand.New(rand.NewPCG(5, 6))
		c.stores = append(c.stores, nil)
		c.storages = append(c.storages, nil)
		c.trans = append(c.trans, nil)
		c.members.Add(Member{ID: nodeID(3), Addr: nodeID(3)})
		c.start(3, memory.New())
		advance(2 * time.Second) // part of the throttled transfer
		require.Positive(t, c.stores[3].PendingTransfers(), "the transfer is still under way")
		saved := c.storages[3]
		c.stop(3) // crash: the store stops, its storage survives
		c.members.SetReachable(nodeID(3), false)

		advance(5 * time.Second)
		for _, k := range keys {
			old := 0
			for _, h := range c.holders(k) {
				if h != nodeID(3) {
					old++
				}
			}
			require.GreaterOrEqual(t, old, 2, "old owners keep %s while the new owner is down", k)
		}

		c.start(3, saved)
		c.members.SetReachable(nodeID(3), true)
		untilFake(t, 10*time.Minute, c.settledTransfers, "the resumed transfer did not finish")
		readAllKeys(t, c, rng, keys)
		for _, k := range keys {
			require.Equal(t, ids(c.stores[0].PreferenceList([]byte(k), 3)), c.holders(k), "key %s", k)
		}
	})
}
