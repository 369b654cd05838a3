// Table tests of the ring record merge rule and wire encodings (§4.8), no network.

package gossip

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
)

func TestEntry_Supersedes(t *testing.T) {
	live := func(inc uint64) entry { return entry{ID: "a", Addr: "x", Incarnation: inc} }
	left := func(inc uint64) entry { return entry{ID: "a", Addr: "x", Incarnation: inc, Left: true} }
	withGossip := func(e entry) entry { e.GossipAddr = "127.0.0.1:7946"; return e }
	withZone := func(e entry) entry { e.Zone = "eu-1a"; return e }
	tests := map[string]struct {
		e, old entry
		want   bool
	}{
		"later incarnation wins":             {live(2), live(1), true},
		"earlier incarnation loses":          {live(1), live(2), false},
		"same record is no news":             {live(1), live(1), false},
		"leave is final for an incarnation":  {left(1), live(1), true},
		"live does not undo a leave":         {live(1), left(1), false},
		"restart after leave rejoins":        {live(2), left(1), true},
		"stale leave loses to a restart":     {left(1), live(2), false},
		"same leave is no news":              {left(1), left(1), false},
		"gossip address fills in":            {withGossip(live(1)), live(1), true},
		"missing gossip address is no news":  {live(1), withGossip(live(1)), false},
		"gossip address does not undo leave": {withGossip(live(1)), left(1), false},
		"leave without gossip address":       {left(1), withGossip(live(1)), true},
		"same gossip address is no news":     {withGossip(live(1)), withGossip(live(1)), false},
		"zone fills in":                      {withZone(live(1)), live(1), true},
		"missing zone is no news":            {live(1), withZone(live(1)), false},
		"zone does not undo a leave":         {withZone(live(1)), left(1), false},
		"zone fills in beside gossip":        {withZone(live(1)), withGossip(live(1)), true},
		"gossip fills in beside zone":        {withGossip(live(1)), withZone(live(1)), true},
		"same zone is no news":               {withZone(live(1)), withZone(live(1)), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.e.supersedes(tc.old))
		})
	}
}

// Records of one run of a node complete each other field by field, so every
// node ends with the same record whatever order it hears them in, and a relay
// of an older release that dropped the zone never erases it.
func TestView_RecordsOfOneRunMergeInAnyOrder(t *testing.T) {
	base := entry{ID: "a", Addr: "x", Incarnation: 3}
	withGossip, withZone, both := base, base, base
	withGossip.GossipAddr = "g:1"
	withZone.Zone = "z1"
	both.GossipAddr, both.Zone = "g:1", "z1"
	records := []entry{base, withGossip, withZone, both}
	perms := [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 2, 0, 3}, {2, 1, 3, 0}, {0, 3, 1, 2}, {1, 0, 3, 2}}
	for _, perm := range perms {
		var v view
		for _, i := range perm {
			v.merge(records[i])
		}
		require.Equal(t, both, v.records["a"], "order %v", perm)
		require.Equal(t, []membership.Member{{ID: "a", Addr: "x", Zone: "z1"}}, v.members(), "order %v", perm)
	}
	// Only the two partial records: their union.
	var v view
	require.True(t, v.merge(withGossip))
	require.True(t, v.merge(withZone))
	require.Equal(t, both, v.records["a"])
	require.False(t, v.merge(base), "a record without the optional fields is no news")

	// A zone shows in Members and in what subscribers are told about.
	var w view
	w.merge(base)
	before := w.visible("a")
	w.merge(withZone)
	require.NotEqual(t, before, w.visible("a"), "learning the zone is a change subscribers hear of")
	require.Equal(t, "z1", w.visible("a").zone)
}

func TestView_FailureIsNotDeparture(t *testing.T) {
	var v view
	require.True(t, v.merge(entry{ID: "b", Addr: "xb", Incarnation: 1}))
	require.True(t, v.merge(entry{ID: "a", Addr: "xa", Incarnation: 1}))
	require.Equal(t, []membership.Member{{ID: "a", Addr: "xa"}, {ID: "b", Addr: "xb"}}, v.members())
	require.Equal(t, visibility{member: true, addr: "xa"}, v.visible("a"), "not reachable until memberlist says alive")

	v.setAlive("a", 1)
	require.Equal(t, visibility{member: true, addr: "xa", reachable: true}, v.visible("a"))

	v.setDead("a")
	require.Equal(t, visibility{member: true, addr: "xa"}, v.visible("a"), "a dead node stays in the ring")

	// The restarted process: a new incarnation and address.
	v.setAlive("a", 2)
	require.False(t, v.visible("a").reachable, "alive incarnation 2 is not the member record's incarnation 1")
	require.True(t, v.merge(entry{ID: "a", Addr: "xa2", Incarnation: 2}))
	require.Equal(t, visibility{member: true, addr: "xa2", reachable: true}, v.visible("a"))

	require.True(t, v.merge(entry{ID: "a", Addr: "xa2", Incarnation: 2, Left: true}))
	require.Equal(t, visibility{}, v.visible("a"), "a left node is neither member nor reachable")
	require.Equal(t, []membership.Member{{ID: "b", Addr: "xb"}}, v.members())
	require.Equal(t, 1, v.numMembers())
	require.False(t, v.merge(entry{ID: "a", Addr: "xa2", Incarnation: 2}), "a stale live record does not resurrect")
	require.Len(t, v.snapshot(), 2, "the tombstone is kept and gossiped")
}

func TestWire_RoundTripAndRejects(t *testing.T) {
	e := entry{ID: "node-1", Addr: "127.0.0.1:7000", Incarnation: math.MaxUint64, Left: true, GossipAddr: "127.0.0.1:7946", Zone: "us-east-1a"}
	b, err := encode(metaV1, e)
	require.NoError(t, err)
	got, err := decodeEntry(metaV1, b)
	require.NoError(t, err)
	require.Equal(t, e, got)

	_, err = decodeEntry(msgEntryV1, b)
	require.ErrorIs(t, err, errMalformed, "wrong layout byte")
	_, err = decodeEntry(metaV1, nil)
	require.ErrorIs(t, err, errMalformed, "empty")
	_, err = decodeEntry(metaV1, []byte{metaV1, 0xc1})
	require.ErrorIs(t, err, errMalformed, "garbage")
	noID, err := encode(metaV1, entry{Addr: "x"})
	require.NoError(t, err)
	_, err = decodeEntry(metaV1, noID)
	require.ErrorIs(t, err, errMalformed, "no ID")

	b, err = encode(stateV1, []entry{e, {ID: "b"}})
	require.NoError(t, err)
	records, err := decodeState(b)
	require.NoError(t, err)
	require.Equal(t, []entry{e, {ID: "b"}}, records)
}

// TestWire_OtherReleases decodes the entries of the first release (four
// fields, no gossip address) and of a later one that appended a field.
func TestWire_OtherReleases(t *testing.T) {
	type v1 struct {
		_msgpack    struct{} `msgpack:",as_array"`
		ID, Addr    string
		Incarnation uint64
		Left        bool
	}
	old, err := encode(msgEntryV1, v1{ID: "a", Addr: "x", Incarnation: 7, Left: true})
	require.NoError(t, err)
	got, err := decodeEntry(msgEntryV1, old)
	require.NoError(t, err)
	require.Equal(t, entry{ID: "a", Addr: "x", Incarnation: 7, Left: true}, got)

	// The release before zones: five fields.
	type v5 struct {
		_msgpack    struct{} `msgpack:",as_array"`
		ID, Addr    string
		Incarnation uint64
		Left        bool
		GossipAddr  string
	}
	five, err := encode(msgEntryV1, v5{ID: "a", Addr: "x", Incarnation: 7, GossipAddr: "g:1"})
	require.NoError(t, err)
	got, err = decodeEntry(msgEntryV1, five)
	require.NoError(t, err)
	require.Equal(t, entry{ID: "a", Addr: "x", Incarnation: 7, GossipAddr: "g:1"}, got)

	type later struct {
		_msgpack    struct{} `msgpack:",as_array"`
		ID, Addr    string
		Incarnation uint64
		Left        bool
		GossipAddr  string
		Zone        string
		Labels      map[string]int
		Weight      float64
	}
	recs := []later{
		{ID: "a", Addr: "x", Incarnation: 7, GossipAddr: "g:1", Zone: "z", Labels: map[string]int{"z": 1}, Weight: 0.5},
		{ID: "b", Addr: "y", Incarnation: 8, Left: true},
	}
	state, err := encode(stateV1, recs)
	require.NoError(t, err)
	records, err := decodeState(state)
	require.NoError(t, err)
	require.Equal(t, []entry{
		{ID: "a", Addr: "x", Incarnation: 7, GossipAddr: "g:1", Zone: "z"},
		{ID: "b", Addr: "y", Incarnation: 8, Left: true},
	}, records)

	short, err := encode(metaV1, []any{"a", "x", 7})
	require.NoError(t, err)
	_, err = decodeEntry(metaV1, short)
	require.ErrorIs(t, err, errMalformed, "fewer fields than the first release")
	wrongType, err := encode(metaV1, []any{"a", "x", 7, false, 42})
	require.NoError(t, err)
	_, err = decodeEntry(metaV1, wrongType)
	require.ErrorIs(t, err, errMalformed, "a gossip address that is not a string")
	zoneNotString, err := encode(metaV1, []any{"a", "x", 7, false, "g:1", 42})
	require.NoError(t, err)
	_, err = decodeEntry(metaV1, zoneNotString)
	require.ErrorIs(t, err, errMalformed, "a zone that is not a string")
	longZone, err := encode(msgEntryV1, []any{"a", "x", 7, false, "g:1", strings.Repeat("z", membership.MaxZoneLen+1)})
	require.NoError(t, err)
	_, err = decodeEntry(msgEntryV1, longZone)
	require.ErrorIs(t, err, errMalformed, "a zone beyond membership.MaxZoneLen")
	require.ErrorContains(t, err, fmt.Sprintf("Zone of %d bytes, the limit is %d", membership.MaxZoneLen+1, membership.MaxZoneLen))
	maxZone, err := encode(msgEntryV1, []any{"a", "x", 7, false, "g:1", strings.Repeat("z", membership.MaxZoneLen)})
	require.NoError(t, err)
	got, err = decodeEntry(msgEntryV1, maxZone)
	require.NoError(t, err)
	require.Len(t, got.Zone, membership.MaxZoneLen)
	withNil, err := encode(stateV1, []any{nil, []any{"a", "x", 1, false}})
	require.NoError(t, err)
	records, err = decodeState(withNil)
	require.NoError(t, err)
	require.Equal(t, []entry{{ID: "a", Addr: "x", Incarnation: 1}}, records, "entries without an ID are dropped")
}

func TestWire_MetaOmitsGossipAddr(t *testing.T) {
	e := entry{ID: "a", Addr: "x", Incarnation: 1, GossipAddr: "127.0.0.1:7946", Zone: "z1"}
	b, err := encode(metaV1, metaRecord(e))
	require.NoError(t, err)
	got, err := decodeEntry(metaV1, b)
	require.NoError(t, err)
	require.Empty(t, got.GossipAddr, "memberlist carries the address itself")
	require.Equal(t, "z1", got.Zone, "the zone travels in the metadata")
	require.Equal(t, "127.0.0.1:7946", e.GossipAddr, "metaRecord copies")
}

func TestWire_MetaOfReasonableNodeFits(t *testing.T) {
	// A 128-byte ID (dynamo's NodeID limit), a 253-byte DNS name with a
	// port and the longest zone still fit.
	e := entry{ID: string(make([]byte, 128)), Addr: string(make([]byte, 259)), Incarnation: math.MaxUint64, Left: true,
		GossipAddr: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", Zone: strings.Repeat("z", membership.MaxZoneLen)}
	b, err := encode(metaV1, metaRecord(e))
	require.NoError(t, err)
	require.LessOrEqual(t, len(b), memberlist.MetaMaxSize)
}
