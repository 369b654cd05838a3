// Helpers of the white-box tests: records and files made by hand, a model of what a Store must hold, and reading a closed Store's metadata.
package bolt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"
)

// testEntry is one change of a log record; a nil value deletes.
type testEntry struct {
	key, value []byte
}

func testPut(k, v string) testEntry { return testEntry{[]byte(k), []byte(v)} }
func testDel(k string) testEntry    { return testEntry{[]byte(k), nil} }

// testSeed is the log seed of the files the tests make by hand.
const testSeed = 0x5eed

// testRecord returns a log record of lsn holding es, sealed with testSeed.
func testRecord(lsn uint64, es ...testEntry) []byte {
	return testRecordSeed(testSeed, lsn, es...)
}

// testRecordSeed returns a log record of lsn holding es, sealed with seed.
func testRecordSeed(seed uint32, lsn uint64, es ...testEntry) []byte {
	rec := make([]byte, recHeader)
	for _, e := range es {
		rec = appendEntry(rec, e.key, e.value)
	}
	sealRecord(rec, lsn, seed)
	return rec
}

// testRawRecord returns a record of lsn with any payload, sealed with
// testSeed so that its checksums hold.
func testRawRecord(lsn uint64, payload []byte) []byte {
	rec := append(make([]byte, recHeader), payload...)
	sealRecord(rec, lsn, testSeed)
	return rec
}

// testRec returns a record of lsn that puts "key<lsn>" = "value".
func testRec(lsn uint64) []byte { return testRecord(lsn, testPut(fmt.Sprintf("key%d", lsn), "value")) }

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// testOpen opens a Store at dir/node.db and closes it when the test ends.
func testOpen(t *testing.T, dir string, opts *Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(dir, "node.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// openFails opens dir/node.db, which must fail without a panic and
// without keeping the file locked; it returns the error.
func openFails(t *testing.T, dir string, opts *Options) error {
	t.Helper()
	o := Options{Timeout: 100 * time.Millisecond}
	if opts != nil {
		o = *opts
		o.Timeout = 100 * time.Millisecond
	}
	var err error
	for range 2 { // the failed Open released the lock
		var s *Store
		require.NotPanics(t, func() { s, err = Open(filepath.Join(dir, "node.db"), &o) })
		require.Error(t, err)
		require.NotErrorIs(t, err, ErrLocked)
		require.Nil(t, s)
	}
	return err
}

// testStore puts value (nil: deletes) under key and records it in model.
func testStore(t *testing.T, s *Store, model map[string][]byte, key string, value []byte) {
	t.Helper()
	require.NoError(t, s.Update([]byte(key), func([]byte) ([]byte, error) { return value, nil }))
	if value == nil {
		delete(model, key)
	} else {
		model[key] = bytes.Clone(value)
	}
}

// testWrites makes n changes of keys k000..k099 (a fifth of them
// deletes) with values naming their key and write.
func testWrites(t *testing.T, s *Store, model map[string][]byte, rng *rand.Rand, tag string, n int) {
	t.Helper()
	for i := range n {
		key := fmt.Sprintf("k%03d", rng.IntN(100))
		if rng.IntN(5) == 0 {
			testStore(t, s, model, key, nil)
			continue
		}
		v := fmt.Appendf(nil, "%s@%s.%d|", key, tag, i)
		testStore(t, s, model, key, append(v, bytes.Repeat([]byte{'x'}, rng.IntN(120))...))
	}
}

// requireModel checks that s holds exactly model: a Get of every key in
// model and in extra, and a full ForEach.
func requireModel(t *testing.T, s *Store, model map[string][]byte, extra ...string) {
	t.Helper()
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range model {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range append(slices.Clone(keys), extra...) {
		got, err := s.Get([]byte(k))
		require.NoError(t, err, "Get(%q)", k)
		want, ok := model[k]
		if !ok {
			require.Nil(t, got, "Get(%q): deleted or never written", k)
			continue
		}
		require.NotNil(t, got, "Get(%q): missing", k)
		require.Equal(t, want, got, "Get(%q)", k)
	}
	var got []string
	require.NoError(t, s.ForEach(nil, func(k, v []byte) error {
		got = append(got, string(k))
		if want, ok := model[string(k)]; !ok || !bytes.Equal(want, v) {
			return fmt.Errorf("ForEach: %q = %.40q, want %.40q (present: %t)", k, v, want, ok)
		}
		return nil
	}))
	require.Equal(t, keys, got, "ForEach keys")
}

// cloneModel returns a copy of m.
func cloneModel(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// copyStore copies the database file and both log segments of src/node.db
// into a new directory and returns it.
func copyStore(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, name := range []string{"node.db", "node.db.wal0", "node.db.wal1"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, name), b, 0o600))
	}
	return dst
}

// readRun returns the run of records at the start of a segment file, from
// record want on, with the checkpoint at c.
func readRun(t *testing.T, path string, seed uint32, c, want uint64) []logRecord {
	t.Helper()
	f, err := osFS{}.OpenFile(path, os.O_RDONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	sr, err := newSegReader(f, seed)
	require.NoError(t, err)
	run, err := sr.readRun(c, want)
	require.NoError(t, err)
	return run.recs
}

// runSize is how many bytes recs take in a segment.
func runSize(recs []logRecord) int64 {
	var n int64
	for _, r := range recs {
		n += int64(recHeader + len(r.payload))
	}
	return n
}

// makeDB creates the bbolt file path with the Store's buckets, data in the
// data bucket (checksummed) and pos as the log position, sealed with
// testSeed.
func makeDB(t *testing.T, path string, pos logPos, data map[string]string) {
	t.Helper()
	pos.seed = testSeed
	makeFile(t, path, data, func(k, v []byte) []byte { return appendValue(nil, k, v) }, putPos(pos))
}

// makeFile creates the bbolt file path with the Store's buckets, data in the
// data bucket in the form store gives it, and runs meta on the metadata
// bucket.
func makeFile(t *testing.T, path string, data map[string]string, store func(k, v []byte) []byte, meta func(*bbolt.Bucket) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName)
		if err != nil {
			return err
		}
		for k, v := range data {
			if err := b.Put([]byte(k), store([]byte(k), []byte(v))); err != nil {
				return err
			}
		}
		mb, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		return meta(mb)
	}))
	require.NoError(t, db.Close())
}

// setLogPos overwrites the log position of the closed Store at path.
func setLogPos(t *testing.T, path string, pos logPos) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error { return putPos(pos)(tx.Bucket(metaBucket)) }))
	require.NoError(t, db.Close())
}

// fileLogPos reads the log position of the closed Store at path.
func fileLogPos(t *testing.T, path string) logPos {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var pos logPos
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		pos, err = parseLogPos(tx.Bucket(metaBucket).Get(logKey))
		return err
	}))
	return pos
}

// fileKeys returns the keys in the data bucket of the closed Store at path.
func fileKeys(t *testing.T, path string) []string {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var keys []string
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketName).ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
	}))
	return keys
}

// writeSegments writes the two log segments of dir/node.db, each followed
// by prepSize zeros, as the Store leaves room after its records.
func writeSegments(t *testing.T, dir string, wal0, wal1 []byte) {
	t.Helper()
	p := segmentPaths(filepath.Join(dir, "node.db"))
	require.NoError(t, os.WriteFile(p[0], cat(wal0, make([]byte, prepSize)), 0o600))
	require.NoError(t, os.WriteFile(p[1], cat(wal1, make([]byte, prepSize)), 0o600))
}
