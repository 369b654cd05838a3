// dotted_test.go: DESIGN §2.1 PutReturning and its dotted context: chained
// overwrites create no siblings, a concurrent writer's sibling survives the
// chain, a forged dot is refused, and the dot's merge rule.
package dynamo

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func putReturning(t testing.TB, s *Store, key, value string, c CausalContext, opts ...Option) CausalContext {
	t.Helper()
	out, err := s.PutReturning(context.Background(), []byte(key), []byte(value), c, opts...)
	require.NoError(t, err)
	require.False(t, out.IsZero())
	return out
}

// A chain of overwrites, each with the context the previous one returned,
// through every coordinator in turn (W=2, so a coordinator may not hold the
// previous version yet), supersedes each version with the next: no
// siblings, on any replica, once they converge.
func TestPutReturning_ChainCreatesNoSiblings(t *testing.T) {
	for _, n := range []int{3, 5} { // 5 nodes: 2 of 5 are no replica and forward
		c := newTestCluster(t, n, nil)
		cx := CausalContext{}
		for i := range 30 {
			v := string(rune('a' + i%26))
			cx = putReturning(t, c.stores[i%n], "k", v, cx)
			vals, _ := get(t, c.stores[(i+1)%n], "k", WithR(3))
			require.Equal(t, []string{v}, vals, "write %d through node %d of %d", i, i%n, n)
		}
		text, err := cx.MarshalText()
		require.NoError(t, err)
		var back CausalContext
		require.NoError(t, back.UnmarshalText(text))
		putReturning(t, c.stores[0], "k", "last", back)
		eventually(t, func() bool {
			for _, p := range c.stores[0].PreferenceList([]byte("k"), 3) {
				if got := c.local(indexOf(p.ID), "k"); len(got) != 1 || got[0] != "last" {
					return false
				}
			}
			return true
		}, "every replica holds the last version alone")
	}
}

// Issue 16 item 5: the returned context never covers a sibling its writer
// did not see. Client B writes between two of A's chained writes, through
// the same coordinator, so A's returned context is dotted; A's next chained
// write keeps B's version as a sibling, and a Get shows both.
func TestPutReturning_ConcurrentSiblingSurvives(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	co := c.stores[c.coordinator("k")]
	put(t, co, "k", "v0", CausalContext{})
	_, seen := get(t, co, "k", WithR(3))

	put(t, co, "k", "b", seen)                 // B, concurrent with A's next write
	ax := putReturning(t, co, "k", "a1", seen) // A never saw B's version
	require.NotZero(t, ax.dot.Counter, "the coordinator's counter ran past A's vector: the context is dotted")
	require.False(t, ax.vv.covers(ax.dot))
	vals, _ := get(t, co, "k", WithR(3))
	require.Equal(t, []string{"a1", "b"}, vals)

	for i, v := range []string{"a2", "a3", "a4"} { // A chains on, through every node
		ax = putReturning(t, c.stores[i], "k", v, ax)
		vals, _ = get(t, c.stores[(i+2)%3], "k", WithR(3))
		require.Equal(t, []string{v, "b"}, vals, "A's chain supersedes A's versions only")
	}

	_, all := get(t, co, "k", WithR(3)) // a read that saw both resolves them
	put(t, c.stores[1], "k", "merged", all)
	vals, _ = get(t, co, "k", WithR(3))
	require.Equal(t, []string{"merged"}, vals)
}

// A dotted context is authenticated like any other: an edited, added or
// dropped dot gets ErrBadContext through every node, and changes nothing.
func TestPutReturning_ForgedDotRefused(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.W, cfg.Secrets = 3, [][]byte{testSecret} })
	co := c.stores[c.coordinator("k")]
	put(t, co, "k", "v0", CausalContext{})
	_, seen := get(t, co, "k", WithR(3))
	put(t, co, "k", "b", seen)
	dotted := putReturning(t, co, "k", "a", seen, WithW(3))
	require.NotZero(t, dotted.dot.Counter)
	before := storedBytes(t, c, "k")

	fields := func(cx CausalContext) []any {
		raw, err := base64.RawURLEncoding.DecodeString(cx.String())
		require.NoError(t, err)
		var f []any
		require.NoError(t, msgpack.Unmarshal(raw, &f))
		return f
	}
	b := fields(dotted)
	bActor, bCounter := b[4].(string), b[5]
	forgeries := map[string]CausalContext{
		"dot counter moved back to B's": editContext(t, dotted, func(f []any) []any { f[5] = uint64(dotted.dot.Counter - 1); return f }),
		"dot actor changed":             editContext(t, dotted, func(f []any) []any { f[4] = bActor + "x"; return f }),
		"dot added to a plain context": editContext(t, seen, func(f []any) []any {
			return []any{contextFormatDotted, f[1], f[2], f[3], bActor, uint64(dotted.dot.Counter - 1)}
		}),
		"dot dropped, MAC kept":           editContext(t, dotted, func(f []any) []any { return []any{contextFormat, f[1], f[2], f[3]} }),
		"vector widened to B's, dot kept": editContext(t, dotted, func(f []any) []any { f[2] = []any{bActor, bCounter}; return f }),
	}
	for what, forged := range forgeries {
		for i := range c.stores {
			_, err := c.stores[i].PutReturning(context.Background(), []byte("k"), []byte("forged"), forged)
			require.ErrorIs(t, err, ErrBadContext, "%s, through node %d", what, i)
			require.ErrorIs(t, c.stores[i].Delete(context.Background(), []byte("k"), forged), ErrBadContext, "%s: delete", what)
		}
		require.Equal(t, before, storedBytes(t, c, "k"), "%s changed nothing", what)
	}
	vals, _ := get(t, co, "k", WithR(3))
	require.Equal(t, []string{"a", "b"}, vals)
}

// Malformed dotted texts are refused by UnmarshalText with ErrBadContext.
func TestCausalContext_DottedTextBounds(t *testing.T) {
	enc := func(f ...any) []byte {
		b, err := msgpack.Marshal(f)
		require.NoError(t, err)
		return []byte(base64.RawURLEncoding.EncodeToString(b))
	}
	mac := make([]byte, contextMACSize)
	long := string(make([]byte, maxActorLen+1))
	for what, text := range map[string][]byte{
		"no dot":            enc(contextFormatDotted, 7, []any{"a", 1}, mac),
		"empty actor":       enc(contextFormatDotted, 7, []any{"a", 1}, mac, "", 2),
		"zero counter":      enc(contextFormatDotted, 7, []any{"a", 1}, mac, "b", 0),
		"counter too large": enc(contextFormatDotted, 7, []any{"a", 1}, mac, "b", uint64(maxCounter)+1),
		"actor too long":    enc(contextFormatDotted, 7, []any{"a", 1}, mac, long, 2),
		"no MAC":            enc(contextFormatDotted, 7, []any{"a", 1}),
	} {
		var cx CausalContext
		require.ErrorIs(t, cx.UnmarshalText(text), ErrBadContext, what)
		require.True(t, cx.IsZero(), "%s left the context unchanged", what)
	}
	var cx CausalContext // an empty vector is fine beside a dot
	require.NoError(t, cx.UnmarshalText(enc(contextFormatDotted, 7, []any{}, mac, "b", 2)))
	require.Equal(t, dot{"b", 2}, cx.dot)
	require.False(t, cx.IsZero())
}

// The merge rule of a dotted context (DESIGN §2.1): a coordinator that has
// not yet received the context's dot covers it in the new vector when that
// keeps the vector contiguous, so the late copy is superseded when it
// arrives; otherwise the late copy survives as a sibling.
func TestMintDotted_LateDot(t *testing.T) {
	base, _ := mint(state{}, nil, "a", []byte("v1"), false, 1)           // a:1
	withD, d := mint(base, base.VV, "a", []byte("v2"), false, 2)         // a:2 supersedes a:1
	next, _ := mintDotted(base, base.VV, d, "b", []byte("v3"), false, 3) // at a replica without a:2
	require.Equal(t, []string{"v3"}, liveValues(syncStates(next, withD)), "contiguous: the late dot is superseded")
	require.Equal(t, []string{"v3"}, liveValues(syncStates(withD, next)))

	gap, _ := mint(withD, withD.VV, "a", []byte("v4"), false, 4) // a:3; the replica below lacks a:2 and a:3
	_, d3 := mint(withD, withD.VV, "a", []byte("v4"), false, 4)
	skip, _ := mintDotted(base, base.VV, d3, "b", []byte("v5"), false, 5)
	require.False(t, skip.VV.covers(d3), "the vector never covers a:2, which the writer did not see")
	require.Equal(t, []string{"v4", "v5"}, liveValues(syncStates(skip, gap)), "not contiguous: the late version survives as a sibling")

	self, own := mintDotted(base, nil, dot{"a", 5}, "a", []byte("x"), false, 6)
	require.Equal(t, uint64(6), own.Counter, "never mints the dot a context names")
	require.True(t, self.VV.covers(own))
}
