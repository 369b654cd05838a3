// RunDamaged checks what a storage.Storage that checksums its values does with one that fails its check (DESIGN §4).
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
)

// RunDamaged checks, for a disk-backed Storage that checksums its values,
// the storage.Storage rules for a damaged value: Get and Update of that key
// fail with a *storage.CorruptError naming it (Update without calling fn),
// every other key reads as written, ForEach visits every other key and then
// reports the damaged one (unless fn stops it first), and, when the Storage
// is a storage.Discarder, DiscardCorrupt deletes the damaged key, durably,
// and leaves intact ones alone.
//
// open is as for RunDurable. damage is called while no Storage is open on
// dir and must damage the stored value of key (which is value) so that it
// fails its check, e.g. by flipping a byte of it in the file.
func RunDamaged(t *testing.T, open func(t *testing.T, dir string) storage.Storage, damage func(t *testing.T, dir string, key, value []byte)) {
	t.Helper()
	dir := t.TempDir()
	key := func(i int) []byte { return fmt.Appendf(nil, "damaged/%03d", i) }
	value := func(i int) []byte { return fmt.Appendf(nil, "value %03d %s", i, bytes.Repeat([]byte{'v'}, 40)) }
	const n, victim = 50, 20
	s := open(t, dir)
	for i := range n {
		v := value(i)
		require.NoError(t, s.Update(key(i), func([]byte) ([]byte, error) { return v, nil }))
	}
	require.NoError(t, s.Close())
	damage(t, dir, key(victim), value(victim))
	s = open(t, dir)
	defer func() { _ = s.Close() }()

	requireNames := func(err error) {
		t.Helper()
		require.ErrorIs(t, err, storage.ErrCorrupt)
		var ce *storage.CorruptError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, 1, ce.Count)
		require.Equal(t, [][]byte{key(victim)}, ce.Keys)
	}
	got, err := s.Get(key(victim))
	requireNames(err)
	require.Nil(t, got, "a damaged value must not be served")
	for _, i := range []int{0, victim - 1, victim + 1, n - 1} {
		got, err := s.Get(key(i))
		require.NoError(t, err)
		require.Equal(t, value(i), got)
	}

	var seen []int
	err = s.ForEach([]byte("damaged/"), func(k, v []byte) error {
		var i int
		if _, err := fmt.Sscanf(string(k), "damaged/%03d", &i); err != nil {
			return err
		}
		if !bytes.Equal(value(i), v) {
			return fmt.Errorf("ForEach: %q = %q", k, v)
		}
		seen = append(seen, i)
		return nil
	})
	requireNames(err)
	require.Len(t, seen, n-1, "ForEach must visit every other key")
	require.NotContains(t, seen, victim)
	require.NoError(t, s.ForEach([]byte("damaged/00"), func(k, v []byte) error { return nil }),
		"a walk that does not reach the damaged key reports nothing")
	require.ErrorIs(t, s.ForEach(nil, func(k, v []byte) error { return errStop }), errStop)

	called := false
	requireNames(s.Update(key(victim), func(cur []byte) ([]byte, error) { called = true; return cur, nil }))
	require.False(t, called, "fn must never see damaged bytes")

	d, ok := s.(storage.Discarder)
	if !ok {
		return
	}
	discarded, err := d.DiscardCorrupt(key(victim + 1))
	require.NoError(t, err)
	require.False(t, discarded, "an intact key is left alone")
	discarded, err = d.DiscardCorrupt([]byte("damaged/absent"))
	require.NoError(t, err)
	require.False(t, discarded, "an absent key is left alone")
	discarded, err = d.DiscardCorrupt(key(victim))
	require.NoError(t, err)
	require.True(t, discarded)
	got, err = s.Get(key(victim))
	require.NoError(t, err)
	require.Nil(t, got)
	require.NoError(t, s.ForEach(nil, func(k, v []byte) error { return nil }))
	require.NoError(t, s.Close())

	s = open(t, dir)
	got, err = s.Get(key(victim))
	require.NoError(t, err)
	require.Nil(t, got, "the discard is durable")
	require.NoError(t, s.Update(key(victim), func(cur []byte) ([]byte, error) {
		if cur != nil {
			return nil, errors.New("the discarded key must be absent")
		}
		return value(victim), nil
	}))
	got, err = s.Get(key(victim))
	require.NoError(t, err)
	require.Equal(t, value(victim), got)
}
