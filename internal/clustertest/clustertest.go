// Package clustertest starts small real clusters for tests of the packages
// around the core (admin, dynamoctl): nodes opened with dynamo.Open on
// 127.0.0.1, bbolt in t.TempDir() and memberlist gossip.
package clustertest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/membership/gossip"
)

// Timeout bounds each wait of a cluster test.
const Timeout = 20 * time.Second

// Cluster is the nodes Start opened.
type Cluster struct {
	t      testing.TB
	Nodes  []*dynamo.Node
	closed []bool
}

// Start opens size nodes named n0, n1, ... with a 64-partition ring, each
// joining n0, waits until every node's ring holds them all, and closes them
// when the test ends.
func Start(t testing.TB, size int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, closed: make([]bool, size)}
	var seeds []string
	for i := range size {
		cfg := dynamo.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("n%d", i)
		cfg.Partitions = 64
		cfg.ReplicaTimeout, cfg.RequestTimeout = 5*time.Second, Timeout
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		n, err := dynamo.Open(ctx, filepath.Join(t.TempDir(), cfg.NodeID), dynamo.NodeConfig{
			Config: cfg, Seeds: seeds, GossipProfile: gossip.ProfileLocal, Insecure: true,
		})
		cancel()
		require.NoError(t, err)
		c.Nodes = append(c.Nodes, n)
		t.Cleanup(func() { c.Stop(i) })
		seeds = []string{c.Nodes[0].GossipAddr()}
	}
	WaitUntil(t, func() bool {
		for _, n := range c.Nodes {
			if len(n.Members()) != size {
				return false
			}
		}
		return true
	}, "every ring to hold %d nodes", size)
	return c
}

// Stop closes node i (as a crash: it stays in the others' rings) unless it
// is closed already.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if !c.closed[i] {
		c.closed[i] = true
		require.NoError(c.t, c.Nodes[i].Close())
	}
}

// WaitUntil polls cond until it holds, failing the test after Timeout.
func WaitUntil(t testing.TB, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+what, args...)
		}
		<-tick.C
	}
}
