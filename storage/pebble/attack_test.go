// attack_test.go: adversarial tests of the Store: empty values across a
// flush, a damaged manifest, and the contracts' edge cases.
package pebble

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
)

func set(v []byte) func([]byte) ([]byte, error) {
	return func([]byte) ([]byte, error) { return v, nil }
}

// TestEmptyValue_Flushed: a stored empty value stays a present key, in the
// memtable and in a table: Get returns it non-nil, Update's fn sees it
// non-nil, ForEach visits it non-nil, and DeletePrefix deletes it.
func TestEmptyValue_Flushed(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprint("flush=", flush), func(t *testing.T) {
			s := open(t, t.TempDir(), nil)
			defer s.Close()
			require.NoError(t, s.Update([]byte("e/1"), set([]byte{})))
			require.NoError(t, s.Update([]byte("e/2"), set([]byte{})))
			if flush {
				require.NoError(t, s.db.Flush())
			}
			v, err := s.Get([]byte("e/1"))
			require.NoError(t, err)
			require.NotNil(t, v, "a stored empty value is present")
			require.Empty(t, v)
			require.NoError(t, s.Update([]byte("e/1"), func(cur []byte) ([]byte, error) {
				require.NotNil(t, cur, "fn sees the stored empty value")
				return nil, nil
			}))
			v, err = s.Get([]byte("e/1"))
			require.NoError(t, err)
			require.Nil(t, v, "deleted")
			seen := 0
			require.NoError(t, s.ForEach([]byte("e/"), func(k, v []byte) error {
				seen++
				require.NotNil(t, v, "ForEach hands a present key a non-nil value")
				return nil
			}))
			require.Equal(t, 1, seen)
			n, err := s.DeletePrefix([]byte("e/"))
			require.NoError(t, err)
			require.Equal(t, 1, n)
			v, err = s.Get([]byte("e/2"))
			require.NoError(t, err)
			require.Nil(t, v, "DeletePrefix deleted the empty value")
		})
	}
}

// files returns dir's files whose names contain part.
func files(t *testing.T, dir, part string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), part) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// copyDir copies the files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600))
	}
	return dst
}

// TestCorruptManifest: a flipped byte anywhere in the manifest either
// makes Open fail with storage.ErrCorrupt or leaves every acknowledged
// write readable; it never silently drops data. A torn tail (the manifest
// cut inside its last record, as a crash leaves it) opens.
func TestCorruptManifest(t *testing.T) {
	src := t.TempDir()
	s := open(t, src, nil)
	const rounds, per = 6, 50
	for r := range rounds {
		for i := range per {
			require.NoError(t, s.Update(fmt.Appendf(nil, "k%d-%03d", r, i), set(fmt.Appendf(nil, "v%d", i))))
		}
		require.NoError(t, s.db.Flush()) // one version edit each
	}
	require.NoError(t, s.Close())
	manifests := files(t, src, "MANIFEST-")
	require.Len(t, manifests, 1)
	orig, err := os.ReadFile(manifests[0])
	require.NoError(t, err)

	check := func(t *testing.T, dir string) (corrupt bool) {
		s, err := Open(dir, small)
		if err != nil {
			require.ErrorIs(t, err, storage.ErrCorrupt)
			return true
		}
		defer s.Close()
		for r := range rounds {
			for i := range per {
				v, err := s.Get(fmt.Appendf(nil, "k%d-%03d", r, i))
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("v%d", i), string(v), "k%d-%03d", r, i)
			}
		}
		return false
	}
	for k := 1; k < 20; k++ {
		at := len(orig) * k / 20
		t.Run(fmt.Sprint("flip@", at), func(t *testing.T) {
			dir := copyDir(t, src)
			b := bytes.Clone(orig)
			b[at] ^= 0x40
			require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(manifests[0])), b, 0o600))
			check(t, dir)
		})
	}
	t.Run("torn tail", func(t *testing.T) {
		dir := copyDir(t, src)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(manifests[0])), orig[:len(orig)-3], 0o600))
		require.False(t, check(t, dir), "a torn tail is not damage")
	})
}

// TestCorruptTable_Sweep: a flipped byte anywhere in a table (data,
// filter, index, properties, footer) is never served as data: Open, Get and
// ForEach either return the stored bytes or fail with storage.ErrCorrupt,
// and nothing panics.
func TestCorruptTable_Sweep(t *testing.T) {
	src := t.TempDir()
	s := open(t, src, nil)
	const keys = 200
	value := func(i int) []byte { return bytes.Repeat(fmt.Appendf(nil, "v%03d.", i), 20) }
	for i := range keys {
		require.NoError(t, s.Update(fmt.Appendf(nil, "k%03d", i), set(value(i))))
	}
	require.NoError(t, s.db.Flush())
	require.NoError(t, s.Close())
	tables := files(t, src, ".sst")
	require.Len(t, tables, 1)
	orig, err := os.ReadFile(tables[0])
	require.NoError(t, err)

	step := len(orig)/12 + 1
	if testing.Short() {
		step = len(orig)/4 + 1
	}
	for at := 0; at < len(orig); at += step {
		// also the last bytes (the footer and its magic number)
		for _, pos := range []int{at, len(orig) - 1 - at/step} {
			dir := copyDir(t, src)
			b := bytes.Clone(orig)
			b[pos] ^= 0x08
			require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(tables[0])), b, 0o600))
			s, err := Open(dir, small)
			if err != nil {
				require.ErrorIs(t, err, storage.ErrCorrupt, "open, flip@%d", pos)
				continue
			}
			for i := range keys {
				v, err := s.Get(fmt.Appendf(nil, "k%03d", i))
				if err != nil {
					require.ErrorIs(t, err, storage.ErrCorrupt, "get, flip@%d", pos)
					continue
				}
				require.Equal(t, value(i), v, "get k%03d, flip@%d", i, pos)
			}
			err = s.ForEach(nil, func(k, v []byte) error {
				var i int
				_, serr := fmt.Sscanf(string(k), "k%03d", &i)
				require.NoError(t, serr, "flip@%d", pos)
				require.Equal(t, value(i), v, "foreach %s, flip@%d", k, pos)
				return nil
			})
			if err != nil {
				require.ErrorIs(t, err, storage.ErrCorrupt, "foreach, flip@%d", pos)
			}
			require.NoError(t, s.Close())
		}
	}
}

// TestSums_CrashDuringRescan: a crash while Sums scans for a new spec and
// replaces the kept sums leaves either the old spec's sums or the new
// one's, each equal to the durable data.
func TestSums_CrashDuringRescan(t *testing.T) {
	fs, o := strictMem(t)
	s := open(t, "db", o)
	rng := rand.New(rand.NewPCG(7, 8))
	randomWrites(t, s, rng, 200)
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	randomWrites(t, s, rng, 100)
	fs.SetIgnoreSyncs(true)
	other := storage.SumSpec{Prefix: []byte("p/"), Buckets: 16}
	_, err = s.Sums(other) // never reaches the disk
	require.NoError(t, err)
	randomWrites(t, s, rng, 50)
	crash(t, fs, s)

	s = open(t, "db", o)
	defer s.Close()
	got, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Zero(t, s.Stats().SumScans, "the old spec's sums are still kept")
	require.Equal(t, scanned(t, s), got)
	got, err = s.Sums(other)
	require.NoError(t, err)
	want, err := storage.ComputeSums(s, other)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// TestClose_RacingWrites: Close racing Update, UpdateBatch, DeletePrefix,
// Sums, ForEach and StorageStats neither panics nor leaks: every call
// either succeeds or fails with storage.ErrClosed, and the sums kept equal
// the data after a reopen.
func TestClose_RacingWrites(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	_, err := s.Sums(testSpec)
	require.NoError(t, err)
	var wg sync.WaitGroup
	started := make(chan struct{}) // closed after 30 calls of the first goroutine
	okOrClosed := func(err error) {
		if err != nil && !errors.Is(err, storage.ErrClosed) {
			t.Errorf("want nil or ErrClosed, got %v", err)
		}
	}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := specKey((g*7+i)%testSpec.Buckets, fmt.Sprint(i%5))
				var err error
				switch i % 6 {
				case 0, 1:
					err = s.Update(key, set(fmt.Appendf(nil, "v%d", i)))
				case 2:
					errs := s.UpdateBatch([]storage.Op{{Key: key, Fn: set(nil)}, {Key: key, Fn: set([]byte("x"))}, {Key: key, Fn: set([]byte("y"))}})
					err = errors.Join(errs...)
				case 3:
					_, err = s.DeletePrefix(specKey(i%testSpec.Buckets, ""))
				case 4:
					_, err = s.Sums(testSpec)
				case 5:
					err = s.ForEach(specKey(i%testSpec.Buckets, ""), func(k, v []byte) error { return nil })
					_ = s.StorageStats()
				}
				okOrClosed(err)
				if g == 0 && i == 30 {
					close(started)
				}
				if errors.Is(err, storage.ErrClosed) {
					return
				}
			}
		}()
	}
	<-started
	require.NoError(t, s.Close())
	wg.Wait()
	require.NoError(t, s.Close(), "idempotent")

	s = open(t, dir, nil)
	defer s.Close()
	got, err := s.Sums(testSpec)
	require.NoError(t, err)
	require.Zero(t, s.Stats().SumScans)
	require.Equal(t, scanned(t, s), got)
}

// TestUpdate_FnPanics: a panicking fn releases the key's stripe and the
// Store's lock: the key takes later Updates, and Close returns.
func TestUpdate_FnPanics(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	key := []byte("k")
	require.Panics(t, func() {
		_ = s.Update(key, func([]byte) ([]byte, error) { panic("fn") })
	})
	require.Panics(t, func() {
		_ = s.UpdateBatch([]storage.Op{{Key: []byte("a"), Fn: set([]byte("a"))}, {Key: key, Fn: func([]byte) ([]byte, error) { panic("fn") }}})
	})
	require.NoError(t, s.Update(key, set([]byte("v"))))
	require.Panics(t, func() {
		_ = s.ForEach(nil, func([]byte, []byte) error { panic("fn") })
	})
	require.NoError(t, s.Update(key, set([]byte("w"))))
	v, err := s.Get([]byte("a"))
	require.NoError(t, err)
	require.Nil(t, v, "a batch whose Fn panicked committed nothing")
	_, err = s.DeletePrefix(key)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

// noTables is a file system on which Pebble cannot create a table, so
// that its memtables are never flushed and their logs stay.
type noTables struct{ vfs.FS }

func (f noTables) Create(name string) (vfs.File, error) {
	if strings.HasSuffix(name, ".sst") {
		return nil, errors.New("no tables")
	}
	return f.FS.Create(name)
}

// TestCorruptLog: damage inside an older log file makes Open fail with
// storage.ErrCorrupt; damage inside the last one reads as its end (the
// package doc's claims): the writes before it are served intact, those
// after it are absent, and nothing damaged is served.
func TestCorruptLog(t *testing.T) {
	src := t.TempDir()
	o := Options{CacheSize: 8 << 20, MemTableSize: 1 << 20, FS: noTables{vfs.Default}}
	s := open(t, src, &o)
	value := func(i int) []byte { return bytes.Repeat(fmt.Appendf(nil, "%06d", i), 100) }
	const keys = 2500 // ~1.5 MiB: two memtables or more, a log each
	ops := make([]storage.Op, 0, 100)
	for i := range keys {
		ops = append(ops, storage.Op{Key: fmt.Appendf(nil, "k%06d", i), Fn: set(value(i))})
		if len(ops) == cap(ops) {
			for _, err := range s.UpdateBatch(ops) {
				require.NoError(t, err)
			}
			ops = ops[:0]
		}
	}
	require.NoError(t, s.Close())
	logs := files(t, src, ".log")
	require.GreaterOrEqual(t, len(logs), 2, "the memtables were never flushed")
	logs = []string{logs[0], logs[len(logs)-1]} // the oldest, the last

	check := func(t *testing.T, dir string) {
		s, err := Open(dir, small)
		if err != nil {
			require.ErrorIs(t, err, storage.ErrCorrupt)
			return
		}
		defer s.Close()
		missing := 0
		for i := range keys {
			v, err := s.Get(fmt.Appendf(nil, "k%06d", i))
			require.NoError(t, err)
			if v == nil {
				missing++
				continue
			}
			require.Equal(t, value(i), v)
			require.Zero(t, missing, "k%06d present after a missing key", i)
		}
		require.Positive(t, missing, "the writes after the damage are dropped")
	}
	for i, name := range logs {
		t.Run(fmt.Sprint("log", i), func(t *testing.T) {
			dir := copyDir(t, src)
			path := filepath.Join(dir, filepath.Base(name))
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			b[len(b)/2] ^= 0x20
			require.NoError(t, os.WriteFile(path, b, 0o600))
			if i == 0 {
				_, err := Open(dir, small)
				require.ErrorIs(t, err, storage.ErrCorrupt, "damage in an older log")
				return
			}
			check(t, dir)
		})
	}
}

// TestForEach_GetWhileWriterWaits: a ForEach's fn may call Get (only
// Update is ruled out) even while a DeletePrefix or a Close waits: a walk
// no longer holds the lock they wait on, so neither deadlocks with it, and
// neither waits for a long walk (nor do the Gets and Updates queued behind
// them).
func TestForEach_GetWhileWriterWaits(t *testing.T) {
	for _, writer := range []string{"DeletePrefix", "Close"} {
		t.Run(writer, func(t *testing.T) {
			s := open(t, t.TempDir(), nil)
			defer s.Close()
			for _, k := range []string{"a", "b", "x/1"} {
				require.NoError(t, s.Update([]byte(k), set([]byte(k))))
			}
			done := make(chan error, 1)
			err := s.ForEach([]byte("a"), func(k, v []byte) error {
				go func() {
					if writer == "Close" {
						done <- s.Close()
						return
					}
					_, err := s.DeletePrefix([]byte("x/"))
					done <- err
				}()
				// The writer has run, or waits for the lock.
				// (Close, fixed, marks the Store closed and waits for the walk.)
				for s.mu.TryRLock() {
					closed := s.closed
					s.mu.RUnlock()
					if closed {
						break
					}
					select {
					case err := <-done:
						done <- err
						return nil
					default:
						runtime.Gosched()
					}
				}
				got := make(chan []byte, 1)
				go func() {
					v, _ := s.Get([]byte("b"))
					got <- v
				}()
				select {
				case <-got:
				case <-time.After(10 * time.Second):
					t.Error("Get inside ForEach deadlocked with a waiting " + writer)
					// returning ends the walk, and with it the deadlock
				}
				return nil
			})
			require.NoError(t, err)
			require.NoError(t, <-done)
		})
	}
}
