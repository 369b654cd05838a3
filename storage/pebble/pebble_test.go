package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// small keeps the tests' memory low: Pebble's defaults are sized for
// production nodes.
var small = &Options{CacheSize: 8 << 20, MemTableSize: 4 << 20}

func open(t *testing.T, dir string, o *Options) *Store {
	t.Helper()
	if o == nil {
		o = small
	}
	s, err := Open(dir, o)
	require.NoError(t, err)
	return s
}

func TestConformance(t *testing.T) {
	storagetest.RunDurable(t, func(t *testing.T, dir string) storage.Storage { return open(t, dir, nil) })
}

func TestOptions_Invalid(t *testing.T) {
	for _, o := range []Options{{CacheSize: -1}, {MemTableSize: 1}, {MemTableSize: 2 << 30}} {
		_, err := Open(t.TempDir(), &o)
		require.ErrorIs(t, err, ErrInvalidOptions, "%+v", o)
	}
}

var testSpec = storage.SumSpec{Prefix: []byte("p/"), Buckets: 64}

// sumKey returns a key testSpec sums, in bucket b.
func specKey(b int, name string) []byte {
	return append(binary.BigEndian.AppendUint32([]byte("p/"), uint32(b)), name...)
}

// randomWrites makes n random writes (sets, overwrites, deletes) of summed
// and unsummed keys.
func randomWrites(t *testing.T, s *Store, rng *rand.Rand, n int) {
	t.Helper()
	for range n {
		key := specKey(rng.IntN(testSpec.Buckets+2), fmt.Sprint(rng.IntN(40))) // some beyond the buckets
		if rng.IntN(10) == 0 {
			key = fmt.Appendf(nil, "other/%d", rng.IntN(40))
		}
		var v []byte
		if rng.IntN(4) > 0 {
			v = fmt.Appendf(nil, "v%d", rng.Uint64())
		}
		require.NoError(t, s.Update(key, func([]byte) ([]byte, error) { return v, nil }))
	}
}

func scanned(t *testing.T, s *Store) []uint64 {
	t.Helper()
	sums, err := storage.ComputeSums(s, testSpec)
	require.NoError(t, err)
	return sums
}

// TestSums_KeptAcrossReopen: the first Sums scans, later writes move the
// kept sums, and after a reopen Sums reads them without a scan and they
// equal a fresh scan of the data.
func TestSums_KeptAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	randomWrites(t, s, rng, 300)
	sums, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.Stats().SumScans)
	require.Equal(t, scanned(t, s), sums)

	randomWrites(t, s, rng, 500)
	errs := s.UpdateBatch([]storage.Op{
		{Key: specKey(3, "b"), Fn: func([]byte) ([]byte, error) { return []byte("x"), nil }},
		{Key: specKey(3, "b"), Fn: func(cur []byte) ([]byte, error) { return append(bytes.Clone(cur), 'y'), nil }},
		{Key: specKey(4, "b"), Fn: func([]byte) ([]byte, error) { return nil, nil }},
	})
	require.Equal(t, []error{nil, nil, nil}, errs)
	_, err = s.DeletePrefix(specKey(5, ""))
	require.NoError(t, err)
	want := scanned(t, s)
	require.NoError(t, s.Close())

	s = open(t, dir, nil)
	defer s.Close()
	got, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Zero(t, s.Stats().SumScans, "the sums are read, not scanned")
	require.Equal(t, want, got)
	require.Equal(t, scanned(t, s), got)

	other := storage.SumSpec{Prefix: []byte("p/"), Buckets: 32}
	got, err = s.Sums(other)
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.Stats().SumScans, "another spec scans")
	want, err = storage.ComputeSums(s, other)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// TestSums_Crash: a crash (every write not fsynced is lost) leaves kept
// sums that still equal the data: each write and its sum change share one
// atomic batch.
func TestSums_Crash(t *testing.T) {
	fs, o := strictMem(t)
	s := open(t, "db", o)
	rng := rand.New(rand.NewPCG(3, 4))
	randomWrites(t, s, rng, 200)
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	randomWrites(t, s, rng, 300)
	acked := scanned(t, s)
	fs.SetIgnoreSyncs(true)
	randomWrites(t, s, rng, 100) // "acknowledged" but never reach the disk
	crash(t, fs, s)

	s = open(t, "db", o)
	defer s.Close()
	got, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Zero(t, s.Stats().SumScans)
	require.Equal(t, acked, got, "the sums of the durable writes")
	require.Equal(t, scanned(t, s), got)
}

// strictMem returns a strict in-memory FS, which forgets every write not
// fsynced when crashed, holding the directory "db", and Options that use it.
func strictMem(t *testing.T) (*vfs.MemFS, *Options) {
	t.Helper()
	fs := vfs.NewStrictMem()
	syncedDir(t, fs, "db")
	o := *small
	o.FS = fs
	return fs, &o
}

// crash closes s as a crash would: what it did not fsync is lost.
// Syncs must have been ignored since the writes that are to be lost.
func crash(t *testing.T, fs *vfs.MemFS, s *Store) {
	t.Helper()
	require.NoError(t, s.Close())
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
}

// syncedDir makes dir in fs, durably: a strict MemFS forgets a directory
// whose parent was not synced after it was made.
func syncedDir(t *testing.T, fs vfs.FS, dir string) {
	t.Helper()
	require.NoError(t, fs.MkdirAll(dir, 0o755))
	root, err := fs.OpenDir("")
	require.NoError(t, err)
	require.NoError(t, root.Sync())
	require.NoError(t, root.Close())
}

// TestSums_DamagedRecordScansAgain: a sum record that is not 8 bytes makes
// Sums scan and replace the kept sums.
func TestSums_DamagedRecordScansAgain(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	defer s.Close()
	randomWrites(t, s, rand.New(rand.NewPCG(5, 6)), 200)
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.NoError(t, s.db.Set(sumKey(7), []byte("short"), nil))
	got, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Equal(t, uint64(2), s.Stats().SumScans)
	require.Equal(t, scanned(t, s), got)
}

// TestCorruptTable: a flipped byte in a table makes the reads of its block
// fail with storage.ErrCorrupt, and is never served as data.
func TestCorruptTable(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	value := bytes.Repeat([]byte("abcdefgh"), 16)
	for i := range 100 {
		require.NoError(t, s.Update(fmt.Appendf(nil, "k%03d", i), func([]byte) ([]byte, error) { return value, nil }))
	}
	require.NoError(t, s.db.Flush())
	require.NoError(t, s.Close())

	var tables []string
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sst") {
			tables = append(tables, filepath.Join(dir, e.Name()))
		}
	}
	require.Len(t, tables, 1)
	b, err := os.ReadFile(tables[0])
	require.NoError(t, err)
	b[200] ^= 0x10 // inside the first data block
	require.NoError(t, os.WriteFile(tables[0], b, 0o600))

	s = open(t, dir, nil)
	defer s.Close()
	_, err = s.Get([]byte("k000"))
	require.ErrorIs(t, err, storage.ErrCorrupt)
	err = s.ForEach(nil, func(k, v []byte) error {
		require.Equal(t, value, v, "only intact values are served")
		return nil
	})
	require.ErrorIs(t, err, storage.ErrCorrupt)
	err = s.Update([]byte("k001"), func([]byte) ([]byte, error) {
		t.Fatal("fn called on a damaged read")
		return nil, nil
	})
	require.ErrorIs(t, err, storage.ErrCorrupt)
	require.Positive(t, s.Stats().CorruptReads)
}

// TestStorageStats: the figures the root package's metrics show move with
// the work done.
func TestStorageStats(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	defer s.Close()
	for i := range 10 {
		require.NoError(t, s.Update(fmt.Appendf(nil, "k%d", i), func([]byte) ([]byte, error) { return []byte("v"), nil }))
	}
	st := s.StorageStats()
	require.Equal(t, uint64(10), st.Updates)
	require.Equal(t, uint64(10), st.Commits)
	require.Positive(t, st.LogBytes)
	require.NoError(t, s.Close())
	require.Zero(t, s.StorageStats().LogBytes, "closed")
}

// TestSums_DamagedBlockScansAgain: damage to the table that holds the sum
// records and their spec costs a scan, not the node: Open succeeds, Sums
// rebuilds the sums from the data, and they equal a fresh scan.
func TestSums_DamagedBlockScansAgain(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	randomWrites(t, s, rand.New(rand.NewPCG(7, 8)), 300)
	require.NoError(t, s.db.Flush()) // the data in one table
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.NoError(t, s.db.Flush()) // the sums and their spec in the next
	want := scanned(t, s)
	require.NoError(t, s.Close())

	newest, num := "", 0
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		var n int
		if _, err := fmt.Sscanf(e.Name(), "%d.sst", &n); err == nil && n > num {
			newest, num = filepath.Join(dir, e.Name()), n
		}
	}
	require.NotEmpty(t, newest)
	b, err := os.ReadFile(newest)
	require.NoError(t, err)
	b[40] ^= 0x10 // inside its first data block: sum records
	require.NoError(t, os.WriteFile(newest, b, 0o600))

	s = open(t, dir, nil)
	defer s.Close()
	got, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.Stats().SumScans, "the damaged sums were rebuilt by a scan")
	require.Equal(t, want, got)
	require.Equal(t, scanned(t, s), got)
}

// TestCommitFails_StoreTakesNoMoreWrites: a commit that fails after its
// result was staged (storage.Stager) fails the Store for good: the update
// returns the error, every later write fails with ErrFailed without
// running its fn, reads go on, and a reopen writes again.
func TestCommitFails_StoreTakesNoMoreWrites(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	require.NoError(t, s.Update([]byte("k"), set([]byte("v1"))))
	cause := errors.New("disk on fire")
	s.commitFault = func() error { return cause }
	staged := false
	err := s.UpdateStaged([]byte("k"), set([]byte("v2")), func() { staged = true })
	require.True(t, staged)
	require.ErrorIs(t, err, cause)
	require.ErrorIs(t, err, ErrFailed)
	s.commitFault = nil

	require.ErrorIs(t, s.Failed(), ErrFailed)
	called := false
	err = s.Update([]byte("k"), func([]byte) ([]byte, error) { called = true; return []byte("v3"), nil })
	require.ErrorIs(t, err, ErrFailed)
	require.False(t, called, "fn runs on the value from before the failed commit")
	for _, err := range s.UpdateBatch([]storage.Op{{Key: []byte("a"), Fn: set([]byte("a"))}}) {
		require.ErrorIs(t, err, ErrFailed)
	}
	_, err = s.DeletePrefix([]byte("k"))
	require.ErrorIs(t, err, ErrFailed)
	v, err := s.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, "v1", string(v))
	require.NoError(t, s.Close())

	s = open(t, dir, nil)
	defer s.Close()
	require.NoError(t, s.Failed())
	require.NoError(t, s.Update([]byte("k"), set([]byte("v4"))))
}
