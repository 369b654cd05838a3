// Damaged data directories, black-box, as a user would damage them: 1,000 acknowledged keys, then a flipped value byte in the database file, a truncated or flipped log, deleted logs, a torn tail; what Open, Get, ForEach, Update and DiscardCorrupt then do.
package bolt_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/bolt"
)

// integrityKeys is how many keys the tests acknowledge before the damage.
const integrityKeys = 1000

func integrityKey(i int) string { return fmt.Sprintf("key-%04d", i) }

// integrityValue is key i's value: unique, so that it can be found in the
// files.
func integrityValue(i int) []byte {
	return fmt.Appendf(nil, "value of %04d|%s", i, strings.Repeat(string(rune('a'+i%26)), 80))
}

// writeKeys acknowledges integrityKeys keys in dir/node.db and closes the
// Store: with a clean Close (everything checkpointed into bbolt) or
// abandoned as a crash leaves it (everything only in the log).
func writeKeys(t *testing.T, dir string, clean bool) {
	t.Helper()
	s := open(t, dir, nil)
	for i := range integrityKeys {
		set(t, s, integrityKey(i), string(integrityValue(i)))
	}
	if clean {
		require.NoError(t, s.Close())
	} else {
		require.NoError(t, bolt.Abandon(s))
	}
}

// flipAll flips a bit of the byte at offset at within every copy of
// needle in the file at path (bbolt may keep stale copies in free pages),
// and returns where the first copy is.
func flipAll(t *testing.T, path string, needle []byte, at int) int {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	first := bytes.Index(b, needle)
	require.GreaterOrEqual(t, first, 0, "%q not found in %s", needle, path)
	for i := first; i >= 0; {
		b[i+at] ^= 0x08
		j := bytes.Index(b[i+1:], needle)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return first
}

// wal0 is the first log segment of dir/node.db: where a new Store's records
// go until the log rotates (it does not here).
func wal0(dir string) string { return filepath.Join(dir, "node.db.wal0") }

// requireRefused checks that Open refuses dir/node.db with an error that
// matches storage.ErrCorrupt and names segment, and returns the error.
func requireRefused(t *testing.T, dir, segment string) error {
	t.Helper()
	s, err := bolt.Open(filepath.Join(dir, "node.db"), nil)
	if err == nil {
		n := 0
		for i := range integrityKeys {
			if v, _ := s.Get([]byte(integrityKey(i))); v == nil {
				n++
			}
		}
		_ = s.Close()
		t.Fatalf("Open accepted the damaged directory; %d of %d acknowledged keys are missing", n, integrityKeys)
	}
	require.ErrorIs(t, err, storage.ErrCorrupt)
	require.ErrorContains(t, err, segment)
	require.ErrorContains(t, err, "offset")
	return err
}

// TestIntegrity_FlippedValueByte_ErrCorruptForThatKey flips a byte of one
// stored value in the database file. Get of that key fails with a
// storage.CorruptError naming it (the damage is never served), and every
// other key reads as written; ForEach visits every other key and then
// reports the skipped one; Update refuses the key without calling its fn;
// Stats counts each detection; DiscardCorrupt deletes it, after which the
// key takes writes again.
func TestIntegrity_FlippedValueByte_ErrCorruptForThatKey(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, true)
	const victim = 500
	flipAll(t, filepath.Join(dir, "node.db"), integrityValue(victim), 20)

	s := open(t, dir, nil)
	got, err := s.Get([]byte(integrityKey(victim)))
	require.ErrorIs(t, err, storage.ErrCorrupt)
	require.Nil(t, got, "a damaged value must not be served")
	var ce *storage.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, [][]byte{[]byte(integrityKey(victim))}, ce.Keys)
	for _, i := range []int{0, victim - 1, victim + 1, integrityKeys - 1} {
		v, err := s.Get([]byte(integrityKey(i)))
		require.NoError(t, err)
		require.Equal(t, integrityValue(i), v)
	}

	n := 0
	err = s.ForEach(nil, func(k, v []byte) error {
		require.NotEqual(t, integrityKey(victim), string(k), "ForEach must skip the damaged key")
		require.Equal(t, string(integrityValue(n+btoi(n >= victim))), string(v))
		n++
		return nil
	})
	require.Equal(t, integrityKeys-1, n, "ForEach must visit every other key")
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 1, ce.Count)
	require.Equal(t, [][]byte{[]byte(integrityKey(victim))}, ce.Keys)
	errStop := errors.New("stop")
	require.ErrorIs(t, s.ForEach(nil, func(k, v []byte) error { return errStop }), errStop, "fn's error comes first")

	called := false
	err = s.Update([]byte(integrityKey(victim)), func(cur []byte) ([]byte, error) { called = true; return cur, nil })
	require.ErrorAs(t, err, &ce)
	require.False(t, called, "fn must never see damaged bytes")
	require.Equal(t, uint64(3), s.Stats().CorruptReads, "Get, ForEach, Update")

	discarded, err := s.DiscardCorrupt([]byte(integrityKey(victim + 1)))
	require.NoError(t, err)
	require.False(t, discarded, "an intact key is left alone")
	discarded, err = s.DiscardCorrupt([]byte(integrityKey(victim)))
	require.NoError(t, err)
	require.True(t, discarded)
	got, err = s.Get([]byte(integrityKey(victim)))
	require.NoError(t, err)
	require.Nil(t, got)
	set(t, s, integrityKey(victim), "repaired")
	require.NoError(t, s.Close())
	s = open(t, dir, nil)
	got, err = s.Get([]byte(integrityKey(victim)))
	require.NoError(t, err)
	require.Equal(t, "repaired", string(got))
	require.NoError(t, s.ForEach(nil, func(k, v []byte) error { return nil }))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestIntegrity_LogTruncatedToHalf cuts the log of a crashed Store (all
// 1,000 keys only in the log) to half its length: Open refuses it, naming
// the segment and the offset, instead of coming up without the keys past
// the cut.
func TestIntegrity_LogTruncatedToHalf(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, false)
	// Half of the records, wherever the zeros after them end.
	b, err := os.ReadFile(wal0(dir))
	require.NoError(t, err)
	end := bytes.Index(b, integrityValue(integrityKeys-1)) + len(integrityValue(integrityKeys-1))
	require.NoError(t, os.Truncate(wal0(dir), int64(end/2)))
	requireRefused(t, dir, wal0(dir))
}

// TestIntegrity_LogByteFlippedAtAQuarter flips one byte of the record of
// the 250th key: Open refuses the log (the records after it are intact,
// so this is damage, not a torn write), naming the segment and an offset
// at or before the flipped byte.
func TestIntegrity_LogByteFlippedAtAQuarter(t *testing.T) {
	// A record: 20-byte header, op, key length, key (8 bytes), value
	// length, value.
	for name, at := range map[string]int{"in a value": 30, "in a header": -20} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeKeys(t, dir, false)
			flipped := flipAll(t, wal0(dir), integrityValue(integrityKeys/4), at)
			err := requireRefused(t, dir, wal0(dir))
			var cle *bolt.CorruptLogError
			require.ErrorAs(t, err, &cle)
			require.LessOrEqual(t, cle.Offset, int64(flipped+at))
			require.Greater(t, cle.Offset, int64(flipped-200), "the damaged record is the 250th")
		})
	}
}

// TestIntegrity_FirstLogRecordDamaged damages the first record of the log.
func TestIntegrity_FirstLogRecordDamaged(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, false)
	flipAll(t, wal0(dir), integrityValue(0), 3)
	err := requireRefused(t, dir, wal0(dir))
	var cle *bolt.CorruptLogError
	require.ErrorAs(t, err, &cle)
	require.Zero(t, cle.Offset)
}

// TestIntegrity_LogFilesDeleted deletes both log segments, after a crash
// (the keys are only in the log) and after a clean Close (they are in the
// database file, but a directory that lost its log is not one to trust):
// Open refuses both.
func TestIntegrity_LogFilesDeleted(t *testing.T) {
	for _, clean := range []bool{false, true} {
		t.Run(fmt.Sprintf("clean=%t", clean), func(t *testing.T) {
			dir := t.TempDir()
			writeKeys(t, dir, clean)
			require.NoError(t, os.Remove(wal0(dir)))
			require.NoError(t, os.Remove(filepath.Join(dir, "node.db.wal1")))
			requireRefused(t, dir, wal0(dir))
		})
	}
}

// TestIntegrity_Salvage opens a log damaged at a quarter with
// Options.Salvage: the keys before the damage are there, the Store
// reports LostWrites, and goes on working.
func TestIntegrity_Salvage(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, false)
	flipAll(t, wal0(dir), integrityValue(integrityKeys/4), 30)
	s, err := bolt.Open(filepath.Join(dir, "node.db"), &bolt.Options{Salvage: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	var lossy storage.Lossy = s
	require.True(t, lossy.LostWrites())
	for i := range integrityKeys {
		v, err := s.Get([]byte(integrityKey(i)))
		require.NoError(t, err)
		if i < integrityKeys/4 {
			require.Equal(t, integrityValue(i), v)
		} else {
			require.Nil(t, v, "key %d was in the damaged record or after it", i)
		}
	}
	set(t, s, "after", "salvage")
	require.NoError(t, bolt.Abandon(s))
	s = open(t, dir, nil)
	require.True(t, s.LostWrites(), "until ClearLostWrites")
	v, err := s.Get([]byte("after"))
	require.NoError(t, err)
	require.Equal(t, "salvage", string(v))
}

// TestIntegrity_TornTail_OpensCleanly leaves the last write half on disk,
// as a crash in the middle of its append does: Open succeeds with every
// key acknowledged before it.
func TestIntegrity_TornTail_OpensCleanly(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	for i := range integrityKeys {
		set(t, s, integrityKey(i), string(integrityValue(i)))
	}
	before, err := os.ReadFile(wal0(dir))
	require.NoError(t, err)
	set(t, s, "torn", strings.Repeat("t", 3000))
	require.NoError(t, bolt.Abandon(s))
	after, err := os.ReadFile(wal0(dir))
	require.NoError(t, err)
	// The last record: from where the files differ to the end of its value.
	from := 0
	for from < len(before) && before[from] == after[from] {
		from++
	}
	to := bytes.Index(after, bytes.Repeat([]byte("t"), 3000)) + 3000
	require.Greater(t, to-from, 3000)
	require.Less(t, to-from, 3100)
	torn := append(bytes.Clone(after[:from+(to-from)/2]), before[from+(to-from)/2:]...)
	require.NoError(t, os.WriteFile(wal0(dir), torn, 0o600))

	s = open(t, dir, nil)
	require.False(t, s.LostWrites())
	for i := range integrityKeys {
		v, err := s.Get([]byte(integrityKey(i)))
		require.NoError(t, err)
		require.Equal(t, integrityValue(i), v)
	}
	v, err := s.Get([]byte("torn"))
	require.NoError(t, err)
	require.Nil(t, v)
}
