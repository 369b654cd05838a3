// Tests of many keys in one commit: UpdateBatch and DeletePrefix take one
// log record and one fdatasync, survive a reopen, and see the memtables,
// a checkpointed table and bbolt alike.
package bolt_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/bolt"
)

func TestBolt_UpdateBatch_OneCommit(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	var ops []storage.Op
	for i := range 500 {
		v := []byte(fmt.Sprint(i))
		ops = append(ops, storage.Op{Key: []byte(fmt.Sprintf("k%03d", i)), Fn: func([]byte) ([]byte, error) { return v, nil }})
	}
	before := s.Stats().Commits
	for i, err := range s.UpdateBatch(ops) {
		require.NoError(t, err, "op %d", i)
	}
	require.Equal(t, before+1, s.Stats().Commits, "500 keys, one log append and fdatasync")

	require.NoError(t, s.Close())
	s = open(t, dir, nil)
	v, err := s.Get([]byte("k499"))
	require.NoError(t, err)
	require.Equal(t, "499", string(v), "the batch is durable")
}

func TestBolt_DeletePrefix_OneCommit_AllLayers(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, &bolt.Options{LogSize: 1 << 20})
	// Old keys checkpointed into bbolt by a reopen, newer ones in the
	// memtable, one deleted there already, and keys beside the prefix.
	for i := range 40 {
		set(t, s, fmt.Sprintf("p/%02d", i), "old")
	}
	require.NoError(t, s.Close())
	s = open(t, dir, &bolt.Options{LogSize: 1 << 20})
	for i := 30; i < 60; i++ {
		set(t, s, fmt.Sprintf("p/%02d", i), "new")
	}
	require.NoError(t, s.Update([]byte("p/00"), func([]byte) ([]byte, error) { return nil, nil }))
	set(t, s, "p", "beside")
	set(t, s, "q/00", "beside")

	before := s.Stats().Commits
	n, err := s.DeletePrefix([]byte("p/"))
	require.NoError(t, err)
	require.Equal(t, 59, n, "60 keys written, one deleted before")
	require.Equal(t, before+1, s.Stats().Commits)

	check := func(s *bolt.Store) {
		var keys []string
		require.NoError(t, s.ForEach(nil, func(k, _ []byte) error { keys = append(keys, string(k)); return nil }))
		require.Equal(t, []string{"p", "q/00"}, keys)
	}
	check(s)
	require.NoError(t, s.Close())
	s = open(t, dir, &bolt.Options{LogSize: 1 << 20})
	check(s)
}
