// Tests of the reconnect loop on real memberlist over 127.0.0.1 (§4.8): a healed partition and a seed out of reach at start.

package gossip_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/membership/gossip"
)

// ring returns the members with the given IDs, as config gives them.
func ring(ids ...string) []membership.Member {
	out := make([]membership.Member, len(ids))
	for i, id := range ids {
		out[i] = membership.Member{ID: id, Addr: dataAddr(id, 0)}
	}
	return out
}

// allSee reports whether every node lists exactly want and holds every one
// of them reachable.
func allSee(nodes []*gossip.Gossip, want []membership.Member) bool {
	for _, g := range nodes {
		if !slices.Equal(g.Members(), want) {
			return false
		}
		for _, m := range want {
			if !g.Reachable(m.ID) {
				return false
			}
		}
	}
	return true
}

func TestGossip_Partition_HealsAfterMemberlistForgets(t *testing.T) {
	var fn faultNet
	a := startOn(t, &fn, "n1", nil, nil)
	b := startOn(t, &fn, "n2", nil, nil, a.GossipAddr())
	c := startOn(t, &fn, "n3", nil, nil, a.GossipAddr())
	all := []*gossip.Gossip{a, b, c}
	want := ring("n1", "n2", "n3")
	eventually(t, func() bool { return allSee(all, want) }, "cluster forms: %s", describe(all))

	fn.isolate(c.GossipAddr(), a.GossipAddr(), b.GossipAddr())
	apart := func() bool {
		return !a.Reachable("n3") && !b.Reachable("n3") && !c.Reachable("n1") && !c.Reachable("n2")
	}
	eventually(t, apart, "both sides declare the other dead: %s", describe(all))

	// memberlist forgets a dead node GossipToTheDeadTime (1 s in the local
	// profile) after declaring it dead, when its probe round (3 × 200 ms
	// here) next wraps; from then on only the reconnect loop, failing
	// against the cut, would contact the other side. The ring holds on.
	require.Never(t, func() bool {
		for _, g := range all {
			if !slices.Equal(g.Members(), want) {
				return true
			}
		}
		return !apart()
	}, 2500*time.Millisecond, 50*time.Millisecond, "the partition holds and the ring keeps every member: %s", describe(all))

	fn.heal()
	healed := time.Now()
	eventually(t, func() bool { return allSee(all, want) }, "the partition heals: %s", describe(all))
	t.Logf("all three reachable everywhere %v after the heal", time.Since(healed).Round(time.Millisecond))
}

func TestGossip_JoinRetry_StartsWithSeedOutOfReachThenJoins(t *testing.T) {
	var fn faultNet
	seed := startOn(t, &fn, "n1", nil, nil)

	// Without JoinRetry, a node whose seeds all fail to answer does not
	// start.
	tr := newFaultTransport(t, &fn)
	fn.isolate(tr.self, seed.GossipAddr())
	cfg := config("n2", seed.GossipAddr())
	cfg.BindAddr, cfg.Transport = "", tr
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	_, err := gossip.Join(ctx, cfg)
	require.ErrorIs(t, err, gossip.ErrJoin)
	require.NoError(t, tr.Shutdown())

	// With it, the node starts alone and joins once the seed answers.
	tr = newFaultTransport(t, &fn)
	fn.isolate(tr.self, seed.GossipAddr())
	late := startOn(t, &fn, "n2", tr, func(c *gossip.Config) { c.JoinRetry = true }, seed.GossipAddr())
	require.Equal(t, ring("n2"), late.Members())
	require.Never(t, func() bool {
		return len(late.Members()) != 1 || slices.Contains(ids(seed), "n2")
	}, time.Second, 50*time.Millisecond, "the seed is out of reach: %s", describe{seed, late})

	fn.heal()
	healed := time.Now()
	both := []*gossip.Gossip{seed, late}
	eventually(t, func() bool { return allSee(both, ring("n1", "n2")) }, "n2 joins through its seed: %s", describe(both))
	t.Logf("joined %v after the seed came within reach", time.Since(healed).Round(time.Millisecond))
}

func TestGossip_ReconnectDisabled_StaysApartAfterForgetting(t *testing.T) {
	// The control for the partition test: with the loop off, memberlist
	// alone does not heal a partition it has forgotten.
	if testing.Short() {
		t.Skip("skipped in -short mode: waits out memberlist's forgetting")
	}
	var fn faultNet
	off := func(c *gossip.Config) { c.ReconnectInterval = -1 }
	a := startOn(t, &fn, "n1", nil, off)
	b := startOn(t, &fn, "n2", nil, off, a.GossipAddr())
	all := []*gossip.Gossip{a, b}
	want := ring("n1", "n2")
	eventually(t, func() bool { return allSee(all, want) }, "pair forms: %s", describe(all))

	fn.isolate(b.GossipAddr(), a.GossipAddr())
	eventually(t, func() bool { return !a.Reachable("n2") && !b.Reachable("n1") }, "pair splits: %s", describe(all))
	require.Never(t, func() bool { return a.Reachable("n2") || b.Reachable("n1") }, 2500*time.Millisecond, 50*time.Millisecond)
	fn.heal()
	require.Never(t, func() bool { return a.Reachable("n2") || b.Reachable("n1") }, 2*time.Second, 50*time.Millisecond,
		"without the reconnect loop the forgotten sides stay apart: %s", describe(all))
	require.Equal(t, want, a.Members(), "the ring still lists both")
}
