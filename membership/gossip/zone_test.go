// Tests of zones in gossiped ring records on real memberlist over 127.0.0.1 (§4.8, §4.6 placement across failure domains).

package gossip_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/membership/gossip"
)

// Every node sees every member's zone, also a node that joins after the
// others and so learns them from push/pull state rather than from each
// node's own metadata; and a node without a zone shows an empty one.
func TestGossip_Zones_EveryNodeSeesEveryZone(t *testing.T) {
	zoneOf := map[string]string{"n1": "zone-a", "n2": "zone-b", "n3": "zone-a", "n4": ""}
	withZone := func(id string, seeds ...string) gossip.Config {
		cfg := config(id, seeds...)
		cfg.Zone = zoneOf[id]
		return cfg
	}
	nodes := []*gossip.Gossip{start(t, withZone("n1"))}
	for _, id := range []string{"n2", "n3", "n4"} {
		nodes = append(nodes, start(t, withZone(id, nodes[len(nodes)-1].GossipAddr())))
	}
	var want []membership.Member
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		want = append(want, membership.Member{ID: id, Addr: dataAddr(id, 0), Zone: zoneOf[id]})
	}
	eventually(t, func() bool {
		for _, g := range nodes {
			if !slices.Equal(g.Members(), want) {
				return false
			}
		}
		return true
	}, "every node sees every zone: %s", describeZones(nodes))
}

// describeZones renders every node's view with zones, for failure messages.
type describeZones []*gossip.Gossip

func (d describeZones) String() string {
	out := ""
	for _, g := range d {
		out += fmt.Sprintf("\n  %s sees %v", g.ID(), g.Members())
	}
	return out
}

func TestStatic_CarriesZones(t *testing.T) {
	s := membership.NewStatic(membership.Member{ID: "b", Addr: "xb", Zone: "z2"}, membership.Member{ID: "a", Addr: "xa", Zone: "z1"})
	require.Equal(t, []membership.Member{{ID: "a", Addr: "xa", Zone: "z1"}, {ID: "b", Addr: "xb", Zone: "z2"}}, s.Members())
	changes, cancel := s.Subscribe()
	defer cancel()
	s.Add(membership.Member{ID: "a", Addr: "xa", Zone: "z3"})
	select {
	case <-changes:
	default:
		t.Fatal("a member's new zone is a change subscribers hear of")
	}
	require.Equal(t, "z3", s.Members()[0].Zone)
}
