// Tests of encrypted gossip with a keyring: strangers kept out, and keys rotated on a running cluster (§4.8).

package gossip_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership/gossip"
)

var (
	keyA = bytes.Repeat([]byte{'a'}, 32)
	keyB = bytes.Repeat([]byte{'b'}, 32)
)

// keyed is config with a keyring.
func keyed(id string, keys [][]byte, seeds ...string) gossip.Config {
	cfg := config(id, seeds...)
	cfg.SecretKeys = keys
	return cfg
}

// allReachable reports whether every node sees every other reachable.
func allReachable(nodes []*gossip.Gossip) bool {
	for _, g := range nodes {
		for _, h := range nodes {
			if !g.Reachable(h.ID()) {
				return false
			}
		}
	}
	return true
}

func TestGossip_Keyring_StrangersCannotJoin(t *testing.T) {
	n1 := start(t, keyed("n1", [][]byte{keyA}))
	n2 := start(t, keyed("n2", [][]byte{keyA}, n1.GossipAddr()))
	eventually(t, func() bool { return allReachable([]*gossip.Gossip{n1, n2}) }, "encrypted pair forms")
	for name, cfg := range map[string]gossip.Config{
		"no key":    config("stranger", n1.GossipAddr()),
		"wrong key": keyed("stranger", [][]byte{keyB}, n1.GossipAddr()),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitFor)
			defer cancel()
			_, err := gossip.Join(ctx, cfg)
			require.ErrorIs(t, err, gossip.ErrJoin)
			require.NotContains(t, ids(n1), "stranger")
		})
	}
}

// A cluster rotates from A to B in memberlist's three steps while a new node
// joins after each one, holding only the keys of that step: gossip flows
// both ways at every step, and the cluster never splits.
func TestGossip_Keyring_Rotation(t *testing.T) {
	nodes := []*gossip.Gossip{start(t, keyed("n1", [][]byte{keyA}))}
	for i := 2; i <= 3; i++ {
		nodes = append(nodes, start(t, keyed(fmt.Sprintf("n%d", i), [][]byte{keyA}, nodes[0].GossipAddr())))
	}
	eventually(t, func() bool { return allReachable(nodes) }, "cluster forms: %s", describe(nodes))
	for s, keys := range [][][]byte{{keyA, keyB}, {keyB, keyA}, {keyB}} {
		for _, g := range nodes {
			require.NoError(t, g.SetSecretKeys(keys))
		}
		joiner := start(t, keyed(fmt.Sprintf("j%d", s), keys, nodes[0].GossipAddr()))
		nodes = append(nodes, joiner)
		eventually(t, func() bool { return allReachable(nodes) }, "step %d: %s", s, describe(nodes))
	}
	// A is gone: a node holding only A is a stranger now.
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	_, err := gossip.Join(ctx, keyed("old", [][]byte{keyA}, nodes[0].GossipAddr()))
	require.ErrorIs(t, err, gossip.ErrJoin)
	require.True(t, allReachable(nodes), "the cluster split: %s", describe(nodes))
}

func TestGossip_SetSecretKeys_Invalid(t *testing.T) {
	plain := start(t, config("n1"))
	require.ErrorIs(t, plain.SetSecretKeys([][]byte{keyA}), gossip.ErrInvalidConfig, "gossip in the clear")
	g := start(t, keyed("n2", [][]byte{keyA}))
	require.ErrorIs(t, g.SetSecretKeys(nil), gossip.ErrInvalidConfig)
	err := g.SetSecretKeys([][]byte{keyB, []byte("short")})
	require.ErrorIs(t, err, gossip.ErrInvalidConfig)
	require.ErrorContains(t, err, "SecretKeys[1] is 5 bytes")
}

func TestConfig_Validate_Keyring(t *testing.T) {
	cfg := keyed("n1", [][]byte{keyA, []byte("x")})
	cfg.SecretKey = keyB
	err := cfg.Validate()
	require.ErrorIs(t, err, gossip.ErrInvalidConfig)
	require.ErrorContains(t, err, "SecretKey and SecretKeys are both set")
	require.ErrorContains(t, err, "SecretKeys[1] is 1 bytes")
	require.NoError(t, keyed("n1", [][]byte{keyA, keyB[:16]}).Validate())
}
