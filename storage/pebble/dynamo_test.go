package pebble_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/storage/pebble"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// node starts a one-node Store on a Pebble database in dir, over TCP on
// loopback.
func node(t *testing.T, dir string) (*dynamo.Store, *pebble.Store, func()) {
	t.Helper()
	st, err := pebble.Open(dir, &pebble.Options{CacheSize: 8 << 20, MemTableSize: 4 << 20})
	require.NoError(t, err)
	tr, err := tcp.Listen("127.0.0.1:0", tcp.Options{})
	require.NoError(t, err)
	cfg := dynamo.DefaultConfig()
	cfg.NodeID = "n1"
	cfg.N, cfg.R, cfg.W = 1, 1, 1
	cfg.Transport, cfg.Storage = tr, st
	cfg.Members = []dynamo.Member{{ID: "n1", Addr: tr.Addr()}}
	s, err := dynamo.New(cfg)
	require.NoError(t, err)
	return s, st, func() {
		require.NoError(t, s.Close())
		require.NoError(t, tr.Close())
		require.NoError(t, st.Close())
	}
}

// TestStore_OnPebble: a dynamo node keeps its data and its partition
// hashes in Pebble: after a restart it reads the hashes without a scan,
// they equal the data, and every value reads back.
func TestStore_OnPebble(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _, stop := node(t, dir)
	const keys = 300
	for i := range keys {
		require.NoError(t, s.Put(ctx, fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "v%d", i), dynamo.CausalContext{}))
	}
	vals, cctx, err := s.Get(ctx, []byte("k7"))
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, []byte("k7"), []byte("v7b"), cctx), "overwrite with the context read: %v", vals)
	stop()

	s, st, stop := node(t, dir)
	defer stop()
	require.NoError(t, s.WaitReady(ctx))
	require.Zero(t, st.Stats().SumScans, "the hashes are read from Pebble, not rebuilt by a scan")
	require.NoError(t, s.VerifyHashes(ctx))
	for i := range keys {
		vals, _, err := s.Get(ctx, fmt.Appendf(nil, "k%d", i))
		require.NoError(t, err)
		want := fmt.Sprintf("v%d", i)
		if i == 7 {
			want = "v7b"
		}
		require.Len(t, vals, 1)
		require.Equal(t, want, string(vals[0].Value))
	}
}
