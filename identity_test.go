// identity_test.go: DESIGN §2 storage pinned to its cluster, node and
// partition count.
package dynamo

import (
	"testing"

	"github.com/stretchr/testify/require"
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

