// context_mac_test.go: DESIGN §2, SECURITY "untrusted caller data": contexts
// carry a MAC keyed by the cluster secret; an edited or forged context
// changes nothing and gets ErrBadContext; secrets rotate.
package dynamo

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef")
	testSecret2 = []byte("fedcba9876543210fedcba9876543210")
)

// editContext decodes a context's text into its fields ([format, cluster,
// vector, mac...]), lets edit change them, and encodes them again.
func editContext(t testing.TB, c Context, edit func(fields []any) []any) Context {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(c.String())
	require.NoError(t, err)
	var fields []any
	require.NoError(t, msgpack.Unmarshal(raw, &fields))
	b, err := msgpack.Marshal(edit(fields))
	require.NoError(t, err)
	var out Context
	require.NoError(t, out.UnmarshalText([]byte(base64.RawURLEncoding.EncodeToString(b))), "the edited text is well formed")
	return out
}

// storedBytes returns every replica's stored bytes of key, concatenated.
func storedBytes(t *testing.T, c *testCluster, key string) []byte {
	var out []byte
	for i := range c.stores {
		out = append(out, c.record(i, key)...)
		out = append(out, '|')
	}
	return out
}

// Reference: issue 12 "silent supersede": a client that edits its context to
// cover a sibling it never saw (here by putting in the vector a full read
// would give) would make its Put discard that sibling. With a MAC, Put
// refuses it and nothing changes; so does every other forgery.
func TestContext_MAC_EditedOrForgedRefused(t *testing.T) {
	for name, secrets := range map[string][][]byte{"secret": {testSecret}, "no secret": nil} {
		t.Run(name, func(t *testing.T) {
			c := newTestCluster(t, 3, func(cfg *Config) { cfg.W, cfg.Secrets = 3, secrets })
			s := c.stores[0]
			put(t, s, "k", "seen", Context{})
			_, partial := get(t, s, "k", WithR(3))
			put(t, c.stores[1], "k", "unseen", Context{})
			_, full := get(t, s, "k", WithR(3))
			before := storedBytes(t, c, "k")

			forgeries := map[string]Context{
				"vector widened, MAC kept": editContext(t, partial, func(f []any) []any {
					raw, _ := base64.RawURLEncoding.DecodeString(full.String())
					var ff []any
					require.NoError(t, msgpack.Unmarshal(raw, &ff))
					f[2] = ff[2]
					return f
				}),
				"MAC made up": editContext(t, full, func(f []any) []any {
					f[3] = bytes.Repeat([]byte{7}, contextMACSize)
					return f
				}),
				"MAC of another cluster name": func() Context {
					k, err := newContextKeys("other", secrets)
					require.NoError(t, err)
					return Context{cluster: full.cluster, vv: full.vv, mac: k.mac(0, full.vv, dot{})}
				}(),
			}
			if secrets != nil {
				forgeries["MAC stripped (format 1)"] = editContext(t, full, func(f []any) []any { return []any{contextFormatV1, f[1], f[2]} })
				forgeries["MAC under no secret"] = func() Context {
					k, err := newContextKeys(DefaultCluster, nil)
					require.NoError(t, err)
					return Context{cluster: full.cluster, vv: full.vv, mac: k.mac(0, full.vv, dot{})}
				}()
			}
			for what, forged := range forgeries {
				for i := range c.stores {
					err := c.stores[i].Put(context.Background(), []byte("k"), []byte("forged"), forged)
					require.ErrorIs(t, err, ErrBadContext, "%s, through node %d", what, i)
					err = c.stores[i].Delete(context.Background(), []byte("k"), forged)
					require.ErrorIs(t, err, ErrBadContext, "%s, delete through node %d", what, i)
				}
				require.Equal(t, before, storedBytes(t, c, "k"), "%s changed nothing", what)
			}
			vals, _ := get(t, s, "k", WithR(3))
			require.Equal(t, []string{"seen", "unseen"}, vals)

			for i := range c.stores { // the genuine contexts work through every node
				_, cx := get(t, c.stores[i], "k", WithR(3))
				text := cx.String()
				var back Context
				require.NoError(t, back.UnmarshalText([]byte(text)))
				put(t, c.stores[(i+1)%3], "k", "merged", back)
			}
			vals, _ = get(t, s, "k", WithR(3))
			require.Equal(t, []string{"merged"}, vals)
		})
	}
}

// Reference: issue 12 item 1 "key rotation": with the new secret first and
// the old one kept, contexts signed by either are accepted; once the old one
// is dropped, its contexts are refused.
func TestContext_MAC_Rotation(t *testing.T) {
	secrets := [][]byte{testSecret}
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.W, cfg.Secrets = 3, secrets })
	restart := func(s ...[]byte) {
		secrets = s
		for i := range c.stores {
			c.stop(i)
			c.start(i, c.storages[i])
		}
	}
	put(t, c.stores[0], "k", "v1", Context{})
	_, old := get(t, c.stores[0], "k", WithR(3))

	restart(testSecret2, testSecret)
	_, fresh := get(t, c.stores[1], "k", WithR(3))
	require.NotEqual(t, old.String(), fresh.String(), "signed with the new secret")
	require.NoError(t, c.stores[2].Put(context.Background(), []byte("k"), []byte("v2"), old), "the old secret still verifies")
	_, fresh = get(t, c.stores[1], "k", WithR(3))

	restart(testSecret2)
	require.ErrorIs(t, c.stores[0].Put(context.Background(), []byte("k"), []byte("v3"), old), ErrBadContext, "the old secret was dropped")
	put(t, c.stores[0], "k", "v3", fresh)
	vals, _ := get(t, c.stores[0], "k", WithR(3))
	require.Equal(t, []string{"v3"}, vals)
}

func TestConfig_Secrets_Validated(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Members = "a", []Member{{ID: "a", Addr: "a"}}
	cfg.Secrets = [][]byte{[]byte("short"), make([]byte, 2048), testSecret}
	err := cfg.Validate()
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.Contains(t, err.Error(), "Secrets[0] is 5 bytes; a secret must be 16 to 1024 bytes")
	require.Contains(t, err.Error(), "Secrets[1] is 2048 bytes")
	require.NotContains(t, err.Error(), "Secrets[2]")
}

// FuzzContext_PutUnderMAC feeds context texts to Put on a node with a real
// secret: whatever the text, stored data changes only if the context is one
// the cluster issued (its MAC verified), and an invalid one gets
// ErrBadContext.
func FuzzContext_PutUnderMAC(f *testing.F) {
	// Seeded entropy: every fuzzing process builds the same node, so the
	// contexts one issues are the ones the others issue.
	c := newTestCluster(f, 1, func(cfg *Config) {
		cfg.N, cfg.R, cfg.W, cfg.Secrets = 1, 1, 1, [][]byte{testSecret}
		cfg.Rand = rand.NewChaCha8([32]byte{7})
	})
	s := c.stores[0]
	key := []byte("k")
	issued := map[string]bool{}
	name := func(cx Context) string { return fmt.Sprintf("%s|%v", vcVVString(cx.vv), cx.dot) }
	read := func(t testing.TB) Context {
		_, cx, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		issued[name(cx)] = true
		return cx
	}
	for i, v := range []string{"a", "b", "c"} {
		require.NoError(f, s.Put(context.Background(), key, []byte(v), Context{}))
		cx := read(f)
		f.Add(cx.String())
		f.Add(cx.String()[:len(cx.String())-i-1])
		f.Add(editContext(f, cx, func(fs []any) []any { fs[1] = 1; return fs }).String())
		// A dotted context: written with cx after a concurrent write.
		require.NoError(f, s.Put(context.Background(), key, []byte(v+"'"), cx))
		dotted, err := s.PutReturning(context.Background(), key, []byte(v+"\""), cx)
		require.NoError(f, err)
		require.NotZero(f, dotted.dot.Counter)
		issued[name(dotted)] = true
		f.Add(dotted.String())
		f.Add(editContext(f, dotted, func(fs []any) []any { fs[5] = dotted.dot.Counter - 1; return fs }).String())
	}
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, text string) {
		var cx Context
		if err := cx.UnmarshalText([]byte(text)); err != nil {
			require.ErrorIs(t, err, ErrBadContext)
			return
		}
		before, err := c.storages[0].Get(s.storedKey(key))
		require.NoError(t, err)
		err = s.Put(context.Background(), key, []byte("fuzz"), cx)
		if err != nil {
			require.ErrorIs(t, err, ErrBadContext)
			after, gerr := c.storages[0].Get(s.storedKey(key))
			require.NoError(t, gerr)
			require.Equal(t, before, after, "a refused context changed stored data")
			return
		}
		require.True(t, cx.IsZero() || issued[name(cx)], "a context the cluster never issued was accepted: %s", name(cx))
		// Resolve the siblings with a genuine context, so that blind Puts
		// never fill the key up to Limits.MaxSiblings.
		require.NoError(t, s.Put(context.Background(), key, []byte("resolved"), read(t)))
		read(t)
	})
}
