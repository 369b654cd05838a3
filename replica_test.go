// replica_test.go: DESIGN §4 the replica's own API: a partition is dropped
// in one storage commit, and only if nothing was written to it since it was
// handed to its owners.
package dynamo

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/memory"
)

// countingStorage counts the storage calls that write.
type countingStorage struct {
	*memory.Store
	updates, batches, prefixDeletes int
}

func (c *countingStorage) Update(k []byte, fn func([]byte) ([]byte, error)) error {
	c.updates++
	return c.Store.Update(k, fn)
}

func (c *countingStorage) UpdateBatch(ops []storage.Op) []error {
	c.batches++
	return c.Store.UpdateBatch(ops)
}

func (c *countingStorage) DeletePrefix(p []byte) (int, error) {
	c.prefixDeletes++
	return c.Store.DeletePrefix(p)
}

func newTestReplica(t *testing.T, st Storage) *replica {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Storage, cfg.Partitions = "n0", st, 8
	cfg = cfg.withDefaults()
	return newReplica(cfg, cfg.Logger, "n0/01", newRunEpochs(7))
}

func TestReplica_DropPartition_OneCommit_OnlyIfUnchanged(t *testing.T) {
	st := &countingStorage{Store: memory.New()}
	r := newTestReplica(t, st)
	const p = 3
	var keys [][]byte
	for i := 0; len(keys) < 20; i++ {
		if k := []byte(fmt.Sprint("k", i)); partitionOf(k, r.q) == p {
			keys = append(keys, k)
		}
	}
	for i, k := range keys {
		_, _, _, err := r.mint(p, k, []byte("v"), i%4 == 0, nil, dot{}, 1)
		require.NoError(t, err)
	}
	pushed := r.tree.get(p)
	require.NotZero(t, pushed)

	// A write lands after the push: the partition is kept.
	_, _, _, err := r.mint(p, keys[0], []byte("late"), false, nil, dot{}, 2)
	require.NoError(t, err)
	dropped, err := r.dropPartition(p, pushed)
	require.NoError(t, err)
	require.False(t, dropped, "a write since the push keeps the partition")
	got, err := r.read(p, keys[0])
	require.NoError(t, err)
	require.Len(t, got.live(), 1)
	require.Equal(t, "late", string(got.live()[0].Value), "the late write is still there")

	// Unchanged since the push: dropped in one commit, indexes cleared.
	st.updates, st.prefixDeletes = 0, 0
	dropped, err = r.dropPartition(p, r.tree.get(p))
	require.NoError(t, err)
	require.True(t, dropped)
	require.Equal(t, 1, st.prefixDeletes)
	require.Zero(t, st.updates, "no update per key")
	require.Zero(t, r.tree.get(p), "the partition's hash is back to empty")
	require.Empty(t, r.tombs.list(), "the tombstone index forgot the dropped keys")
	for _, k := range keys {
		got, err := r.read(p, k)
		require.NoError(t, err)
		require.True(t, got.empty(), "key %s", k)
	}
}

// A batch of merges is one storage call, and moves the hash tree as the
// same merges one by one do.
func TestReplica_MergeBatch_OneCall_SameTree(t *testing.T) {
	one := newTestReplica(t, memory.New())
	st := &countingStorage{Store: memory.New()}
	batch := newTestReplica(t, st)
	var parts []int
	var keys [][]byte
	var states []state
	for i := range 50 {
		k := []byte(fmt.Sprint("key-", i))
		s := vcState(fmt.Sprintf("a:%d b:1", i+1), fmt.Sprintf("a:%d=v%d", i+1, i))
		parts, keys, states = append(parts, partitionOf(k, one.q)), append(keys, k), append(states, s)
		require.NoError(t, one.merge(parts[i], k, s))
	}
	require.NoError(t, batch.mergeBatch(parts, keys, states))
	require.Equal(t, 1, st.batches)
	require.Zero(t, st.updates)
	for p := range one.q {
		require.Equal(t, one.tree.get(p), batch.tree.get(p), "partition %d", p)
	}
}
