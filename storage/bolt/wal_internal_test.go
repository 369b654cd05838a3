// Tests for the write-ahead log, white-box: the record format, torn tails, gaps and undecodable records at Open, replay across both segments, failures of the log and of checkpoints, and the three layers reads merge.
package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/dynamo-kv/dynamo/storage"
)

// testEntry is one change of a log record; a nil value deletes.
type testEntry struct {
	key, value []byte
}

func testPut(k, v string) testEntry { return testEntry{[]byte(k), []byte(v)} }
func testDel(k string) testEntry    { return testEntry{[]byte(k), nil} }

// testRecord returns a sealed log record of lsn holding es.
func testRecord(lsn uint64, es ...testEntry) []byte {
	rec := make([]byte, recHeader)
	for _, e := range es {
		rec = appendEntry(rec, e.key, e.value)
	}
	sealRecord(rec, lsn)
	return rec
}

// testRawRecord returns a record of lsn with any payload, sealed so that its
// checksum holds.
func testRawRecord(lsn uint64, payload []byte) []byte {
	rec := append(make([]byte, recHeader), payload...)
	sealRecord(rec, lsn)
	return rec
}

// testOpen opens a Store at dir/node.db and closes it when the test ends.
func testOpen(t *testing.T, dir string, opts *Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(dir, "node.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
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

// readRun returns the run of records at the start of a segment file, after
// LSN after.
func readRun(t *testing.T, path string, after uint64) []logRecord {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	recs, err := readSegment(f, after)
	require.NoError(t, err)
	return recs
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
// data bucket, and lsn as the checkpoint LSN (none when 0).
func makeDB(t *testing.T, path string, lsn uint64, data map[string]string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName)
		if err != nil {
			return err
		}
		for k, v := range data {
			if err := b.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil || lsn == 0 {
			return err
		}
		return meta.Put(lsnKey, binary.BigEndian.AppendUint64(nil, lsn))
	}))
	require.NoError(t, db.Close())
}

// setCheckpointLSN overwrites the checkpoint LSN of the closed Store at path.
func setCheckpointLSN(t *testing.T, path string, lsn uint64) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(metaBucket).Put(lsnKey, binary.BigEndian.AppendUint64(nil, lsn))
	}))
	require.NoError(t, db.Close())
}

// fileCheckpointLSN reads the checkpoint LSN of the closed Store at path.
func fileCheckpointLSN(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	lsn, err := checkpointLSN(db)
	require.NoError(t, err)
	return lsn
}

// writeSegments writes the two log segments of dir/node.db.
func writeSegments(t *testing.T, dir string, wal0, wal1 []byte) {
	t.Helper()
	p := segmentPaths(filepath.Join(dir, "node.db"))
	require.NoError(t, os.WriteFile(p[0], wal0, 0o600))
	require.NoError(t, os.WriteFile(p[1], wal1, 0o600))
}

func TestWAL_ReadSegment_RunOfConsecutiveValidRecords(t *testing.T) {
	r := func(lsn uint64) []byte { return testRecord(lsn, testPut(fmt.Sprintf("key%d", lsn), "value")) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	torn := r(4)
	flipped := r(4)
	flipped[len(flipped)-1] ^= 1
	zeroHeader := make([]byte, recHeader)
	huge := r(4)
	binary.LittleEndian.PutUint32(huge[4:], maxRecord+1)

	tests := []struct {
		name  string
		seg   []byte
		after uint64
		want  []uint64
	}{
		{"empty", nil, 0, nil},
		{"three", cat(r(1), r(2), r(3)), 0, []uint64{1, 2, 3}},
		{"filtered by the checkpoint", cat(r(1), r(2), r(3)), 2, []uint64{3}},
		{"all checkpointed", cat(r(1), r(2), r(3)), 3, nil},
		{"starts anywhere", cat(r(41), r(42)), 0, []uint64{41, 42}},
		{"zeros end it", cat(r(1), r(2), zeroHeader, r(3)), 0, []uint64{1, 2}},
		{"a stale record ends it", cat(r(21), r(22), r(3), r(4)), 0, []uint64{21, 22}},
		{"a skipped LSN ends it", cat(r(1), r(2), r(4)), 0, []uint64{1, 2}},
		{"a repeated LSN ends it", cat(r(1), r(2), r(2), r(3)), 0, []uint64{1, 2}},
		{"torn header", cat(r(1), r(2), r(3), torn[:recHeader-1]), 0, []uint64{1, 2, 3}},
		{"torn payload", cat(r(1), r(2), r(3), torn[:len(torn)-1]), 0, []uint64{1, 2, 3}},
		{"bad checksum ends it", cat(r(1), r(2), r(3), flipped, r(5)), 0, []uint64{1, 2, 3}},
		{"length over maxRecord", cat(r(1), r(2), r(3), huge), 0, []uint64{1, 2, 3}},
		{"LSN 0", cat(testRecord(0, testPut("k", "v")), r(1)), 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := readSegment(bytes.NewReader(tc.seg), tc.after)
			require.NoError(t, err)
			var got []uint64
			for _, rec := range recs {
				got = append(got, rec.lsn)
				var keys []string
				require.NoError(t, decodeEntries(rec.payload, func(k, v []byte) {
					keys = append(keys, string(k))
					require.Equal(t, "value", string(v))
				}))
				require.Equal(t, []string{fmt.Sprintf("key%d", rec.lsn)}, keys)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestWAL_DecodeEntries_RoundTrip(t *testing.T) {
	es := []testEntry{
		testPut("a", "1"), testDel("b"), testPut("c", ""), testPut(strings.Repeat("k", 300), strings.Repeat("v", 70000)),
		testPut("a", "2"), testDel("a"),
	}
	payload := testRecord(1, es...)[recHeader:]
	n := 0
	for _, e := range es {
		n += entrySize(e.key, e.value)
	}
	require.Equal(t, n, len(payload), "entrySize must match what appendEntry writes")
	var got []testEntry
	require.NoError(t, decodeEntries(payload, func(k, v []byte) { got = append(got, testEntry{k, v}) }))
	require.Equal(t, es, got)
	require.NotNil(t, got[2].value, "an empty value must not decode as a delete")
	require.Nil(t, got[1].value)
}

// TestWAL_TornTail_IgnoredOnReplay abandons a Store, then writes damage
// where the next record would go in its current segment (as a crash in
// the middle of an append could leave it) and reopens a copy: everything
// acknowledged is there and nothing of the damage, new writes work, and
// they survive a second abandon. An intact record written there instead is
// replayed, which shows that the damage sits where replay looks.
func TestWAL_TornTail_IgnoredOnReplay(t *testing.T) {
	base := t.TempDir()
	opts := &Options{LogSize: 4 << 10}
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[string][]byte{}
	s := testOpen(t, base, opts)
	testWrites(t, s, model, rng, "base", 300)
	testStore(t, s, model, "victim", []byte("must survive"))
	require.NoError(t, Abandon(s))
	require.GreaterOrEqual(t, s.Stats().Checkpoints, uint64(2), "the log must have rotated")
	cur, off, next := s.cur, s.off, s.nextLSN
	require.Positive(t, off, "the current segment must hold records")
	segPath := segmentPaths(filepath.Join(base, "node.db"))[cur]
	run := readRun(t, segPath, 0)
	require.NotEmpty(t, run)
	require.Equal(t, next-1, run[len(run)-1].lsn, "the current segment's run must end with the last record")
	require.Equal(t, off, runSize(run), "the current segment's run must end where the next record goes")

	ghost := testRecord(next, testPut("ghost", "boo"), testDel("victim"))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	flip := func(i int) []byte {
		b := bytes.Clone(ghost)
		b[(i+len(b))%len(b)] ^= 0x20
		return b
	}
	huge := bytes.Clone(ghost)
	binary.LittleEndian.PutUint32(huge[4:], maxRecord)
	tests := []struct {
		name     string
		tail     []byte
		replayed bool // the tail is a valid next record
	}{
		{"intact record (control)", ghost, true},
		{"intact record then garbage (control)", append(bytes.Clone(ghost), garbage...), true},
		{"random garbage", garbage, false},
		{"torn header", ghost[:recHeader/2], false},
		{"header only", ghost[:recHeader], false},
		{"torn payload", ghost[:len(ghost)-1], false},
		{"flipped checksum byte", flip(0), false},
		{"flipped length byte", flip(4), false},
		{"flipped LSN byte", flip(8), false},
		{"flipped payload byte", flip(-1), false},
		{"record skipping an LSN", testRecord(next+1, testPut("ghost", "boo"), testDel("victim")), false},
		{"record repeating an LSN", testRecord(next-1, testPut("ghost", "boo"), testDel("victim")), false},
		{"length near maxRecord", huge, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyStore(t, base)
			f, err := os.OpenFile(segmentPaths(filepath.Join(dir, "node.db"))[cur], os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt(tc.tail, off)
			require.NoError(t, err)
			require.NoError(t, f.Close())

			want := cloneModel(model)
			if tc.replayed {
				want["ghost"] = []byte("boo")
				delete(want, "victim")
			}
			s := testOpen(t, dir, opts)
			requireModel(t, s, want, "ghost", "victim")
			require.Equal(t, uint64(1), s.Stats().Checkpoints, "Open must replay the log")

			// The Store goes on writing over the damaged segment, through
			// rotations, and a second crash loses nothing.
			testWrites(t, s, want, rand.New(rand.NewPCG(5, 6)), "after", 120)
			requireModel(t, s, want, "ghost", "victim")
			require.NoError(t, Abandon(s))
			s = testOpen(t, dir, opts)
			requireModel(t, s, want, "ghost", "victim")
		})
	}
}

// cloneModel returns a copy of m.
func cloneModel(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestWAL_Replay_SpansBothSegments rolls an abandoned Store's checkpoint
// LSN back to before the other segment's records, as a crash in the middle
// of a checkpoint leaves it (bbolt already holds some or all of those
// changes; the LSN is written last). Open must replay the older segment,
// then the current one, over what bbolt holds. It does so with the current
// segment being wal0 and being wal1, since replay must order them by LSN,
// not by name; and rolls back to the middle of the older segment as well,
// where replay must skip the records up to the LSN.
func TestWAL_Replay_SpansBothSegments(t *testing.T) {
	opts := &Options{LogSize: 2 << 10}
	covered := [2]bool{}
	for n := 80; !covered[0] || !covered[1]; n += 7 {
		require.Less(t, n, 400, "never ended with both segments current: covered %v", covered)
		base := t.TempDir()
		rng := rand.New(rand.NewPCG(uint64(n), 9))
		model := map[string][]byte{}
		s := testOpen(t, base, opts)
		testWrites(t, s, model, rng, "w", n)
		testStore(t, s, model, "last", []byte("write"))
		require.NoError(t, Abandon(s))
		if covered[s.cur] || s.Stats().Checkpoints < 2 {
			continue
		}
		covered[s.cur] = true
		paths := segmentPaths(filepath.Join(base, "node.db"))
		older := readRun(t, paths[s.cur^1], 0)
		current := readRun(t, paths[s.cur], 0)
		require.NotEmpty(t, older)
		require.NotEmpty(t, current)
		after := fileCheckpointLSN(t, filepath.Join(base, "node.db"))
		require.Equal(t, older[len(older)-1].lsn, after, "the older segment is checkpointed")
		require.Equal(t, after+1, current[0].lsn, "the current segment follows the older one")
		require.Equal(t, s.nextLSN-1, current[len(current)-1].lsn)

		for _, rollback := range []uint64{older[0].lsn - 1, older[len(older)/2].lsn} {
			t.Run(fmt.Sprintf("current=wal%d,from=%d", s.cur, rollback), func(t *testing.T) {
				dir := copyStore(t, base)
				path := filepath.Join(dir, "node.db")
				setCheckpointLSN(t, path, rollback)
				s2 := testOpen(t, dir, opts)
				require.Equal(t, uint64(1), s2.Stats().Checkpoints)
				requireModel(t, s2, model, "k000", "k050", "k099")
				require.Equal(t, s.nextLSN, s2.nextLSN, "replay must resume the LSNs")
				require.NoError(t, s2.Close())
				require.Equal(t, s.nextLSN-1, fileCheckpointLSN(t, path))
			})
		}
	}
}

// TestWAL_Open_LogGap_ErrCorrupt gives Open segments whose records do not
// follow on from the checkpoint without a gap: an acknowledged change is
// missing, which Open must report as storage.ErrCorrupt, without panicking,
// without changing bbolt, and without keeping the file locked.
func TestWAL_Open_LogGap_ErrCorrupt(t *testing.T) {
	r := func(lsn uint64) []byte { return testRecord(lsn, testPut(fmt.Sprintf("key%d", lsn), "v")) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name       string
		checkpoint uint64
		wal0, wal1 []byte
	}{
		{"missing LSN between segments", 0, cat(r(1), r(2)), r(4)},
		{"missing LSN between segments, wal1 first", 0, r(4), cat(r(1), r(2))},
		{"missing first record", 0, cat(r(2), r(3)), nil},
		{"missing first record in both", 0, r(3), r(2)},
		{"missing record after the checkpoint", 5, cat(r(3), r(4), r(5)), cat(r(7), r(8))},
		{"only a later record", 5, r(7), nil},
		{"segments overlap", 0, cat(r(1), r(2), r(3)), cat(r(2), r(3))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "node.db")
			makeDB(t, path, tc.checkpoint, map[string]string{"keep": "me"})
			writeSegments(t, dir, tc.wal0, tc.wal1)
			for range 2 { // the failed Open released the lock
				var s *Store
				var err error
				require.NotPanics(t, func() { s, err = Open(path, &Options{Timeout: 100 * time.Millisecond}) })
				require.ErrorIs(t, err, storage.ErrCorrupt)
				require.NotErrorIs(t, err, ErrLocked)
				require.ErrorContains(t, err, "gap")
				require.Nil(t, s)
			}
			require.Equal(t, tc.checkpoint, fileCheckpointLSN(t, path), "a failed Open must not checkpoint")
			db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
			require.NoError(t, err)
			require.NoError(t, db.View(func(tx *bbolt.Tx) error {
				var keys []string
				err := tx.Bucket(bucketName).ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
				require.Equal(t, []string{"keep"}, keys, "a failed Open must not write the log into bbolt")
				return err
			}))
			require.NoError(t, db.Close())
		})
	}
}

// TestWAL_Open_RecordsUpToCheckpoint_NotReapplied checks the control case
// of the gap test: records at or below the checkpoint LSN are skipped (bbolt
// has them, or newer values), the rest applied, whichever segment holds
// them.
func TestWAL_Open_RecordsUpToCheckpoint_NotReapplied(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.db")
	// bbolt holds the changes up to LSN 5: record 5 deleted "old" and set
	// "keep"; records 4 and 5 are still in the log.
	makeDB(t, path, 5, map[string]string{"keep": "bbolt"})
	writeSegments(t, dir,
		bytes.Join([][]byte{
			testRecord(4, testPut("old", "stale"), testPut("keep", "stale")),
			testRecord(5, testDel("old"), testPut("keep", "bbolt")),
			testRecord(6, testPut("new", "6"), testPut("empty", "")),
		}, nil),
		testRecord(7, testPut("new7", "7"), testDel("keep")))
	s := testOpen(t, dir, nil)
	requireModel(t, s, map[string][]byte{"new": []byte("6"), "new7": []byte("7"), "empty": {}}, "old", "keep")
	require.Equal(t, uint64(8), s.nextLSN)
	testStore(t, s, map[string][]byte{}, "after", []byte("v"))
	require.NoError(t, s.Close())
	require.Equal(t, uint64(8), fileCheckpointLSN(t, path))
}

// TestWAL_Open_UndecodableRecord_ErrCorrupt gives Open a record whose
// checksum holds but whose payload does not parse: storage.ErrCorrupt, no
// panic, and nothing of the log (not even the valid record before it)
// reaches bbolt.
func TestWAL_Open_UndecodableRecord_ErrCorrupt(t *testing.T) {
	good := testRecord(1, testPut("a", "1"))[recHeader:]
	tests := map[string][]byte{
		"unknown op":           {7, 1, 'k'},
		"key longer than rest": {opPut, 5, 'a'},
		"value past the end":   {opPut, 1, 'k', 9, 'v'},
		"no value length":      {opPut, 1, 'k'},
		"empty key":            {opDelete, 0},
		"bad key length":       {opPut, 0x80},
		"overlong length":      {opPut, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"good entry, then one": append(bytes.Clone(good), opDelete),
	}
	for name, payload := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "node.db")
			writeSegments(t, dir, append(testRecord(1, testPut("a", "1")), testRawRecord(2, payload)...), nil)
			var err error
			require.NotPanics(t, func() { _, err = Open(path, &Options{Timeout: 100 * time.Millisecond}) })
			require.ErrorIs(t, err, storage.ErrCorrupt)
			require.ErrorContains(t, err, "record 2")

			// Without the log, the file holds nothing: the valid record 1
			// was not checkpointed either.
			for _, p := range segmentPaths(path) {
				require.NoError(t, os.Remove(p))
			}
			s := testOpen(t, dir, nil)
			requireModel(t, s, map[string][]byte{}, "a")
		})
	}
}

// TestWAL_Checkpoint_LSNOnlyWithTheLastChunk replays a log of more than
// two checkpoint chunks' worth of changes whose last change bbolt refuses
// (a key over bbolt's limit, which Update never logs): the chunks before it
// commit, but the checkpoint LSN must not move until the last one does, or a
// reopen would skip records whose changes bbolt lacks.
func TestWAL_Checkpoint_LSNOnlyWithTheLastChunk(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.db")
	value := strings.Repeat("v", 64<<10)
	var good []byte
	model := map[string][]byte{}
	for i := range 2*ckptChunk/len(value) + 2 {
		k := fmt.Sprintf("a%04d", i)
		good = append(good, testRecord(uint64(i+1), testPut(k, value))...)
		model[k] = []byte(value)
	}
	last := uint64(len(model))
	bad := testRecord(last+1, testPut("z"+strings.Repeat("k", bbolt.MaxKeySize), "v"))
	writeSegments(t, dir, append(bytes.Clone(good), bad...), nil)
	var err error
	require.NotPanics(t, func() { _, err = Open(path, nil) })
	require.Error(t, err)
	require.Zero(t, fileCheckpointLSN(t, path), "a checkpoint that failed must not record its LSN")

	// Without the bad record the log replays in full.
	writeSegments(t, dir, good, nil)
	s := testOpen(t, dir, nil)
	requireModel(t, s, model)
	require.NoError(t, s.Close())
	require.Equal(t, last, fileCheckpointLSN(t, path))
}

// TestWAL_LogWriteFails_StoreFails makes a log write fail, by closing the
// current segment's file just before a batch is appended: that Update
// fails, every later one fails with ErrFailed without running its fn, reads
// still see everything acknowledged, Close returns, and a reopen has
// everything acknowledged and nothing of the failed write.
func TestWAL_LogWriteFails_StoreFails(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{LogSize: 4 << 10}
	s, err := Open(filepath.Join(dir, "node.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	breakNext := make(chan struct{}, 1)
	s.beforeCommit = func() error { // on the committer, which owns s.cur
		select {
		case <-breakNext:
			return s.logs[s.cur].Close()
		default:
			return nil
		}
	}
	model := map[string][]byte{}
	testWrites(t, s, model, rand.New(rand.NewPCG(7, 8)), "ok", 200)
	testStore(t, s, model, "k001", []byte("before the failure"))
	require.GreaterOrEqual(t, s.Stats().Checkpoints, uint64(2))
	updates := s.Stats().Updates

	breakNext <- struct{}{}
	err = s.Update([]byte("k001"), func([]byte) ([]byte, error) { return []byte("failed write"), nil })
	require.ErrorIs(t, err, os.ErrClosed)
	require.ErrorContains(t, err, "log write")
	for _, k := range []string{"k001", "k002", "new"} {
		called := false
		err := s.Update([]byte(k), func([]byte) ([]byte, error) { called = true; return []byte("after the failure"), nil })
		require.ErrorIs(t, err, ErrFailed)
		require.ErrorIs(t, err, os.ErrClosed, "ErrFailed must carry the first failure")
		require.False(t, called, "a failed Store must not run fns")
	}
	require.Equal(t, updates, s.Stats().Updates)
	requireModel(t, s, model, "new")

	// Close returns; closing the segment again may be reported.
	if err := s.Close(); err != nil {
		require.ErrorIs(t, err, os.ErrClosed)
	}
	s = testOpen(t, dir, opts)
	requireModel(t, s, model, "new")
	testStore(t, s, model, "new", []byte("works again"))
	requireModel(t, s, model)
}

// TestWAL_CheckpointFails_StoreFails removes the metadata bucket under a
// running Store, so that its first checkpoint fails: the Store fails (later
// Updates return ErrFailed), the changes of the failed checkpoint stay
// readable from memory, Close returns, and a reopen replays the whole log.
func TestWAL_CheckpointFails_StoreFails(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{LogSize: 4 << 10}
	s := testOpen(t, dir, opts)
	require.NoError(t, s.db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(metaBucket) }))

	model := map[string][]byte{}
	rng := rand.New(rand.NewPCG(9, 10))
	var failure error
	for i := 0; failure == nil; i++ {
		require.Less(t, i, 5000, "the failed checkpoint never failed the Store")
		key := fmt.Sprintf("k%03d", rng.IntN(100))
		value := fmt.Appendf(nil, "%s@%d|%s", key, i, strings.Repeat("x", rng.IntN(100)))
		failure = s.Update([]byte(key), func([]byte) ([]byte, error) { return value, nil })
		if failure == nil {
			model[key] = value
		}
	}
	require.ErrorIs(t, failure, ErrFailed)
	require.ErrorContains(t, failure, "checkpoint")
	require.ErrorIs(t, s.Update([]byte("k000"), func([]byte) ([]byte, error) { return []byte("no"), nil }), ErrFailed)
	require.Zero(t, s.Stats().Checkpoints)
	requireModel(t, s, model)
	require.NoError(t, s.Close())

	s = testOpen(t, dir, opts)
	require.Equal(t, uint64(1), s.Stats().Checkpoints, "Open must replay the log")
	requireModel(t, s, model)
}

// TestWAL_ThreeLayers_ActiveOverImmOverBolt holds changes in bbolt, in a
// frozen memtable (as during a checkpoint; here one that never runs) and in
// the active one, and checks that Get, ForEach (with every prefix) and the
// value an Update's fn is given all take each key from the newest layer
// that has it, deletes included; enough keys that ForEach merges the
// unsorted tails. Closing with a frozen table skips the final checkpoint,
// so the reopen must replay the log.
func TestWAL_ThreeLayers_ActiveOverImmOverBolt(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{LogSize: 64 << 20} // no rotation: this test freezes by hand
	model := map[string][]byte{}
	s := testOpen(t, dir, opts)
	var keys []string
	for i := range 400 {
		keys = append(keys, fmt.Sprintf("%c%03d", 'a'+i%4, i))
	}
	for i, k := range keys {
		testStore(t, s, model, k, []byte("bolt "+k))
		if i%5 == 0 {
			testStore(t, s, model, k+"/gone", []byte("bolt"))
		}
	}
	require.NoError(t, s.Close())
	s = testOpen(t, dir, opts)
	for i, k := range keys {
		switch i % 5 {
		case 1, 2:
			testStore(t, s, model, k, []byte("imm "+k))
		case 3:
			testStore(t, s, model, k, nil)
		case 0:
			testStore(t, s, model, k+"/gone", nil)
			testStore(t, s, model, k+"/imm", []byte{})
		}
	}
	s.memMu.Lock()
	s.imm, s.active = s.active, newMemtable()
	s.memMu.Unlock()
	for i, k := range keys {
		switch i % 7 {
		case 1, 4:
			testStore(t, s, model, k, []byte("active "+k))
		case 2:
			testStore(t, s, model, k, nil)
		case 3, 5:
			testStore(t, s, model, k+"/active", []byte("active"))
		}
	}
	s.memMu.RLock()
	require.Greater(t, len(s.imm.unsorted)+len(s.imm.sorted), mergeAfter)
	require.Greater(t, len(s.active.unsorted)+len(s.active.sorted), mergeAfter)
	s.memMu.RUnlock()

	check := func(s *Store) {
		t.Helper()
		requireModel(t, s, model, "a000/gone", "b001/gone", "nothing")
		for _, prefix := range []string{"", "a", "b0", "c01", "d399", "a000/", "e", "\xff"} {
			var got []string
			require.NoError(t, s.ForEach([]byte(prefix), func(k, _ []byte) error { got = append(got, string(k)); return nil }))
			var want []string
			for k := range model {
				if strings.HasPrefix(k, prefix) {
					want = append(want, k)
				}
			}
			slices.Sort(want)
			require.Equal(t, want, got, "ForEach(%q)", prefix)
		}
		errNo := errors.New("look only")
		for _, k := range append(slices.Clone(keys), "a000/gone", "a000/imm", "d003/active", "b005/active") {
			want, ok := model[k]
			err := s.Update([]byte(k), func(cur []byte) ([]byte, error) {
				if (cur != nil) != ok || !bytes.Equal(cur, want) {
					return nil, fmt.Errorf("fn of %q got %q, want %q (present: %t)", k, cur, want, ok)
				}
				return nil, errNo
			})
			require.ErrorIs(t, err, errNo)
		}
	}
	check(s)
	require.NoError(t, s.Close())
	s = testOpen(t, dir, opts)
	require.Equal(t, uint64(1), s.Stats().Checkpoints, "Open must replay the log")
	check(s)
}

// FuzzReadSegment feeds arbitrary bytes to readSegment and every record it
// returns to decodeEntries, and arbitrary payloads to decodeEntries: they
// must not panic, readSegment must return only a consecutive run after the
// given LSN that fits in the input, and what decodes must encode back to
// entries that decode the same.
func FuzzReadSegment(f *testing.F) {
	valid := bytes.Join([][]byte{
		testRecord(1, testPut("a", "1"), testDel("b"), testPut("c", "")),
		testRecord(2, testPut(strings.Repeat("k", 200), strings.Repeat("v", 300))),
		testRecord(3, testDel("a")),
	}, nil)
	f.Add(valid, uint64(0))
	f.Add(valid, uint64(2))
	f.Add(append(bytes.Clone(valid), make([]byte, 64)...), uint64(0))
	f.Add(append(bytes.Clone(valid), testRecord(1, testPut("stale", "x"))...), uint64(0))
	f.Add(valid[:len(valid)-3], uint64(1))
	f.Add(testRawRecord(1, []byte{7, 1, 'k'}), uint64(0))
	f.Add(testRawRecord(5, []byte{opPut, 1, 'k', 9, 'v'}), uint64(0))
	f.Add([]byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, after uint64) {
		recs, err := readSegment(bytes.NewReader(data), after)
		require.NoError(t, err, "a bytes.Reader fails only with EOF")
		var total int
		for i, r := range recs {
			require.Greater(t, r.lsn, after)
			if i > 0 {
				require.Equal(t, recs[i-1].lsn+1, r.lsn)
			}
			require.NotEmpty(t, r.payload)
			total += recHeader + len(r.payload)
			checkDecode(t, r.payload)
		}
		require.LessOrEqual(t, total, len(data))
		checkDecode(t, data)
	})
}

// checkDecode decodes payload; if it parses, its entries must encode to a
// payload that decodes to the same entries.
func checkDecode(t *testing.T, payload []byte) {
	var es []testEntry
	err := decodeEntries(payload, func(k, v []byte) {
		require.NotEmpty(t, k)
		es = append(es, testEntry{bytes.Clone(k), bytes.Clone(v)})
	})
	if err != nil {
		require.ErrorIs(t, err, errBadRecord)
		return
	}
	var again []byte
	for _, e := range es {
		again = appendEntry(again, e.key, e.value)
	}
	var es2 []testEntry
	require.NoError(t, decodeEntries(again, func(k, v []byte) { es2 = append(es2, testEntry{bytes.Clone(k), bytes.Clone(v)}) }))
	require.Equal(t, es, es2)
}
