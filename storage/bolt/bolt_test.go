// Tests for the bbolt-backed Store: conformance, durability, locking and damaged files.
package bolt_test

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
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/bolt"
	"github.com/dynamo-kv/dynamo/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// open opens a Store at dir/node.db and closes it when the test ends.
func open(t testing.TB, dir string, opts *bolt.Options) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(dir, "node.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// set stores value under key, failing the test on error.
func set(t testing.TB, s storage.Storage, key, value string) {
	t.Helper()
	require.NoError(t, s.Update([]byte(key), func([]byte) ([]byte, error) { return []byte(value), nil }))
}

func TestBolt_Conformance(t *testing.T) {
	storagetest.RunDurable(t, func(t *testing.T, dir string) storage.Storage {
		return open(t, dir, nil)
	})
}

// The log synced by the committer itself rather than through io_uring.
func TestBolt_Conformance_DirectSync(t *testing.T) {
	storagetest.RunDurable(t, func(t *testing.T, dir string) storage.Storage {
		return open(t, dir, &bolt.Options{DirectSync: true})
	})
}

// A value damaged in the database file, found by its checksum.
func TestBolt_Conformance_Damaged(t *testing.T) {
	storagetest.RunDamaged(t, func(t *testing.T, dir string) storage.Storage {
		return open(t, dir, nil)
	}, func(t *testing.T, dir string, _, value []byte) {
		flipAll(t, filepath.Join(dir, "node.db"), value, len(value)/2)
	})
}

func TestBolt_Conformance_MaxBatch1(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return open(t, t.TempDir(), &bolt.Options{MaxBatch: 1})
	})
}

func TestBolt_Open_LockedFile_FailsWithErrLocked(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	set(t, s, "k", "v")

	_, err := bolt.Open(s.Path(), &bolt.Options{Timeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, bolt.ErrLocked)
	require.ErrorContains(t, err, s.Path())
	require.ErrorContains(t, err, "50ms")

	// The first Store is unharmed, and the file opens once it is closed.
	set(t, s, "k", "v2")
	require.NoError(t, s.Close())
	s2 := open(t, dir, nil)
	v, err := s2.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, "v2", string(v))
}

func TestBolt_Open_InvalidOptions_ReportsEvery(t *testing.T) {
	_, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), &bolt.Options{MaxBatch: -1, Timeout: -time.Second, FileMode: os.ModeDir})
	require.ErrorIs(t, err, bolt.ErrInvalidOptions)
	for _, want := range []string{"MaxBatch (-1)", "Timeout (-1s)", "FileMode (d---------)"} {
		require.ErrorContains(t, err, want)
	}
	require.NoError(t, bolt.Options{}.Validate())
}

func TestBolt_Open_MissingDirectory_Fails(t *testing.T) {
	_, err := bolt.Open(filepath.Join(t.TempDir(), "no", "such", "x.db"), nil)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestBolt_Open_GarbageFile_ErrCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	tests := map[string][]byte{
		"one byte":     {0x42},
		"short text":   []byte("this is not a database\n"),
		"random 64KiB": garbage,
		"zeros 16KiB":  make([]byte, 16<<10),
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.db")
			require.NoError(t, os.WriteFile(path, content, 0o600))
			s, err := bolt.Open(path, nil)
			require.ErrorIs(t, err, storage.ErrCorrupt)
			require.Nil(t, s)
			// The failed Open released the lock and left the file alone.
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(content, got), "Open modified a file it rejected")
		})
	}
}

// TestBolt_DamagedPages_NeverPanics overwrites each page past the two meta
// pages of a real database with garbage, one page at a time, and checks that
// Open, Get, ForEach and Update report the damage as storage.ErrCorrupt (or,
// where bbolt cannot tell, answer) but never panic.
func TestBolt_DamagedPages_NeverPanics(t *testing.T) {
	dir := t.TempDir()
	clean := cleanFile(t, dir)
	rng := rand.New(rand.NewPCG(1, 1))
	var openErrs, readErrs int
	for page := 2; page < len(clean)/pageSize; page++ {
		damaged := bytes.Clone(clean)
		for i := page * pageSize; i < (page+1)*pageSize; i++ {
			damaged[i] = byte(rng.Uint32())
		}
		path := filepath.Join(dir, fmt.Sprintf("damaged-%d.db", page))
		require.NoError(t, os.WriteFile(path, damaged, 0o600))
		require.NotPanics(t, func() {
			s, err := bolt.Open(path, nil)
			if err != nil {
				require.ErrorIs(t, err, storage.ErrCorrupt, "page %d", page)
				openErrs++
				return
			}
			defer func() { require.NoError(t, s.Close()) }()
			for _, key := range []string{"a", "m" + strings.Repeat("x", 12), "zzzz"} {
				if _, err := s.Get([]byte(key)); err != nil {
					require.ErrorIs(t, err, storage.ErrCorrupt, "page %d", page)
					readErrs++
				}
			}
			if err := s.ForEach(nil, func(_, _ []byte) error { return nil }); err != nil {
				require.ErrorIs(t, err, storage.ErrCorrupt, "page %d", page)
				readErrs++
			}
			_ = s.Update([]byte("new"), func([]byte) ([]byte, error) { return []byte("v"), nil })
		}, "page %d", page)
		require.NoError(t, os.Remove(path))
	}
	t.Logf("%d damaged pages: Open failed on %d, reads failed %d times", len(clean)/pageSize-2, openErrs, readErrs)
	require.NotZero(t, openErrs+readErrs, "no damage was detected at all")
}

// TestBolt_Open_DamagedFreelist_ErrCorrupt_ReleasesLock damages the freelist
// page, on which bbolt.Open panics, and checks that the panic becomes
// ErrCorrupt and that the failed Open does not keep the file locked.
func TestBolt_Open_DamagedFreelist_ErrCorrupt_ReleasesLock(t *testing.T) {
	dir := t.TempDir()
	damaged := cleanFile(t, dir)
	// Each meta page: 16-byte page header, then magic, version, pageSize,
	// flags (4 bytes each), root bucket (16), freelist pgid (8), pgid (8),
	// txid (8). The live meta is the one with the larger txid.
	meta := func(i int) []byte { return damaged[i*pageSize+16:] }
	live := meta(0)
	if binary.LittleEndian.Uint64(meta(1)[48:]) > binary.LittleEndian.Uint64(live[48:]) {
		live = meta(1)
	}
	freelist := int(binary.LittleEndian.Uint64(live[32:]))
	require.Greater(t, freelist, 1)
	binary.LittleEndian.PutUint16(damaged[freelist*pageSize+8:], 0x0) // page flags: no known type
	path := filepath.Join(dir, "damaged.db")
	require.NoError(t, os.WriteFile(path, damaged, 0o600))

	for range 2 {
		_, err := bolt.Open(path, &bolt.Options{Timeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, storage.ErrCorrupt)
		require.NotErrorIs(t, err, bolt.ErrLocked)
	}
}

// pageSize is the page size cleanFile's database uses, the OS default.
var pageSize = os.Getpagesize()

// cleanFile writes a database of a few hundred keys of assorted sizes in dir
// and returns its bytes.
func cleanFile(t *testing.T, dir string) []byte {
	t.Helper()
	s, err := bolt.Open(filepath.Join(dir, "clean.db"), nil)
	require.NoError(t, err)
	for i := range 200 {
		key := string(rune('a'+i%26)) + strings.Repeat("x", i)
		set(t, s, key, strings.Repeat("v", 100+i*10))
	}
	require.NoError(t, s.Close())
	clean, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	require.Zero(t, len(clean)%pageSize)
	return clean
}

func TestBolt_Update_KeyTooLarge(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	err := s.Update(make([]byte, 40000), func([]byte) ([]byte, error) { return []byte("v"), nil })
	require.Error(t, err)
	require.ErrorContains(t, err, "40000")
}

func TestBolt_Update_FnPanics_RaisedInCaller_StoreKeepsWorking(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	set(t, s, "k", "before")
	require.PanicsWithValue(t, "boom", func() {
		_ = s.Update([]byte("k"), func([]byte) ([]byte, error) { panic("boom") })
	})
	v, err := s.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, "before", string(v))
	set(t, s, "k", "after")
}

func TestBolt_ForEach_FnPanics_Propagates(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	set(t, s, "k", "v")
	sentinel := errors.New("sentinel")
	require.PanicsWithError(t, sentinel.Error(), func() {
		_ = s.ForEach(nil, func(_, _ []byte) error { panic(sentinel) })
	})
	// The read transaction was released: a commit (which may remap) and
	// Close still work.
	set(t, s, "k2", "v2")
	require.NoError(t, s.Close())
}

func TestBolt_Stats_CountsCommitsAndUpdates(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	for range 3 {
		set(t, s, "k", "v")
	}
	_ = s.Update([]byte("k"), func([]byte) ([]byte, error) { return nil, errors.New("no") })
	st := s.Stats()
	require.Equal(t, uint64(3), st.Updates)
	require.Equal(t, uint64(3), st.Commits, "a batch whose every fn failed must roll back, not fsync")
}
