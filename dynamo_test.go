// dynamo_test.go: black-box behaviour of Store on an in-process cluster: bad
// input, forwarding, incarnations, resolvers and options.
package dynamo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

func TestStore_BadInput_ClearErrors(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Limits = Limits{MaxKeySize: 8, MaxValueSize: 16, MaxSiblings: 2, MaxContextSize: 64}
	})
	s := c.stores[0]
	ctx := context.Background()
	other := newTestCluster(t, 3, func(cfg *Config) { cfg.Cluster = "other" })
	put(t, other.stores[0], "k", "v", Context{})
	_, foreign := get(t, other.stores[0], "k")

	cases := map[string]struct {
		run  func() error
		want error
	}{
		"empty key get":     {func() error { _, _, err := s.Get(ctx, nil); return err }, ErrEmptyKey},
		"empty key put":     {func() error { return s.Put(ctx, []byte{}, []byte("v"), Context{}) }, ErrEmptyKey},
		"empty key delete":  {func() error { return s.Delete(ctx, nil, Context{}) }, ErrEmptyKey},
		"oversized key":     {func() error { return s.Put(ctx, []byte("123456789"), []byte("v"), Context{}) }, ErrKeyTooLarge},
		"oversized key get": {func() error { _, _, err := s.Get(ctx, []byte("123456789")); return err }, ErrKeyTooLarge},
		"oversized value":   {func() error { return s.Put(ctx, []byte("k"), bytes.Repeat([]byte("x"), 17), Context{}) }, ErrValueTooLarge},
		"foreign context":   {func() error { return s.Put(ctx, []byte("k"), []byte("v"), foreign) }, ErrBadContext},
		"R above N":         {func() error { _, _, err := s.Get(ctx, []byte("k"), WithR(4)); return err }, ErrBadOption},
		"W of zero":         {func() error { return s.Put(ctx, []byte("k"), []byte("v"), Context{}, WithW(0)) }, ErrBadOption},
		"negative timeout":  {func() error { return s.Put(ctx, []byte("k"), []byte("v"), Context{}, WithTimeout(-1)) }, ErrBadOption},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, tc.run(), tc.want)
		})
	}

	t.Run("too many siblings", func(t *testing.T) {
		put(t, s, "sib", "a", Context{})
		put(t, s, "sib", "b", Context{})
		err := s.Put(ctx, []byte("sib"), []byte("c"), Context{})
		require.ErrorIs(t, err, ErrTooManySiblings)
		vals, cx := get(t, s, "sib", WithR(3))
		require.Equal(t, []string{"a", "b"}, vals, "the refused write changed nothing")
		put(t, s, "sib", "merged", cx) // resolving with the context is allowed
	})
	t.Run("malformed context text", func(t *testing.T) {
		for _, text := range []string{"!!!", "AAAA", strings.Repeat("A", MaxContextText+1)} {
			var cx Context
			require.ErrorIs(t, cx.UnmarshalText([]byte(text)), ErrBadContext, "text %.10q", text)
			require.True(t, cx.IsZero(), "a failed UnmarshalText leaves the context unchanged")
		}
	})
	t.Run("context round trip", func(t *testing.T) {
		put(t, s, "rt", "v1", Context{})
		_, cx := get(t, s, "rt")
		text, err := cx.MarshalText()
		require.NoError(t, err)
		var back Context
		require.NoError(t, back.UnmarshalText(text))
		put(t, s, "rt", "v2", back)
		vals, _ := get(t, s, "rt", WithR(3))
		require.Equal(t, []string{"v2"}, vals, "the decoded context supersedes v1")
	})
}

func TestConfig_NilPlugins_ErrorNotPanic(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID = "a"
	cfg.Members = []Member{{ID: "a", Addr: "a"}}
	_, err := New(cfg)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.Contains(t, err.Error(), "Transport is nil")
	require.Contains(t, err.Error(), "Storage is nil")
}

func TestStore_Closed(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	s := c.stores[0]
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	_, _, err := s.Get(context.Background(), []byte("k"))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, s.Put(context.Background(), []byte("k"), nil, Context{}), ErrClosed)
}

// A node that is not a replica of the key forwards the Put to one that is
// (only a replica may mint the write's dot), and can coordinate Gets.
func TestStore_Put_ForwardedByNonReplica(t *testing.T) {
	c := newTestCluster(t, 5, nil)
	for i := range 30 {
		key := []byte{'k', byte(i)}
		pref := c.stores[0].PreferenceList(key, 3)
		outsider := -1
		for j := range c.stores {
			if !containsID(pref, nodeID(j)) {
				outsider = j
				break
			}
		}
		require.GreaterOrEqual(t, outsider, 0)
		put(t, c.stores[outsider], string(key), "v", Context{})
		vals, _ := get(t, c.stores[outsider], string(key))
		require.Equal(t, []string{"v"}, vals)
		st, err := c.stores[outsider].localState(key)
		require.NoError(t, err)
		require.True(t, st.empty(), "a non-replica stores nothing: %+v %+v", st, c.stores[outsider].Stats())
		for _, sb := range mustState(t, c, pref[0].ID, key).Siblings {
			require.NotContains(t, sb.Dot.Actor, nodeID(outsider)+"/", "the dot is minted by a replica")
		}
	}
}

func containsID(ms []Member, id string) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

func mustState(t *testing.T, c *testCluster, id string, key []byte) state {
	for i, s := range c.stores {
		if nodeID(i) == id {
			st, err := s.localState(key)
			require.NoError(t, err)
			return st
		}
	}
	t.Fatalf("no node %s", id)
	return state{}
}

// Reference: DESIGN §2 (Riak kv679): a node restarted on empty storage takes
// a new incarnation, so its new writes are not mistaken for old ones that
// the other replicas have already seen.
func TestStore_Incarnation_NewOnEmptyStorage(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.W = 3 })
	actor := c.stores[0].Actor()
	put(t, c.stores[0], "k", "old", Context{})

	c.stop(0)
	c.start(0, c.storages[0]) // same storage: same incarnation
	require.Equal(t, actor, c.stores[0].Actor())

	c.stop(0)
	c.start(0, memory.New()) // lost its disk
	require.NotEqual(t, actor, c.stores[0].Actor())
	require.True(t, strings.HasPrefix(c.stores[0].Actor(), nodeID(0)+"/"))

	put(t, c.stores[0], "k", "new", Context{}) // blind write: concurrent with "old"
	vals, _ := get(t, c.stores[1], "k", WithR(3))
	require.Equal(t, []string{"new", "old"}, vals, "the new write survives on replicas that saw the old dots")
}

func TestStore_Resolver_MergesOnGet(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Resolver = Latest })
	clock := time.Unix(100, 0)
	c.stores[0].cfg.Clock = func() time.Time { return clock }
	c.stores[1].cfg.Clock = func() time.Time { return clock.Add(time.Second) }
	put(t, c.stores[1], "k", "later", Context{})
	put(t, c.stores[0], "k", "earlier", Context{})
	vals, _ := get(t, c.stores[2], "k", WithR(3))
	require.Equal(t, []string{"later"}, vals, "highest timestamp wins even when written first")
}

func TestModify_UnionOfConcurrentAdds(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	codec := MsgpackCodec[[]string]{}
	ctx := context.Background()
	add := func(s *Store, item string) {
		_, err := Modify(ctx, s, []byte("cart"), codec, Union[string], func(cur []string, _ bool) ([]string, error) {
			return append(cur, item), nil
		})
		require.NoError(t, err)
	}
	add(c.stores[0], "book")
	// two shoppers read the same cart and write concurrently
	_, cx := get(t, c.stores[0], "cart")
	b1, _ := codec.Marshal([]string{"book", "pen"})
	b2, _ := codec.Marshal([]string{"book", "ink"})
	require.NoError(t, c.stores[1].Put(ctx, []byte("cart"), b1, cx))
	require.NoError(t, c.stores[2].Put(ctx, []byte("cart"), b2, cx))
	add(c.stores[0], "cup")
	sibs, _, err := c.stores[0].Get(ctx, []byte("cart"), WithR(3))
	require.NoError(t, err)
	require.Len(t, sibs, 1, "Modify wrote back the merged cart with the context")
	cart, err := codec.Unmarshal(sibs[0].Value)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"book", "cup", "ink", "pen"}, cart)
}

func TestModify_RetriesQuorumFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		c.net.Isolate(nodeID(1))
		c.net.Isolate(nodeID(2))
		_, err := Modify(context.Background(), c.stores[0], []byte("k"), JSONCodec[int]{}, Max[int],
			func(cur int, _ bool) (int, error) { return cur + 1, nil }, WithRetries(1))
		require.ErrorIs(t, err, ErrReadQuorum)
		c.net.Heal()
		v, err := Modify(context.Background(), c.stores[0], []byte("k"), JSONCodec[int]{}, Max[int],
			func(cur int, _ bool) (int, error) { return cur + 1, nil })
		require.NoError(t, err)
		require.Equal(t, 1, v)
	})
}

// The handler must answer garbage with an error reply, never panic.
func TestStore_Handle_GarbageNeverPanics(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.N, cfg.R, cfg.W = 1, 1, 1 })
	s := c.stores[0]
	inputs := [][]byte{nil, {0xc1}, {0x91, 0x01}, {0x92, 0x01, 0x63}, bytes.Repeat([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, 4)}
	good := s.encode(&replicateReq{Key: []byte("k"), State: []byte{0x93, 0x01, 0x90, 0x91}})
	inputs = append(inputs, good)
	for i := 0; i < len(good); i++ {
		inputs = append(inputs, good[:i])
	}
	for _, in := range inputs {
		resp, err := s.handle(context.Background(), in)
		require.NoError(t, err)
		m, err := decodeMessage(resp, s.wire)
		require.NoError(t, err)
		require.Equal(t, kindError, m.Body.kind(), "input %x", in)
	}
	vals, _ := get(t, s, "k")
	require.Empty(t, vals, "nothing was stored")
}

func TestStore_RejectsOtherClusterMessages(t *testing.T) {
	net := memnet.New(memnet.Options{})
	mk := func(id, cluster string) *Store {
		tr, err := net.Listen(id)
		require.NoError(t, err)
		t.Cleanup(func() { tr.Close() })
		cfg := DefaultConfig()
		cfg.NodeID, cfg.Cluster, cfg.Partitions = id, cluster, 16
		cfg.Transport, cfg.Storage = tr, memory.New()
		cfg.Members = []Member{{ID: "a", Addr: "a"}, {ID: "b", Addr: "b"}}
		cfg.N, cfg.R, cfg.W = 2, 2, 2
		s, err := New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := mk("a", "one")
	mk("b", "two")
	err := a.Put(context.Background(), []byte("k"), []byte("v"), Context{})
	require.ErrorIs(t, err, ErrWriteQuorum)
	var qe *QuorumError
	require.True(t, errors.As(err, &qe))
	require.ErrorIs(t, qe.PerReplica["b"], ErrProtocol)
}

// Reference: DESIGN §2: a version's dot is durable on its coordinator before
// any other replica sees it, so a node that crashes (keeping its storage)
// keeps its actor: it can never reissue a dot a replica already holds.
func TestStore_Incarnation_KeptAfterCrash(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	actor := c.stores[0].Actor()
	put(t, c.stores[0], "k", "v1", Context{})

	// A crash: the storage as it is while the store runs.
	crashed := memory.New()
	require.NoError(t, c.storages[0].ForEach(nil, func(k, v []byte) error {
		return crashed.Update(k, func([]byte) ([]byte, error) { return v, nil })
	}))
	c.stop(0)
	c.start(0, crashed)
	require.Equal(t, actor, c.stores[0].Actor(), "the actor survives a crash")
	_, cx := get(t, c.stores[0], "k", WithR(3))
	put(t, c.stores[0], "k", "v2", cx)
	put(t, c.stores[0], "other", "v3", Context{})
	vals, _ := get(t, c.stores[1], "k", WithR(3))
	require.Equal(t, []string{"v2"}, vals, "the write after the crash superseded the one before")
	vals, _ = get(t, c.stores[2], "other", WithR(3))
	require.Equal(t, []string{"v3"}, vals)
}
