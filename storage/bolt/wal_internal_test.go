// Tests for the write-ahead log, white-box: the record format, torn tails, replay across both segments, undecodable records at Open, failures of the log and of checkpoints, and the three layers reads merge.
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

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/dynamo-kv/dynamo/storage"
)

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

// TestWAL_Record_Checksums checks the two checksums of a record: every
// header byte is covered by the header's, every payload byte by the
// payload's (and not by the header's, so a torn payload leaves a header
// that can be trusted), and both start from the seed.
func TestWAL_Record_Checksums(t *testing.T) {
	rec := testRecord(7, testPut("key", "value"))
	h, ok := parseHeader(rec, testSeed)
	require.True(t, ok)
	require.Equal(t, recordHeader{dataCRC: crc32c(testSeed, rec[recHeader:]), size: uint32(len(rec) - recHeader), lsn: 7}, h)
	_, ok = parseHeader(rec, testSeed+1)
	require.False(t, ok, "another log's seed")
	for i := range rec {
		b := bytes.Clone(rec)
		b[i] ^= 0x04
		h, ok := parseHeader(b, testSeed)
		if i < recHeader {
			require.False(t, ok, "flipped header byte %d", i)
			continue
		}
		require.True(t, ok, "flipped payload byte %d", i)
		require.NotEqual(t, h.dataCRC, crc32c(testSeed, b[recHeader:]), "flipped payload byte %d", i)
	}
	require.False(t, func() bool { _, ok := parseHeader(make([]byte, recHeader), 0); return ok }(), "zeros with seed 0")
}

// TestWAL_TornTail_IgnoredOnReplay abandons a Store, then writes a tail
// where the next record would go in its current segment, as a crash in the
// middle of an append could leave it, and reopens a copy. A torn record is
// ignored: everything acknowledged is there and nothing of the tail, new
// writes work, and they survive a second abandon. An intact next record is
// replayed (the control: the tail sits where replay looks). An intact
// record that cannot be the next one is damage, not a torn write.
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
	cur, off, next, seed := s.cur, s.off, s.nextLSN, s.seed
	require.Positive(t, off, "the current segment must hold records")
	pos := fileLogPos(t, filepath.Join(base, "node.db"))
	require.Equal(t, cur, pos.seg, "the log position names the current segment")
	segPath := segmentPaths(filepath.Join(base, "node.db"))[cur]
	run := readRun(t, segPath, seed, pos.lsn, pos.lsn+1)
	require.NotEmpty(t, run)
	require.Equal(t, next-1, run[len(run)-1].lsn, "the current segment's run must end with the last record")
	require.Equal(t, off, runSize(run), "the current segment's run must end where the next record goes")

	rec := func(lsn uint64) []byte { return testRecordSeed(seed, lsn, testPut("ghost", "boo"), testDel("victim")) }
	ghost := rec(next)
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
	binary.LittleEndian.PutUint32(huge[8:], 1<<20)
	binary.LittleEndian.PutUint32(huge[0:], crc32c(seed, huge[4:recHeader]))
	const (
		ignored = iota
		replayed
		corrupt
	)
	tests := []struct {
		name string
		tail []byte
		want int
	}{
		{"intact record (control)", ghost, replayed},
		{"intact record then garbage (control)", cat(ghost, garbage), replayed},
		{"random garbage", garbage, ignored},
		{"torn header", ghost[:recHeader/2], ignored},
		{"header only", ghost[:recHeader], ignored},
		{"torn payload", ghost[:len(ghost)-1], ignored},
		{"flipped header checksum byte", flip(0), ignored},
		{"flipped payload checksum byte", flip(4), ignored},
		{"flipped length byte", flip(8), ignored},
		{"flipped LSN byte", flip(12), ignored},
		{"flipped payload byte", flip(-1), ignored},
		{"record of another log", testRecordSeed(seed+1, next, testPut("ghost", "boo")), ignored},
		{"record skipping an LSN", rec(next + 1), corrupt},
		{"record repeating an LSN", rec(next - 1), corrupt},
		{"intact header, length past the end", huge, corrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyStore(t, base)
			f, err := os.OpenFile(segmentPaths(filepath.Join(dir, "node.db"))[cur], os.O_RDWR, 0)
			require.NoError(t, err)
			// The committer extends a segment before it writes a record there,
			// with room for a header after it.
			fi, err := f.Stat()
			require.NoError(t, err)
			if need := off + int64(len(ghost)) + recHeader; fi.Size() < need {
				require.NoError(t, f.Truncate(need))
			}
			_, err = f.WriteAt(tc.tail, off)
			require.NoError(t, err)
			require.NoError(t, f.Close())

			if tc.want == corrupt {
				err := openFails(t, dir, opts)
				var cle *CorruptLogError
				require.ErrorAs(t, err, &cle)
				require.ErrorIs(t, err, storage.ErrCorrupt)
				require.Equal(t, segmentPaths(filepath.Join(dir, "node.db"))[cur], cle.Path)
				require.Equal(t, off, cle.Offset)
				return
			}
			want := cloneModel(model)
			if tc.want == replayed {
				want["ghost"] = []byte("boo")
				delete(want, "victim")
			}
			s := testOpen(t, dir, opts)
			requireModel(t, s, want, "ghost", "victim")
			require.Equal(t, uint64(1), s.Stats().Checkpoints, "Open must replay the log")
			require.False(t, s.LostWrites())

			// No record, or one, then a close or a crash: the tail is still
			// there, past the new record, and must not pass for a later one.
			require.NoError(t, s.Close())
			s = testOpen(t, dir, opts)
			requireModel(t, s, want, "ghost", "victim")
			testStore(t, s, want, "one", []byte("record"))
			require.NoError(t, Abandon(s))
			s = testOpen(t, dir, opts)
			requireModel(t, s, want, "ghost", "victim")

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

// TestWAL_Replay_SpansBothSegments rolls an abandoned Store's log position
// back to the one before, as a crash in the middle of the last checkpoint
// leaves it (bbolt already holds some or all of those changes; the
// position is written last). Open must replay the older segment, then the
// current one, over what bbolt holds. It does so with the current segment
// being wal0 and being wal1, since the log position, not the name, says
// where the log starts.
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
		path := filepath.Join(base, "node.db")
		paths := segmentPaths(path)
		pos := fileLogPos(t, path)
		require.Equal(t, logPos{lsn: pos.lsn, seg: s.cur, seed: s.seed}, pos)
		current := readRun(t, paths[s.cur], s.seed, pos.lsn, pos.lsn+1)
		require.NotEmpty(t, current)
		require.Equal(t, s.nextLSN-1, current[len(current)-1].lsn)
		// The older segment's run ends where the current one starts.
		var older []logRecord
		for first := pos.lsn; first > 0 && len(older) == 0; first-- {
			if run := readRun(t, paths[s.cur^1], s.seed, first-1, first); len(run) > 0 && run[len(run)-1].lsn == pos.lsn {
				older = run
			}
		}
		require.NotEmpty(t, older, "the older segment holds the records before the current one")

		t.Run(fmt.Sprintf("current=wal%d", s.cur), func(t *testing.T) {
			dir := copyStore(t, base)
			path := filepath.Join(dir, "node.db")
			setLogPos(t, path, logPos{lsn: older[0].lsn - 1, seg: s.cur ^ 1, seed: s.seed})
			s2 := testOpen(t, dir, opts)
			require.Equal(t, uint64(1), s2.Stats().Checkpoints)
			requireModel(t, s2, model, "k000", "k050", "k099")
			require.Equal(t, s.nextLSN, s2.nextLSN, "replay must resume the LSNs")
			require.NoError(t, s2.Close())
			require.Equal(t, s.nextLSN-1, fileLogPos(t, path).lsn)
		})
		// A position in the middle of the older segment is not one the Store
		// writes: the run it names does not start at offset 0.
		t.Run(fmt.Sprintf("current=wal%d,middle", s.cur), func(t *testing.T) {
			dir := copyStore(t, base)
			setLogPos(t, filepath.Join(dir, "node.db"), logPos{lsn: older[len(older)/2].lsn, seg: s.cur ^ 1, seed: s.seed})
			require.ErrorIs(t, openFails(t, dir, opts), storage.ErrCorrupt)
		})
	}
}

// TestWAL_Open_StaleRecordsIgnored gives Open segments that hold, besides
// the records after the checkpoint, records of earlier rounds (at or below
// the checkpoint's LSN, after the run and in the other segment): they are
// not reapplied, the rest is, and the next record goes where the log
// position says.
func TestWAL_Open_StaleRecordsIgnored(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.db")
	// bbolt holds the changes up to record 5, which deleted "old" and set
	// "keep"; records 6 and 7 went to wal1, over an earlier round's.
	makeDB(t, path, logPos{lsn: 5, seg: 1}, map[string]string{"keep": "bbolt"})
	writeSegments(t, dir,
		cat(testRecord(4, testPut("old", "stale"), testPut("keep", "stale")),
			testRecord(5, testDel("old"), testPut("keep", "bbolt"))),
		cat(testRecord(6, testPut("new", "6"), testPut("empty", "")),
			testRecord(7, testPut("new7", "7"), testDel("keep")),
			testRecord(2, testPut("old", "stale")), testRecord(3, testPut("keep", "stale"))))
	s := testOpen(t, dir, nil)
	requireModel(t, s, map[string][]byte{"new": []byte("6"), "new7": []byte("7"), "empty": {}}, "old", "keep")
	require.Equal(t, uint64(8), s.nextLSN)
	require.Equal(t, 1, s.cur)
	testStore(t, s, map[string][]byte{}, "after", []byte("v"))
	require.NoError(t, s.Close())
	require.Equal(t, logPos{lsn: 8, seg: 1, seed: testSeed}, fileLogPos(t, path))
}

// TestWAL_Open_UndecodableRecord_ErrCorrupt gives Open a record whose
// checksums hold but whose payload does not parse: storage.ErrCorrupt, no
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
			makeDB(t, path, logPos{}, nil)
			writeSegments(t, dir, cat(testRecord(1, testPut("a", "1")), testRawRecord(2, payload)), nil)
			err := openFails(t, dir, nil)
			require.ErrorIs(t, err, storage.ErrCorrupt)
			require.ErrorContains(t, err, "record 2")
			require.Empty(t, fileKeys(t, path), "the valid record 1 was not checkpointed either")
			require.Equal(t, logPos{seed: testSeed}, fileLogPos(t, path))
		})
	}
}

// TestWAL_Checkpoint_PositionOnlyWithTheLastChunk replays a log of more
// than two checkpoint chunks' worth of changes whose last change bbolt
// refuses (a key over bbolt's limit, which Update never logs): the chunks
// before it commit, but the log position must not move until the last one
// does, or a reopen would skip records whose changes bbolt lacks.
func TestWAL_Checkpoint_PositionOnlyWithTheLastChunk(t *testing.T) {
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
	makeDB(t, path, logPos{}, nil)
	writeSegments(t, dir, cat(good, bad), nil)
	var err error
	require.NotPanics(t, func() { _, err = Open(path, nil) })
	require.Error(t, err)
	require.Zero(t, fileLogPos(t, path).lsn, "a checkpoint that failed must not record its position")

	// Without the bad record the log replays in full.
	writeSegments(t, dir, good, nil)
	s := testOpen(t, dir, nil)
	requireModel(t, s, model)
	require.NoError(t, s.Close())
	require.Equal(t, last, fileLogPos(t, path).lsn)
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
// readable from memory, Close returns, and a reopen fails too (bbolt lost
// its log position) rather than open a Store without them.
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

	// The log is there, but bbolt no longer says where it starts: the file
	// looks new, with a log that carried changes.
	require.ErrorIs(t, openFails(t, dir, opts), storage.ErrCorrupt)
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
