// Kept sums: they match a scan of the data after clean closes, crashes, failed checkpoints, Salvage, damaged values and writers that know nothing of them.
package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/dynamo-kv/dynamo/storage"
)

var testSpec = storage.SumSpec{Prefix: []byte("d"), Buckets: 700} // two blocks, the second short

// sumKey is key i, in bucket i mod 701 (so bucket 700 holds keys the spec
// does not sum).
func sumKey(i int) []byte {
	k := binary.BigEndian.AppendUint32([]byte("d"), uint32(i%701))
	return fmt.Appendf(k, "key%d", i)
}

// scanned is the sums a scan of s's data gives.
func scanned(t *testing.T, s *Store) []uint64 {
	t.Helper()
	sums, err := storage.ComputeSums(s, testSpec)
	require.NoError(t, err)
	return sums
}

// sumWrites makes n random puts and deletes of 3000 keys, and some outside
// the spec's prefix.
func sumWrites(t *testing.T, s *Store, rng *rand.Rand, n int) {
	t.Helper()
	for range n {
		key := sumKey(rng.IntN(3000))
		if rng.IntN(10) == 0 {
			key = fmt.Appendf(nil, "h%d", rng.IntN(100))
		}
		var v []byte
		if rng.IntN(5) > 0 {
			v = fmt.Appendf(nil, "v%d-%s", rng.Uint64(), bytes.Repeat([]byte("x"), rng.IntN(300)))
		}
		require.NoError(t, s.Update(key, func([]byte) ([]byte, error) { return v, nil }))
	}
}

// requireKept checks that Sums reads the kept sums (no scan) and that they
// match the data.
func requireKept(t *testing.T, s *Store, msg string) {
	t.Helper()
	scans := s.Stats().SumScans
	sums, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Equal(t, scans, s.Stats().SumScans, "%s: the kept sums are read, not scanned", msg)
	require.Equal(t, scanned(t, s), sums, "%s: the kept sums match the data", msg)
}

// TestSums_FollowTheData_AcrossCloseCrashAndFailedCheckpoints writes random
// changes in rounds, each ended by a clean Close, a crash (the log is
// replayed at the next Open) or a checkpoint that fails at one of its
// steps, with small segments and chunks so that checkpoints take several
// transactions; after each reopen, Sums reads the kept sums and they equal
// a scan of the data.
func TestSums_FollowTheData_AcrossCloseCrashAndFailedCheckpoints(t *testing.T) {
	dir := t.TempDir()
	opts := Options{LogSize: 96 << 10}
	rng := rand.New(rand.NewPCG(1, 2))
	s := testOpen(t, dir, &opts)
	sumWrites(t, s, rng, 500)
	sums, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.Stats().SumScans, "the first call scans")
	require.Equal(t, scanned(t, s), sums)
	require.NotEqual(t, make([]uint64, testSpec.Buckets), sums)
	steps := []step{stepChunkBegin, stepChunkPut, stepChunkCommit, stepChunkDone, stepCheckpointDone}
	for round := range 12 {
		sumWrites(t, s, rng, 300)
		switch round % 3 {
		case 0:
			require.NoError(t, s.Close())
		case 1:
			require.NoError(t, Abandon(s))
		case 2:
			st := steps[(round/3)%len(steps)]
			var armed atomic.Bool
			o := opts
			o.hook = func(got step) error {
				if armed.Load() && got == st {
					return fmt.Errorf("injected at %s", got)
				}
				return nil
			}
			require.NoError(t, s.Close())
			s = testOpen(t, dir, &o)
			armed.Store(true)
			for s.failed() == nil {
				key := sumKey(rng.IntN(3000))
				_ = s.Update(key, func([]byte) ([]byte, error) { return []byte("late"), nil })
			}
			_ = s.Close()
		}
		s = testOpen(t, dir, &opts)
		requireKept(t, s, fmt.Sprintf("round %d", round))
	}
}

// TestSums_Salvage opens a log damaged in the middle with Salvage: the
// changes past the damage are lost, and the kept sums match what is left.
func TestSums_Salvage(t *testing.T) {
	dir := t.TempDir()
	s := testOpen(t, dir, &Options{LogSize: 8 << 20})
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(3, 4))
	sumWrites(t, s, rng, 400)
	require.NoError(t, Abandon(s))
	wal := filepath.Join(dir, "node.db.wal0")
	b, err := os.ReadFile(wal)
	require.NoError(t, err)
	b[2000] ^= 0x40 // in one of the first records
	require.NoError(t, os.WriteFile(wal, b, 0o600))
	s, err = Open(filepath.Join(dir, "node.db"), &Options{Salvage: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.True(t, s.LostWrites())
	requireKept(t, s, "after Salvage")
}

// TestSums_DamagedValue_DropsTheSums: a checkpoint that replaces a value
// failing its checksum cannot take that value's digest out, so it drops
// the kept sums; the next Sums scans, and matches the data.
func TestSums_DamagedValue_DropsTheSums(t *testing.T) {
	dir := t.TempDir()
	s := testOpen(t, dir, nil)
	victim := sumKey(42)
	value := []byte("a value to damage, long enough to find in the file")
	require.NoError(t, s.Update(victim, func([]byte) ([]byte, error) { return value, nil }))
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	path := filepath.Join(dir, "node.db")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Positive(t, bytes.Index(b, value))
	for i := bytes.Index(b, value); i >= 0; { // every copy: bbolt may keep stale ones
		b[i+3] ^= 0x08
		j := bytes.Index(b[i+1:], value)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))

	s = testOpen(t, dir, nil)
	_, err = s.Sums(testSpec)
	require.NoError(t, err)
	require.Zero(t, s.Stats().SumScans, "a damaged value does not touch the sums until replaced")
	gone, err := s.DiscardCorrupt(victim)
	require.NoError(t, err)
	require.True(t, gone)
	require.NoError(t, s.Close())
	s = testOpen(t, dir, nil)
	sums, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.Stats().SumScans, "the dropped sums are scanned again")
	require.Equal(t, scanned(t, s), sums)
}

// TestSums_WriterWithoutSums: checkpoints made while the Store keeps no
// sums (as a release before them would make) leave the kept sums stale;
// their stamp no longer matches the log position, so Sums scans again.
func TestSums_WriterWithoutSums(t *testing.T) {
	dir := t.TempDir()
	s := testOpen(t, dir, nil)
	rng := rand.New(rand.NewPCG(5, 6))
	sumWrites(t, s, rng, 200)
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s = testOpen(t, dir, nil)
	s.sumSpec.Store(nil) // an old writer
	sumWrites(t, s, rng, 200)
	require.NoError(t, s.Close())

	s = testOpen(t, dir, nil)
	sums, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.Stats().SumScans, "stale sums are not trusted")
	require.Equal(t, scanned(t, s), sums)

	// Another spec is scanned too, and then kept instead.
	other := storage.SumSpec{Prefix: []byte("d"), Buckets: 701}
	_, err = s.Sums(other)
	require.NoError(t, err)
	require.Equal(t, uint64(2), s.Stats().SumScans)
	require.NoError(t, s.Close())
	s = testOpen(t, dir, nil)
	_, err = s.Sums(other)
	require.NoError(t, err)
	require.Zero(t, s.Stats().SumScans)
}

// TestSums_InvalidSpec refuses a spec out of range.
func TestSums_InvalidSpec(t *testing.T) {
	s := testOpen(t, t.TempDir(), nil)
	for _, spec := range []storage.SumSpec{{}, {Prefix: []byte("d")}, {Prefix: make([]byte, 65), Buckets: 1}, {Prefix: []byte("d"), Buckets: storage.MaxSumBuckets + 1}} {
		_, err := s.Sums(spec)
		require.ErrorIs(t, err, storage.ErrInvalidSumSpec)
	}
	require.NoError(t, s.Close())
	_, err := s.Sums(testSpec)
	require.ErrorIs(t, err, storage.ErrClosed)
}

// TestSums_DamagedBlock_Scanned: a kept block that fails its checksum is
// not trusted; Sums scans, and matches the data again.
func TestSums_DamagedBlock_Scanned(t *testing.T) {
	dir := t.TempDir()
	s := testOpen(t, dir, nil)
	sumWrites(t, s, rand.New(rand.NewPCG(7, 8)), 300)
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s = testOpen(t, dir, nil)
	require.NoError(t, s.db.Update(func(tx *bbolt.Tx) error {
		sb := tx.Bucket(sumsBucket)
		v := bytes.Clone(sb.Get(sumBlockKey(1)))
		v[20] ^= 0x01
		return sb.Put(sumBlockKey(1), v)
	}))
	sums, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.Stats().SumScans, "a damaged block is scanned again")
	require.Equal(t, scanned(t, s), sums)
}

// BenchmarkCheckpoint_Sums is what keeping sums adds to a checkpoint: one
// checkpoint of 20k random keys into a file of 200k, with and without
// sums (ns/key).
func BenchmarkCheckpoint_Sums(b *testing.B) {
	for _, kept := range []bool{false, true} {
		b.Run(fmt.Sprintf("sums=%v", kept), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "node.db"), &Options{LogSize: 1 << 30})
			require.NoError(b, err)
			defer s.Close()
			rng := rand.New(rand.NewPCG(9, 10))
			fill := func(n int) *memtable {
				mem := newMemtable()
				for range n {
					mem.put(sumKey(rng.IntN(1<<30)), bytes.Repeat([]byte{byte(rng.Uint32())}, 150))
				}
				return mem
			}
			nothing := func(*bbolt.Bucket) error { return nil }
			require.NoError(b, s.checkpoint(fill(200_000), nothing, false))
			if kept {
				_, err := s.Sums(testSpec)
				require.NoError(b, err)
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				mem := fill(20_000)
				b.StartTimer()
				require.NoError(b, s.checkpoint(mem, nothing, false))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20_000), "ns/key")
		})
	}
}
