// Tests for reading the log at Open, white-box: hand-made segments that are intact, torn, damaged in the middle, truncated or missing, with and without Options.Salvage; and a fuzz target for the reader.
package bolt

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
)

// logCase is a log as Open may find it: a log position and the bytes of
// both segments, used as they are (no zeros are added after them).
type logCase struct {
	name       string
	pos        logPos
	wal0, wal1 []byte
	want       []uint64 // the LSNs replayed, when the log is intact
	// When the log is damaged: the segment and offset the error names, and
	// a piece of its detail.
	corrupt bool
	seg     int
	off     int64
	detail  string
}

func logCases() []logCase {
	pad := make([]byte, prepSize)
	flip := func(rec []byte, i int) []byte {
		b := bytes.Clone(rec)
		b[(i+len(b))%len(b)] ^= 0x10
		return b
	}
	n := func(parts ...[]byte) int64 { return int64(len(cat(parts...))) }
	r1, r2, r3, r4 := testRec(1), testRec(2), testRec(3), testRec(4)
	// A torn record whose header is damaged, over a value holding an intact
	// record of this log: only a byte-by-byte search finds the latter.
	forged := func(seed uint32) []byte {
		inner := testRecordSeed(seed, 99, testPut("forged", "x"))
		return flip(testRecord(3, testPut("value", string(inner))), 0)
	}
	return []logCase{
		{name: "empty", wal0: pad, wal1: pad},
		{name: "run in one segment", wal0: cat(r1, r2, r3, pad), wal1: pad, want: []uint64{1, 2, 3}},
		{name: "run on in the other segment", wal0: cat(r1, r2, pad), wal1: cat(r3, r4, pad), want: []uint64{1, 2, 3, 4}},
		{name: "log position names the other segment", pos: logPos{lsn: 2, seg: 1}, wal0: cat(r3, r4, pad), wal1: cat(r1, r2, pad),
			corrupt: true, seg: 1, off: 0, detail: "record 3 is at offset 0 of"},
		{name: "run from segment 1, on in segment 0", pos: logPos{lsn: 2, seg: 1}, wal0: cat(r4, pad), wal1: cat(r3, pad),
			want: []uint64{3, 4}},
		{name: "stale records after the run and in the other segment", pos: logPos{lsn: 2},
			wal0: cat(r3, r4, r1, r2, pad), wal1: cat(r1, r2, pad), want: []uint64{3, 4}},
		{name: "all records checkpointed", pos: logPos{lsn: 4}, wal0: cat(r3, r4, pad), wal1: cat(r1, r2, pad)},
		{name: "torn last record", wal0: cat(r1, r2, flip(r3, -1), pad), wal1: pad, want: []uint64{1, 2}},
		{name: "torn last header", wal0: cat(r1, r2, flip(r3, 2), pad), wal1: pad, want: []uint64{1, 2}},
		{name: "torn first record of the other segment", wal0: cat(r1, r2, pad), wal1: cat(flip(r3, -1), pad), want: []uint64{1, 2}},
		{name: "intact record of another log after the run",
			wal0: cat(r1, testRecordSeed(testSeed+1, 2, testPut("other", "log")), pad), wal1: pad, want: []uint64{1}},
		{name: "forged record in a torn value", wal0: cat(r1, r2, forged(testSeed+1), pad), wal1: pad, want: []uint64{1, 2}},

		{name: "flipped payload byte in the middle", wal0: cat(r1, flip(r2, -1), r3, pad), wal1: pad,
			corrupt: true, off: n(r1), detail: "record 3 is at offset"},
		{name: "flipped header byte of the first record", wal0: cat(flip(r1, 13), r2, r3, pad), wal1: pad,
			corrupt: true, off: 0, detail: "record 2 is at offset"},
		{name: "zeroed record in the middle", wal0: cat(r1, make([]byte, len(r2)), r3, pad), wal1: pad,
			corrupt: true, off: n(r1), detail: "end after record 1 (zeros)"},
		{name: "intact record far past zeros", wal0: cat(r1, r2, make([]byte, 3<<20), r3, pad), wal1: pad,
			corrupt: true, off: n(r1, r2), detail: "record 3 is at offset"},
		{name: "forged record with this log's seed", wal0: cat(r1, r2, forged(testSeed), pad), wal1: pad,
			corrupt: true, off: n(r1, r2), detail: "record 99 is at offset"},
		{name: "missing record", wal0: cat(r1, r3, pad), wal1: pad,
			corrupt: true, off: n(r1), detail: "record 3 is where record 2 is due"},
		{name: "first record missing", wal0: cat(r2, r3, pad), wal1: pad,
			corrupt: true, off: 0, detail: "record 2 is where record 1 is due"},
		{name: "repeated record", wal0: cat(r1, r2, r2, r3, pad), wal1: pad,
			corrupt: true, off: n(r1, r2), detail: "a record repeats"},
		{name: "gap between segments", wal0: cat(r1, r2, pad), wal1: cat(r4, pad),
			corrupt: true, off: n(r1, r2), detail: "record 4 is at offset 0 of"},
		{name: "last record of a full segment damaged", wal0: cat(r1, flip(r2, -1), pad), wal1: cat(r3, pad),
			corrupt: true, off: n(r1), detail: "record 3 is at offset 0 of"},
		{name: "gap in the other segment", wal0: cat(r1, pad), wal1: cat(r2, r4, pad),
			corrupt: true, seg: 1, off: n(r2), detail: "record 4 is where record 3 is due"},

		{name: "truncated inside a record", wal0: cat(r1, r2, r3[:len(r3)-5]), wal1: pad,
			corrupt: true, off: n(r1, r2), detail: "truncated: record 3 runs past the end"},
		{name: "truncated at a record's end", wal0: cat(r1, r2), wal1: pad,
			corrupt: true, off: n(r1, r2), detail: "truncated: the file ends"},
		{name: "truncated inside a header", wal0: cat(r1, r2[:recHeader-1]), wal1: pad,
			corrupt: true, off: n(r1), detail: "truncated"},
		{name: "empty segment", pos: logPos{lsn: 2}, wal0: nil, wal1: cat(r1, r2, pad),
			corrupt: true, off: 0, detail: "truncated"},
		{name: "truncated in the other segment", wal0: cat(r1, r2, pad), wal1: cat(r3),
			corrupt: true, seg: 1, off: n(r3), detail: "truncated"},
		{name: "full segment truncated at its end, log on in the other", wal0: cat(r1, r2), wal1: cat(r3, pad),
			want: []uint64{1, 2, 3}},
	}
}

// makeLog makes dir/node.db and its segments for tc.
func makeLog(t *testing.T, dir string, tc logCase) {
	t.Helper()
	makeDB(t, filepath.Join(dir, "node.db"), tc.pos, map[string]string{"keep": "me"})
	p := segmentPaths(filepath.Join(dir, "node.db"))
	require.NoError(t, os.WriteFile(p[0], tc.wal0, 0o600))
	require.NoError(t, os.WriteFile(p[1], tc.wal1, 0o600))
}

// readFiles returns the bytes of dir/node.db and its segments.
func readFiles(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, name := range []string{"node.db", "node.db.wal0", "node.db.wal1"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		out = append(out, b)
	}
	return out
}

// requireReplayed checks that s holds "keep" and the key of every record
// in lsns, and nothing else.
func requireReplayed(t *testing.T, s *Store, lsns []uint64) {
	t.Helper()
	model := map[string][]byte{"keep": []byte("me")}
	for _, l := range lsns {
		model[fmt.Sprintf("key%d", l)] = []byte("value")
	}
	requireModel(t, s, model, "key1", "key2", "key3", "key4", "forged")
}

// TestLogScan_Open runs Open on every logCase: an intact log (torn tail
// and stale records included) replays its run; a damaged one fails with a
// *CorruptLogError naming the segment and the offset where the intact log
// ends, and leaves every file as it was.
func TestLogScan_Open(t *testing.T) {
	for _, tc := range logCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			makeLog(t, dir, tc)
			if !tc.corrupt {
				s := testOpen(t, dir, nil)
				requireReplayed(t, s, tc.want)
				require.False(t, s.LostWrites())
				require.Equal(t, tc.pos.seg, s.cur, "the next record goes where the log position says")
				return
			}
			before := readFiles(t, dir)
			err := openFails(t, dir, nil)
			var cle *CorruptLogError
			require.ErrorAs(t, err, &cle)
			require.ErrorIs(t, err, storage.ErrCorrupt)
			require.Equal(t, segmentPaths(filepath.Join(dir, "node.db"))[tc.seg], cle.Path, "%v", err)
			require.Equal(t, tc.off, cle.Offset, "%v", err)
			require.Contains(t, cle.Detail, tc.detail)
			require.Contains(t, err.Error(), cle.Path)
			require.Contains(t, err.Error(), fmt.Sprintf("offset %d", tc.off))
			require.Equal(t, before, readFiles(t, dir), "a failed Open must change nothing")
		})
	}
}

// TestLogScan_Salvage opens every damaged logCase with Options.Salvage:
// the Store keeps the intact run before the damage, reports LostWrites
// (after a reopen without Salvage too) until ClearLostWrites, and takes
// new writes; after a crash, a plain Open replays them and finds no damage
// in what lay past the old damage (the new records took LSNs above it).
func TestLogScan_Salvage(t *testing.T) {
	for _, tc := range logCases() {
		if !tc.corrupt {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			makeLog(t, dir, tc)
			// What the run holds before the damage: the records from the
			// position on that the reader accepts.
			s, err := Open(filepath.Join(dir, "node.db"), &Options{Salvage: true})
			require.NoError(t, err)
			require.True(t, s.LostWrites())
			var kept []uint64
			for l := uint64(1); l <= 4; l++ {
				if v, err := s.Get(fmt.Appendf(nil, "key%d", l)); err == nil && v != nil {
					kept = append(kept, l)
				}
			}
			require.True(t, slices.IsSorted(kept))
			for i, l := range kept {
				require.Equal(t, tc.pos.lsn+uint64(i)+1, l, "only the run after the position: %v", kept)
			}
			requireReplayed(t, s, kept)
			for l := uint64(1); l <= 4; l++ {
				require.NoError(t, s.Update(fmt.Appendf(nil, "new%d", l), func([]byte) ([]byte, error) { return []byte("n"), nil }))
			}
			require.NoError(t, Abandon(s))

			s = testOpen(t, dir, nil)
			require.True(t, s.LostWrites(), "the loss is reported until cleared")
			for l := uint64(1); l <= 4; l++ {
				v, err := s.Get(fmt.Appendf(nil, "new%d", l))
				require.NoError(t, err)
				require.Equal(t, "n", string(v))
			}
			require.NoError(t, s.ClearLostWrites())
			require.False(t, s.LostWrites())
			require.NoError(t, s.Close())
			require.ErrorIs(t, s.ClearLostWrites(), storage.ErrClosed)
			s = testOpen(t, dir, nil)
			require.False(t, s.LostWrites())
		})
	}
}

// TestLogScan_MissingSegments deletes one or both segments of a Store
// that holds data: Open fails naming the missing file, and creates
// nothing; with Salvage it opens on what bbolt holds and reports
// LostWrites.
func TestLogScan_MissingSegments(t *testing.T) {
	for _, missing := range [][]int{{0}, {1}, {0, 1}} {
		t.Run(fmt.Sprint(missing), func(t *testing.T) {
			dir := t.TempDir()
			s := testOpen(t, dir, nil)
			model := map[string][]byte{}
			testStore(t, s, model, "in bbolt", []byte("v"))
			require.NoError(t, s.Close())
			s = testOpen(t, dir, nil)
			testStore(t, s, model, "in the log", []byte("v"))
			require.NoError(t, Abandon(s))
			paths := segmentPaths(filepath.Join(dir, "node.db"))
			for _, i := range missing {
				require.NoError(t, os.Remove(paths[i]))
			}
			err := openFails(t, dir, nil)
			var cle *CorruptLogError
			require.ErrorAs(t, err, &cle)
			require.Equal(t, paths[missing[0]], cle.Path)
			require.Contains(t, cle.Detail, "missing")
			for _, i := range missing {
				require.NoFileExists(t, paths[i], "a failed Open must not create the segment")
			}

			s, err = Open(filepath.Join(dir, "node.db"), &Options{Salvage: true})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			require.True(t, s.LostWrites())
			v, err := s.Get([]byte("in bbolt"))
			require.NoError(t, err)
			require.Equal(t, "v", string(v))
			testStore(t, s, model, "after", []byte("v"))
			require.NoError(t, s.Close())
			s = testOpen(t, dir, nil)
			require.True(t, s.LostWrites())
		})
	}
}

// TestLogScan_OrphanedLog puts an old log next to a new database file (as
// when the database file was lost): Open refuses it, since the log may
// hold acknowledged writes bbolt does not; Salvage starts a new log.
func TestLogScan_OrphanedLog(t *testing.T) {
	dir := t.TempDir()
	s := testOpen(t, dir, nil)
	testStore(t, s, map[string][]byte{}, "k", []byte("v"))
	require.NoError(t, Abandon(s))
	require.NoError(t, os.Remove(filepath.Join(dir, "node.db")))
	err := openFails(t, dir, nil)
	var cle *CorruptLogError
	require.ErrorAs(t, err, &cle)
	require.Contains(t, cle.Detail, "no record of the log")

	s, err = Open(filepath.Join(dir, "node.db"), &Options{Salvage: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.True(t, s.LostWrites())
	requireModel(t, s, map[string][]byte{}, "k")
}

// FuzzScanLog feeds arbitrary segments and log positions to scanLog. It
// must not panic, and what it returns must be a run of consecutive
// records from the position on that lies in the input, each of which
// decodes or fails cleanly; a damaged log comes with a *CorruptLogError.
// It also feeds the bytes to the reader of the first format.
func FuzzScanLog(f *testing.F) {
	valid := cat(
		testRecord(1, testPut("a", "1"), testDel("b"), testPut("c", "")),
		testRecord(2, testPut(strings.Repeat("k", 200), strings.Repeat("v", 300))),
		testRecord(3, testDel("a")),
	)
	f.Add(valid, []byte{}, uint64(0), false)
	f.Add(valid, testRecord(4, testPut("d", "4")), uint64(0), false)
	f.Add(cat(valid, make([]byte, 64)), []byte{}, uint64(2), false)
	f.Add(valid[:len(valid)-3], []byte{}, uint64(1), true)
	f.Add(cat(testRecord(1, testPut("a", "1")), testRecord(3, testPut("c", "3"))), []byte{}, uint64(0), false)
	f.Add(testRawRecord(1, []byte{7, 1, 'k'}), []byte{}, uint64(0), true)
	f.Add([]byte{}, []byte{}, uint64(0), false)
	f.Fuzz(func(t *testing.T, wal0, wal1 []byte, c uint64, seg1 bool) {
		pos := logPos{lsn: c, seed: testSeed}
		if seg1 {
			pos.seg = 1
		}
		var segs [2]*segReader
		for i, b := range [][]byte{wal0, wal1} {
			segs[i] = &segReader{f: memFile{bytes.NewReader(b)}, path: fmt.Sprint("wal", i), size: int64(len(b)), seed: testSeed}
		}
		ls, err := scanLog(segs, pos)
		if err != nil {
			var cle *CorruptLogError
			require.ErrorAs(t, err, &cle)
			require.LessOrEqual(t, cle.Offset, int64(max(len(wal0), len(wal1))))
		}
		total := 0
		for i, r := range ls.recs {
			require.Equal(t, c+uint64(i)+1, r.lsn)
			require.NotEmpty(t, r.payload)
			total += recHeader + len(r.payload)
			checkDecode(t, r.payload)
		}
		require.LessOrEqual(t, total, len(wal0)+len(wal1))
		require.GreaterOrEqual(t, ls.top, c)

		recs, err := readSegmentV1(bytes.NewReader(wal0), c)
		require.NoError(t, err, "a bytes.Reader fails only with EOF")
		for i, r := range recs {
			require.Greater(t, r.lsn, c)
			if i > 0 {
				require.Equal(t, recs[i-1].lsn+1, r.lsn)
			}
			checkDecode(t, r.payload)
		}
		checkDecode(t, wal1)
	})
}

// memFile is a read-only file over bytes.
type memFile struct{ *bytes.Reader }

func (memFile) WriteAt([]byte, int64) (int, error) { return 0, os.ErrPermission }
func (memFile) Datasync() error                    { return nil }
func (memFile) Truncate(int64) error               { return os.ErrPermission }
func (f memFile) Size() (int64, error)             { return f.Reader.Size(), nil }
func (memFile) Name() string                       { return "mem" }
func (memFile) Close() error                       { return nil }

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
