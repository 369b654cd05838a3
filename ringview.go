// ringview.go: a read-only snapshot of this node's ring for operators (§4.2
// partitioning, §4.8 membership): partitions owned per node, and each
// member's reachability by the membership and by this node's own failure
// detector (§4.6).
package dynamo

import (
	"fmt"
	"time"
)

// RingView is this node's view of the ring at one instant: what Store.Ring
// returns. Two nodes with the same Fingerprint place every key alike.
type RingView struct {
	// Partitions is the number of fixed partitions (Config.Partitions).
	Partitions int `json:"partitions"`
	// N is the replication factor (Config.N): each partition lives on the
	// first N nodes of its preference list.
	N int `json:"n"`
	// Fingerprint identifies the member set, their zones and the
	// partitioning, as 16 hex digits.
	Fingerprint string `json:"fingerprint"`
	// Nodes holds one entry per ring member, sorted by ID.
	Nodes []NodeView `json:"nodes"`
}

// NodeView is one ring member as this node sees it.
type NodeView struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // its Transport address
	Zone string `json:"zone,omitempty"`
	// Self is set on the entry of the node that made the view.
	Self bool `json:"self"`
	// First counts the partitions whose preference list starts with this
	// node (it coordinates their tombstone purges and is their first
	// primary); Replica counts those whose first N nodes include it.
	First   int `json:"first"`
	Replica int `json:"replica"`
	// Reachable is the verdict requests use: MembershipUp and not
	// Suspected. MembershipUp is what the membership's failure detector
	// says; Suspected is set while this node's own detector holds the node
	// down after calls to it went unanswered (it backs off, then probes).
	Reachable    bool `json:"reachable"`
	MembershipUp bool `json:"membership_up"`
	Suspected    bool `json:"suspected"`
}

// Ring returns a snapshot of the current ring: every member, the partitions
// it owns, and whether it is reachable. It walks every partition's first N
// nodes, O(Partitions·N); meant for status pages, not for hot paths. The
// caller owns the returned slices.
func (s *Store) Ring() RingView {
	r := s.ring.Load()
	n := min(s.cfg.N, r.keep)
	first := make([]int, len(r.members))
	replica := make([]int, len(r.members))
	for p := 0; p < r.partitions && n > 0; p++ {
		list := r.prefs[p*r.keep : p*r.keep+n]
		first[list[0]]++
		for _, i := range list {
			replica[i]++
		}
	}
	v := RingView{Partitions: r.partitions, N: s.cfg.N, Fingerprint: fmt.Sprintf("%016x", r.fingerprint),
		Nodes: make([]NodeView, len(r.members))}
	now := time.Now()
	for i, m := range r.members {
		self := m.ID == s.cfg.NodeID
		nv := NodeView{ID: m.ID, Addr: m.Addr, Zone: m.Zone, Self: self, First: first[i], Replica: replica[i]}
		nv.MembershipUp = self || s.members.Reachable(m.ID)
		nv.Suspected = !self && s.health.suspect(m.ID, now)
		nv.Reachable = nv.MembershipUp && !nv.Suspected
		v.Nodes[i] = nv
	}
	return v
}
