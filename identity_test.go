// identity_test.go: DESIGN §2 storage pinned to its cluster, node and
// partition count, and a new incarnation on storage that lost writes.
package dynamo

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage/memory"
)

// Reopening a node's storage under another cluster name or node ID is a
// configuration mistake that would mix two identities' data: refused.
func TestStore_Identity_PinnedToClusterAndNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	put(t, c.stores[0], "k", "v", Context{})
	st := c.storages[0]
	c.stop(0)

	cases := map[string]struct {
		mut  func(*Config)
		want []string
	}{
		"other node":    {func(cfg *Config) { cfg.NodeID = "n1" }, []string{`node "n0"`, `node "n1"`}},
		"other cluster": {func(cfg *Config) { cfg.Cluster = "other" }, []string{`cluster "dynamo"`, `cluster "other"`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tr, err := c.net.Listen("spare")
			require.NoError(t, err)
			defer tr.Close()
			cfg := c.config(0, st)
			cfg.Transport = tr
			tc.mut(&cfg)
			s, err := New(cfg)
			if err == nil {
				s.Close()
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	c.start(0, st) // the right identity still opens, with its data
	require.Equal(t, []string{"v"}, c.local(0, "k"))
}

// lossyStorage is memory storage that reports lost writes until cleared, as
// a storage opened in a salvaging mode on a damaged log does.
type lossyStorage struct {
	*memory.Store
	lost bool
}

func (l *lossyStorage) LostWrites() bool       { return l.lost }
func (l *lossyStorage) ClearLostWrites() error { l.lost = false; return nil }

// Reference: DESIGN §2 (kv679): a storage that may have lost acknowledged
// writes makes the node take a new incarnation, once.
func TestStore_LostWrites_NewIncarnation(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	before := c.stores[0].Actor()
	mem := c.storages[0]
	c.stop(0)
	lossy := &lossyStorage{Store: mem, lost: true}
	restart := func() string {
		t.Helper()
		tr, err := c.net.Listen(nodeID(0))
		require.NoError(t, err)
		c.trans[0] = tr
		s, err := New(c.config(0, lossy))
		require.NoError(t, err)
		c.stores[0] = s
		actor := s.Actor()
		c.stop(0)
		return actor
	}
	after := restart()
	require.NotEqual(t, before, after, "lost writes: a new incarnation")
	require.False(t, lossy.lost, "the loss is cleared once the new incarnation is durable")
	require.Equal(t, after, restart(), "cleared: the incarnation is kept again")
}
