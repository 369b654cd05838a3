// hashes_test.go: §4.7 the hash tree read from a bbolt Store at start-up
// equals the one rebuilt from the data, after clean restarts, crashes (the
// log replayed), Salvage, partition drops, purges and folds.
package dynamo

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/bolt"
	"github.com/dynamo-kv/dynamo/storage/memory"
)

// openBoltReplica opens the bbolt file at path and a replica of 600
// partitions on it, loaded as Open loads it (the background indexing run to
// the end), and reports whether the hash tree was read from the storage.
func openBoltReplica(t *testing.T, path string, opts *bolt.Options) (*replica, *bolt.Store, bool) {
	t.Helper()
	db, err := bolt.Open(path, opts)
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Storage, cfg.Partitions = "n0", db, 600 // 3 groups of the background scan
	cfg = cfg.withDefaults()
	r := newReplica(cfg, cfg.Logger, "n0/01", newRunEpochs(7))
	kept, err := r.load()
	require.NoError(t, err)
	if kept {
		r.indexInBackground(context.Background())
	}
	return r, db, kept
}

// churn writes, deletes, purges and folds random keys of r, and drops a
// partition.
func churn(t *testing.T, r *replica, rng *rand.Rand, n int, now *int64) {
	t.Helper()
	for range n {
		*now++
		k := fmt.Appendf(nil, "key-%d", rng.IntN(400))
		p := partitionOf(k, r.q)
		_, _, _, err := r.mint(p, k, fmt.Appendf(nil, "v%d", rng.Uint64()), rng.IntN(4) == 0, nil, dot{}, *now)
		require.NoError(t, err)
	}
	for _, key := range r.tombs.list()[:min(5, len(r.tombs.list()))] {
		p := partitionOf(key, r.q)
		raw, err := r.raw(p, key)
		require.NoError(t, err)
		require.NoError(t, r.purge(p, key, digest(key, raw)))
		gone, err := r.raw(p, key)
		require.NoError(t, err)
		require.Nil(t, gone, "purged")
	}
	// A key whose vector holds a dead entry (b: no sibling of b's), which
	// a fold drops.
	k := fmt.Appendf(nil, "fold-%d", rng.Uint64())
	p := partitionOf(k, r.q)
	require.NoError(t, r.merge(p, k, vcState("a:3 b:1", "a:3=v")))
	folded := r.entriesFolded.Load()
	require.NoError(t, r.fold(p, k, vcVV("b:1")))
	require.Greater(t, r.entriesFolded.Load(), folded, "folded")
	p = rng.IntN(r.q)
	dropped, err := r.dropPartition(p, r.tree.get(p))
	require.NoError(t, err)
	require.True(t, dropped)
}

// crashImage copies the bbolt file and its log segments of a Store that is
// open and idle, as a crash would leave them: bbolt as of the last
// checkpoint, the log holding every acknowledged write since.
func crashImage(t *testing.T, path, dir string) string {
	t.Helper()
	to := filepath.Join(dir, filepath.Base(path))
	for _, suffix := range []string{"", ".wal0", ".wal1"} {
		in, err := os.Open(path + suffix)
		require.NoError(t, err)
		out, err := os.Create(to + suffix)
		require.NoError(t, err)
		_, err = io.Copy(out, in)
		require.NoError(t, err)
		require.NoError(t, in.Close())
		require.NoError(t, out.Close())
	}
	return to
}

func TestHashes_KeptTreeEqualsRebuilt(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	now := int64(0)
	// Segments larger than the test writes: checkpoints happen at Open
	// (the replayed log) and Close only, so a copy of an open Store is a
	// crash image.
	opts := &bolt.Options{LogSize: 64 << 20}
	path := filepath.Join(t.TempDir(), "n0.db")
	r, db, kept := openBoltReplica(t, path, opts)
	require.True(t, kept, "a bbolt Store keeps the sums, computed at the first start")
	for round := range 6 {
		churn(t, r, rng, 300, &now)
		require.NoError(t, r.verifyHashes(ctx), "round %d, running", round)
		tombs, folds := len(r.tombs.list()), len(r.folds.list())
		if round%2 == 0 {
			require.NoError(t, db.Close())
		} else {
			crashed := crashImage(t, path, t.TempDir())
			require.NoError(t, db.Close())
			path = crashed
		}
		r, db, kept = openBoltReplica(t, path, opts)
		require.True(t, kept)
		require.Zero(t, db.Stats().SumScans, "round %d: the tree is read, not rebuilt", round)
		require.NoError(t, r.verifyHashes(ctx), "round %d, after a restart", round)
		require.Len(t, r.tombs.list(), tombs, "round %d: the background scan found every tombstone", round)
		require.Len(t, r.folds.list(), folds, "round %d", round)
	}

	// Salvage: the log is damaged in its first record; what is left is
	// hashed right.
	churn(t, r, rng, 300, &now)
	crashed := crashImage(t, path, t.TempDir())
	require.NoError(t, db.Close())
	wal, err := os.ReadFile(crashed + ".wal0")
	require.NoError(t, err)
	wal[100] ^= 0x10
	require.NoError(t, os.WriteFile(crashed+".wal0", wal, 0o600))
	r, db, kept = openBoltReplica(t, crashed, &bolt.Options{LogSize: 64 << 20, Salvage: true})
	require.True(t, db.LostWrites())
	require.True(t, kept)
	require.NoError(t, r.verifyHashes(ctx), "after Salvage")
	require.NoError(t, db.Close())
}

// A storage that keeps no sums is scanned at start-up, as before.
func TestHashes_StorageWithoutSums_Scanned(t *testing.T) {
	st := memory.New()
	r := newTestReplica(t, st)
	_, err := r.load()
	require.NoError(t, err)
	now := int64(0)
	churn(t, r, rand.New(rand.NewPCG(3, 4)), 200, &now)
	again := newTestReplica(t, st)
	kept, err := again.load()
	require.NoError(t, err)
	require.False(t, kept)
	for p := range r.q {
		require.Equal(t, r.tree.get(p), again.tree.get(p))
	}
	require.NoError(t, again.verifyHashes(context.Background()))
	again.tree.xor(3, 1)
	require.ErrorIs(t, again.verifyHashes(context.Background()), ErrHashMismatch)
}

// shortSums keeps the wrong number of sums: the replica scans instead.
type shortSums struct{ Storage }

func (shortSums) Sums(storage.SumSpec) ([]uint64, error) { return make([]uint64, 20), nil }

func TestHashes_WrongSumCount_Scanned(t *testing.T) {
	st := memory.New()
	r := newTestReplica(t, st)
	now := int64(0)
	churn(t, r, rand.New(rand.NewPCG(5, 6)), 100, &now)
	again := newTestReplica(t, shortSums{st})
	kept, err := again.load()
	require.NoError(t, err)
	require.False(t, kept)
	require.NoError(t, again.verifyHashes(context.Background()))
}
