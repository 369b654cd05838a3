// open_zones_test.go: NodeConfig.Zone end to end (issue 19): nodes opened with
// bbolt, TCP on 127.0.0.1 and memberlist learn each other's zones by gossip
// and place every key across them.
package dynamo_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/membership/gossip"
)

// zonesSecret is these tests' cluster secret.
var zonesSecret = []byte("open_zones_test cluster secret, public")

func TestOpen_Zones_GossipedAndUsedForPlacement(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	zones := []string{"zone-a", "zone-a", "zone-b", "zone-b"}
	var nodes []*dynamo.Node
	var want []dynamo.Member
	for i, zone := range zones {
		cfg := dynamo.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("node-%d", i)
		cfg.Partitions = 256
		// A first TLS handshake under -race on a loaded machine may take
		// longer than the default 500ms; no replica fails here.
		cfg.ReplicaTimeout, cfg.RequestTimeout = 5*time.Second, 15*time.Second
		cfg.Secrets = [][]byte{zonesSecret}
		nc := dynamo.NodeConfig{Config: cfg, Zone: zone, GossipProfile: gossip.ProfileLocal}
		if i > 0 {
			nc.Seeds = []string{nodes[0].GossipAddr()}
		}
		n, err := dynamo.Open(ctx, filepath.Join(t.TempDir(), cfg.NodeID), nc)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, n.Close()) })
		nodes = append(nodes, n)
		want = append(want, dynamo.Member{ID: cfg.NodeID, Addr: n.Addr(), Zone: zone})
	}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return slices.Equal(n.Members(), want) }, 20*time.Second, 20*time.Millisecond,
			"%s never saw %v", n.Actor(), want)
	}
	for k := range 50 {
		key := []byte(fmt.Sprintf("cart:%d", k))
		seen := map[string]bool{}
		for _, m := range nodes[k%4].PreferenceList(key, dynamo.DefaultN) {
			seen[m.Zone] = true
		}
		require.Len(t, seen, 2, "key %s: three replicas over both zones", key)
	}
	require.NoError(t, nodes[1].Put(ctx, []byte("cart:alice"), []byte("book"), dynamo.Context{}))
	sibs, _, err := nodes[2].Get(ctx, []byte("cart:alice"))
	require.NoError(t, err)
	require.Len(t, sibs, 1)
	require.Equal(t, "book", string(sibs[0].Value))
}

func TestOpen_Zone_RefusedBesideStaticMembers(t *testing.T) {
	cfg := dynamo.DefaultConfig()
	cfg.NodeID = "a"
	cfg.Members = []dynamo.Member{{ID: "a", Addr: "127.0.0.1:1", Zone: "z1"}}
	cfg.Secrets = [][]byte{zonesSecret}
	_, err := dynamo.Open(t.Context(), t.TempDir(), dynamo.NodeConfig{Config: cfg, Zone: "z1"})
	require.ErrorIs(t, err, dynamo.ErrInvalidConfig)
	require.ErrorContains(t, err, `NodeConfig.Zone ("z1") applies only to the gossip membership Open builds`)
}
