// Tests for files of the earlier format, white-box: the first log format's reader, and the upgrade at Open (replay, value checksums, a new log), interrupted at each step.
package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/dynamo-kv/dynamo/storage"
)

// testRecordV1 returns a record of the first format of lsn holding es.
func testRecordV1(lsn uint64, es ...testEntry) []byte {
	rec := make([]byte, recHeaderV1)
	for _, e := range es {
		rec = appendEntry(rec, e.key, e.value)
	}
	binary.LittleEndian.PutUint32(rec[4:], uint32(len(rec)-recHeaderV1))
	binary.LittleEndian.PutUint64(rec[8:], lsn)
	binary.LittleEndian.PutUint32(rec[0:], crc32.Checksum(rec[8:], castagnoli))
	return rec
}

func testRecV1(lsn uint64) []byte {
	return testRecordV1(lsn, testPut(fmt.Sprintf("key%d", lsn), "value"))
}

func TestLegacy_ReadSegmentV1_RunOfConsecutiveValidRecords(t *testing.T) {
	r := testRecV1
	torn := r(4)
	flipped := r(4)
	flipped[len(flipped)-1] ^= 1
	zeroHeader := make([]byte, recHeaderV1)
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
		{"torn header", cat(r(1), r(2), r(3), torn[:recHeaderV1-1]), 0, []uint64{1, 2, 3}},
		{"torn payload", cat(r(1), r(2), r(3), torn[:len(torn)-1]), 0, []uint64{1, 2, 3}},
		{"bad checksum ends it", cat(r(1), r(2), r(3), flipped, r(5)), 0, []uint64{1, 2, 3}},
		{"length over maxRecord", cat(r(1), r(2), r(3), huge), 0, []uint64{1, 2, 3}},
		{"LSN 0", cat(testRecordV1(0, testPut("k", "v")), r(1)), 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := readSegmentV1(bytes.NewReader(tc.seg), tc.after)
			require.NoError(t, err)
			var got []uint64
			for _, rec := range recs {
				got = append(got, rec.lsn)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// makeLegacy makes dir/node.db as the earlier version left it: bare
// values, the checkpoint's LSN (none when lsn is 0), and segments in the
// first format.
func makeLegacy(t *testing.T, dir string, lsn uint64, data map[string]string, wal0, wal1 []byte) {
	t.Helper()
	path := filepath.Join(dir, "node.db")
	makeFile(t, path, data, func(_, v []byte) []byte { return v }, func(mb *bbolt.Bucket) error {
		if lsn == 0 {
			return nil
		}
		return mb.Put(legacyLSNKey, binary.BigEndian.AppendUint64(nil, lsn))
	})
	p := segmentPaths(path)
	require.NoError(t, os.WriteFile(p[0], wal0, 0o600))
	require.NoError(t, os.WriteFile(p[1], wal1, 0o600))
}

// legacyCase is a file of the earlier version with 300 bare values in
// bbolt and records 5 to 8 in its log (after checkpoint 4), and what a
// Store must then hold.
func legacyCase(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	data := map[string]string{}
	model := map[string][]byte{}
	for i := range 300 {
		k, v := fmt.Sprintf("old%03d", i), fmt.Sprintf("bare value %d", i)
		data[k], model[k] = v, []byte(v)
	}
	data["gone"] = "deleted by record 6"
	data["empty"] = ""
	model["empty"] = []byte{}
	makeLegacy(t, dir, 4, data,
		cat(testRecV1(3), testRecV1(4), testRecordV1(5, testPut("old000", "new"), testPut("k5", "5")),
			testRecordV1(6, testDel("gone"))),
		cat(testRecordV1(7, testPut("k7", "7")), testRecordV1(8, testPut("k8", ""))))
	model["old000"] = []byte("new")
	model["k5"], model["k7"], model["k8"] = []byte("5"), []byte("7"), []byte{}
	return model
}

// TestLegacy_Upgrade opens a file of the earlier version: the log's
// records after the checkpoint are replayed, every value gets its
// checksum, the log starts over in the current format, and the Store then
// works, crash and replay included.
func TestLegacy_Upgrade(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.db")
	model := legacyCase(t, dir)
	s := testOpen(t, dir, nil)
	require.False(t, s.LostWrites())
	requireModel(t, s, model, "gone", "key3", "key4")
	testStore(t, s, model, "after", []byte("upgrade"))
	require.NoError(t, Abandon(s))

	pos := fileLogPos(t, path)
	require.Equal(t, 0, pos.seg)
	require.Equal(t, uint64(8), pos.lsn)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		require.Nil(t, tx.Bucket(metaBucket).Get(legacyLSNKey))
		return tx.Bucket(bucketName).ForEach(func(k, v []byte) error {
			got, err := openValue(k, v)
			require.NoError(t, err, "key %q must be checksummed", k)
			require.Equal(t, model[string(k)], got)
			return nil
		})
	}))
	require.NoError(t, db.Close())

	s = testOpen(t, dir, nil)
	requireModel(t, s, model, "gone")
}

// TestLegacy_Upgrade_Interrupted fails the upgrade at each step it
// reaches in turn; a plain Open then finishes it, with every value
// checksummed exactly once.
func TestLegacy_Upgrade_Interrupted(t *testing.T) {
	errStep := errors.New("injected")
	for _, st := range []step{stepChunkBegin, stepChunkCommit, stepCheckpointDone, stepRecoverPrepare, stepRecoverRead} {
		t.Run(st.String(), func(t *testing.T) {
			dir := t.TempDir()
			model := legacyCase(t, dir)
			_, err := Open(filepath.Join(dir, "node.db"), &Options{hook: func(s step) error {
				if s == st {
					return errStep
				}
				return nil
			}})
			require.ErrorIs(t, err, errStep)
			s := testOpen(t, dir, nil)
			requireModel(t, s, model, "gone")
			require.NoError(t, s.Close())
			s = testOpen(t, dir, nil)
			requireModel(t, s, model, "gone")
		})
	}
}

// TestLegacy_Damage: a gap between the segments of a log of the first
// format (the first format cannot tell one inside a segment), or its segments
// gone while bbolt has a checkpoint, fails Open with a *CorruptLogError;
// Salvage opens it and reports LostWrites.
func TestLegacy_Damage(t *testing.T) {
	for name, make := range map[string]func(dir string){
		"gap": func(dir string) {
			makeLegacy(t, dir, 4, map[string]string{"a": "1"}, cat(testRecV1(5), testRecV1(6)), testRecV1(8))
		},
		"missing segments": func(dir string) {
			makeLegacy(t, dir, 4, map[string]string{"a": "1"}, nil, nil)
			for _, p := range segmentPaths(filepath.Join(dir, "node.db")) {
				require.NoError(t, os.Remove(p))
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			make(dir)
			err := openFails(t, dir, nil)
			var cle *CorruptLogError
			require.ErrorAs(t, err, &cle)
			require.ErrorIs(t, err, storage.ErrCorrupt)
			s, err := Open(filepath.Join(dir, "node.db"), &Options{Salvage: true})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			require.True(t, s.LostWrites())
			v, err := s.Get([]byte("a"))
			require.NoError(t, err)
			require.Equal(t, "1", string(v))
		})
	}
}
