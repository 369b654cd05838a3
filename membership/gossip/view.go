// The gossiped ring record set and its merge rule: joined-and-not-left versus reachable (§4.8).

package gossip

import (
	"bytes"
	"maps"
	"slices"
	"strings"

	"github.com/dynamo-kv/dynamo/membership"
)

// entry is one node's ring record. Entries travel in node metadata, in
// broadcasts and in push/pull state exchanges, and every node merges them with
// the same rule (entry.supersedes), so all nodes converge on the same ring.
//
// A record with Left set is a tombstone: the node with that ID and
// incarnation has left the ring (gracefully, or removed by an operator). A
// later incarnation of the same ID, that is, a restarted process, joins again.
type entry struct {
	_msgpack struct{} `msgpack:",as_array"` // encode as a compact array, fields in order

	// Fields in wire order. ONLY APPEND TO THIS LIST, and teach
	// entry.DecodeMsgpack (wire.go) the new field.

	// ID is the node's ring identity (the memberlist node name).
	ID string
	// Addr is the node's Transport address.
	Addr string
	// Incarnation tells runs of the same ID apart; a larger one is newer.
	Incarnation uint64
	// Left marks the node's departure from the ring.
	Left bool
	// GossipAddr is the "ip:port" memberlist advertises for this run of the
	// node, which the reconnect loop joins when memberlist has given the
	// node up. Empty in node metadata, whose receiver takes the address
	// memberlist itself carries, and in records written before the field.
	GossipAddr string
	// Zone is the node's failure domain (Member.Zone), fixed for a run.
	// Empty for a node without one, and in records written before the
	// field or relayed by a node of a release before it.
	Zone string
}

// over returns the record a view keeps when it holds old, a record with the
// same ID, and hears e; changed reports whether that differs from old. A
// later incarnation wins, and within one incarnation a leave is final.
// Records of the same incarnation and left flag describe the same run of the
// node: e only fills in the optional fields (GossipAddr, Zone) that old
// lacks, field by field, so nodes that hear the same records in any order
// keep the same one. A relay that dropped a field (a node of an older
// release) never erases it.
func (e entry) over(old entry) (kept entry, changed bool) {
	if e.Incarnation != old.Incarnation {
		if e.Incarnation > old.Incarnation {
			return e, true
		}
		return old, false
	}
	if e.Left != old.Left {
		if e.Left {
			return e, true
		}
		return old, false
	}
	kept = old
	if kept.GossipAddr == "" {
		kept.GossipAddr = e.GossipAddr
	}
	if kept.Zone == "" {
		kept.Zone = e.Zone
	}
	return kept, kept != old
}

// supersedes reports whether hearing e changes a view that holds old.
func (e entry) supersedes(old entry) bool {
	_, changed := e.over(old)
	return changed
}

// visibility is what Membership shows of one ID; a change in it is what
// subscribers are told about.
type visibility struct {
	member    bool
	addr      string
	zone      string
	reachable bool
}

// view is a node's knowledge of the ring: a record per ID ever heard of,
// plus which incarnation the failure detector currently holds alive. It does
// no I/O and has no lock; Gossip guards it. The zero value is empty and ready.
type view struct {
	records map[string]entry
	// alive maps an ID to the incarnation of the process memberlist holds
	// alive (or suspect); an ID is absent while memberlist holds it dead,
	// and after memberlist has forgotten it.
	alive map[string]uint64
	// seals holds, in a signed cluster, the sealed form of each record in
	// records: what proves it and what is relayed.
	seals map[string]sealed
}

// merge stores what e adds to the view's record for e.ID (see entry.over),
// or e itself if the ID is new, and reports whether the view changed.
func (v *view) merge(e entry) bool {
	if old, ok := v.records[e.ID]; ok {
		var changed bool
		if e, changed = e.over(old); !changed {
			return false
		}
	}
	if v.records == nil {
		v.records = make(map[string]entry)
	}
	v.records[e.ID] = e
	return true
}

// mergeSealed is merge for a signed cluster, where a record is kept whole
// with its seal, never completed field by field from another: a later
// incarnation wins, within one a leave (or a removal) is final, and between
// two seals of the same record the later signature wins (a node signs its
// record again after a rotation of its credentials), the larger bytes
// breaking a tie so that every node keeps the same one.
func (v *view) mergeSealed(e entry, s sealed) bool {
	if !v.takesSealed(e, s) {
		return false
	}
	if v.records == nil {
		v.records = make(map[string]entry)
	}
	if v.seals == nil {
		v.seals = make(map[string]sealed)
	}
	v.records[e.ID] = e
	v.seals[e.ID] = s
	return true
}

// takesSealed reports whether mergeSealed(e, s) would change the view.
func (v *view) takesSealed(e entry, s sealed) bool {
	old, ok := v.records[e.ID]
	switch {
	case !ok:
		return true
	case e.Incarnation != old.Incarnation:
		return e.Incarnation > old.Incarnation
	case e.Left != old.Left:
		return e.Left
	}
	o := v.seals[e.ID]
	return s.at > o.at || s.at == o.at && bytes.Compare(s.wire, o.wire) > 0
}

// sealedSnapshot returns the seal of every record, sorted by ID.
func (v *view) sealedSnapshot() [][]byte {
	ids := slices.Sorted(maps.Keys(v.seals))
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = v.seals[id].wire
	}
	return out
}

// setAlive records that the failure detector holds the given incarnation of
// id alive.
func (v *view) setAlive(id string, incarnation uint64) {
	if v.alive == nil {
		v.alive = make(map[string]uint64)
	}
	v.alive[id] = incarnation
}

// setDead records that the failure detector holds id dead.
func (v *view) setDead(id string) { delete(v.alive, id) }

// visible returns what Members and Reachable show for id.
func (v *view) visible(id string) visibility {
	e, ok := v.records[id]
	if !ok || e.Left {
		return visibility{}
	}
	inc, up := v.alive[id]
	return visibility{member: true, addr: e.Addr, zone: e.Zone, reachable: up && inc == e.Incarnation}
}

// members returns the ring, joined and not left, sorted by ID.
func (v *view) members() []membership.Member {
	out := make([]membership.Member, 0, len(v.records))
	for _, e := range v.records {
		if !e.Left {
			out = append(out, membership.Member{ID: e.ID, Addr: e.Addr, Zone: e.Zone})
		}
	}
	slices.SortFunc(out, func(a, b membership.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// numMembers counts the ring's members.
func (v *view) numMembers() int {
	n := 0
	for _, e := range v.records {
		if !e.Left {
			n++
		}
	}
	return n
}

// snapshot returns every record, tombstones included, sorted by ID.
func (v *view) snapshot() []entry {
	ids := slices.Sorted(maps.Keys(v.records))
	out := make([]entry, len(ids))
	for i, id := range ids {
		out[i] = v.records[id]
	}
	return out
}
