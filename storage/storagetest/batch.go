// batch.go: the conformance checks of many keys in one call: UpdateBatch
// and DeletePrefix, native (storage.Batcher, storage.PrefixDeleter) or
// through their fallbacks (DESIGN §4).
package storagetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
)

func testBatchInOrder(t *testing.T, s storage.Storage) {
	put(t, s, "gone", "x")
	put(t, s, "kept", "old")
	set := func(v string) func([]byte) ([]byte, error) {
		return func([]byte) ([]byte, error) { return []byte(v), nil }
	}
	ops := []storage.Op{
		{Key: []byte("c"), Fn: increment},
		{Key: []byte("new"), Fn: set("v")},
		{Key: []byte("c"), Fn: increment}, // sees the first increment
		{Key: []byte("gone"), Fn: func([]byte) ([]byte, error) { return nil, nil }},
		{Key: []byte("kept"), Fn: func([]byte) ([]byte, error) { return nil, errStop }},
		{Key: nil, Fn: set("never")},
		{Key: []byte("empty"), Fn: set("")},
	}
	errs := storage.UpdateBatch(s, ops)
	require.Len(t, errs, len(ops))
	for i, err := range errs {
		switch i {
		case 4:
			require.ErrorIs(t, err, errStop, "a failing Fn fails its own Op")
		case 5:
			require.ErrorIs(t, err, storage.ErrEmptyKey)
		default:
			require.NoError(t, err, "op %d", i)
		}
	}
	require.Equal(t, uint64(2), counter(t, s, "c"), "Ops of one key apply in order")
	v, ok := get(t, s, "new")
	require.True(t, ok)
	require.Equal(t, "v", v)
	_, ok = get(t, s, "gone")
	require.False(t, ok, "a nil result deletes")
	v, _ = get(t, s, "kept")
	require.Equal(t, "old", v, "a failed Op changes nothing")
	v, ok = get(t, s, "empty")
	require.True(t, ok, "an empty result stores an empty value")
	require.Empty(t, v)
	require.Empty(t, storage.UpdateBatch(s, nil), "an empty batch")
}

func testDeletePrefix(t *testing.T, s storage.Storage) {
	for _, k := range []string{"a", "p", "p\x00", "p1", "p1/x", "p2", "q"} {
		put(t, s, k, "v"+k)
	}
	n, err := storage.DeletePrefix(s, []byte("p1"))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, []pair{{"a", "va"}, {"p", "vp"}, {"p\x00", "vp\x00"}, {"p2", "vp2"}, {"q", "vq"}}, collect(t, s, ""))

	n, err = storage.DeletePrefix(s, []byte("p"))
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, []pair{{"a", "va"}, {"q", "vq"}}, collect(t, s, ""))

	n, err = storage.DeletePrefix(s, []byte("zzz"))
	require.NoError(t, err)
	require.Zero(t, n, "nothing under the prefix")

	_, err = storage.DeletePrefix(s, nil)
	require.ErrorIs(t, err, storage.ErrEmptyKey, "an empty prefix would delete everything")
	require.Len(t, collect(t, s, ""), 2)

	put(t, s, "p3", "again")
	v, ok := get(t, s, "p3")
	require.True(t, ok, "a deleted range takes writes again")
	require.Equal(t, "again", v)
}

func testBatchClosed(t *testing.T, s storage.Storage) {
	put(t, s, "k", "v")
	require.NoError(t, s.Close())
	errs := storage.UpdateBatch(s, []storage.Op{{Key: []byte("k"), Fn: func([]byte) ([]byte, error) {
		t.Error("fn called after Close")
		return nil, nil
	}}})
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], storage.ErrClosed)
	_, err := storage.DeletePrefix(s, []byte("k"))
	require.ErrorIs(t, err, storage.ErrClosed)
}
