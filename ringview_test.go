// ringview_test.go: Store.Ring's ownership counts and its split of
// reachability between the membership and this node's failure detector.
package dynamo

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRing_OwnershipAndReachability(t *testing.T) {
	c := newTestCluster(t, 4, nil)
	s := c.stores[0]
	v := s.Ring()
	require.Equal(t, 64, v.Partitions)
	require.Equal(t, DefaultN, v.N)
	require.Len(t, v.Fingerprint, 16)
	require.Len(t, v.Nodes, 4)

	// Count ownership the slow way, from full preference lists.
	r := s.ring.Load()
	first, replica := map[string]int{}, map[string]int{}
	for p := range r.partitions {
		pref := r.preference(p, len(r.members))
		first[pref[0].ID]++
		for _, m := range pref[:DefaultN] {
			replica[m.ID]++
		}
	}
	sumFirst, sumReplica := 0, 0
	for i, n := range v.Nodes {
		require.Equal(t, nodeID(i), n.ID, "sorted by ID")
		require.Equal(t, i == 0, n.Self)
		require.Equal(t, first[n.ID], n.First, n.ID)
		require.Equal(t, replica[n.ID], n.Replica, n.ID)
		require.True(t, n.Reachable && n.MembershipUp && !n.Suspected, n.ID)
		sumFirst += n.First
		sumReplica += n.Replica
	}
	require.Equal(t, 64, sumFirst)
	require.Equal(t, 64*DefaultN, sumReplica)
	require.Equal(t, s.Ring().Fingerprint, c.stores[3].Ring().Fingerprint, "same members, same ring")

	c.members.SetReachable(nodeID(1), false)
	s.health.failed(nodeID(2), time.Now(), time.Hour)
	v = s.Ring()
	require.False(t, v.Nodes[1].MembershipUp)
	require.False(t, v.Nodes[1].Suspected)
	require.False(t, v.Nodes[1].Reachable)
	require.True(t, v.Nodes[2].MembershipUp)
	require.True(t, v.Nodes[2].Suspected)
	require.False(t, v.Nodes[2].Reachable)
	require.True(t, v.Nodes[3].Reachable)
	require.True(t, v.Nodes[0].Reachable, "a node is always reachable to itself")
}

// BenchmarkStore_RingView is the cost of one Ring view (an admin page or dynamoctl
// call) on the default 2^17 partitions of a 10-node ring.
func BenchmarkStore_RingView(b *testing.B) {
	c := newTestCluster(b, 10, func(cfg *Config) { cfg.Partitions = DefaultPartitions })
	s := c.stores[0]
	b.ReportAllocs()
	for b.Loop() {
		if v := s.Ring(); len(v.Nodes) != 10 {
			b.Fatal(v.Nodes)
		}
	}
}
