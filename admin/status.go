// status.go: the JSON bodies of the admin endpoints, built from a Store's
// ring view (§4.2, §4.8), hint store (§4.6) and counters.
package admin

import (
	"cmp"
	"slices"
	"time"

	"github.com/dynamo-kv/dynamo"
)

// Status is the body of GET /status: what `nodetool status` puts on one
// line, for this node.
type Status struct {
	Node  string `json:"node"`  // Config.NodeID
	Actor string `json:"actor"` // NodeID/incarnation (Store.Actor)
	// Ready is set once the node pulled what it missed (Store.Ready).
	Ready bool `json:"ready"`
	// Members counts the ring's nodes; Reachable those of them this node
	// holds up, itself included.
	Members   int `json:"members"`
	Reachable int `json:"reachable"`
	// Partitions, N and Fingerprint are the ring's (dynamo.RingView).
	Partitions  int    `json:"partitions"`
	N           int    `json:"n"`
	Fingerprint string `json:"fingerprint"`
	// PendingTransfers counts the partitions this node still has to pull.
	PendingTransfers int `json:"pending_transfers"`
	// HintsPending and HintBytes total the hints this node holds for others.
	HintsPending int   `json:"hints_pending"`
	HintBytes    int64 `json:"hint_bytes"`
	// Time is when the status was taken, by this node's clock.
	Time time.Time `json:"time"`
}

// Member is one entry of GET /members: a ring member and whether this node
// holds it reachable, by the membership's failure detector (membership_up)
// and by its own (suspected: calls to it went unanswered lately).
type Member struct {
	ID           string `json:"id"`
	Addr         string `json:"addr"`
	Zone         string `json:"zone,omitempty"`
	Self         bool   `json:"self"`
	Reachable    bool   `json:"reachable"`
	MembershipUp bool   `json:"membership_up"`
	Suspected    bool   `json:"suspected"`
}

// Hints is the body of GET /hints: the hints this node holds for nodes that
// were down when a write meant for them came (§4.6), and their fate.
type Hints struct {
	// Pending lists the hints held per intended owner, most first.
	Pending   []OwnerHints `json:"pending"`
	Total     int          `json:"total"`     // hints held
	Bytes     int64        `json:"bytes"`     // bytes of hints held
	Stored    int64        `json:"stored"`    // hints accepted since start
	Delivered int64        `json:"delivered"` // hints acknowledged by their owner
	Refused   int64        `json:"refused"`   // hints declined: the hint store was full
	Rehomed   int64        `json:"rehomed"`   // hints for departed nodes handed to the new primaries
}

// OwnerHints counts the hints held for one node.
type OwnerHints struct {
	Owner string `json:"owner"`
	Hints int    `json:"hints"`
}

// StatsReply is the body of GET /stats.
type StatsReply struct {
	// Stats are the node's counters; Stats.HotKeys is empty unless the
	// handler was made WithHotKeys.
	Stats dynamo.Stats `json:"stats"`
}

func (h *handler) status() Status {
	v := h.st.Ring()
	stats := h.st.Stats()
	s := Status{Node: selfID(v), Actor: h.st.Actor(), Members: len(v.Nodes), Partitions: v.Partitions, N: v.N,
		Fingerprint: v.Fingerprint, PendingTransfers: stats.PendingTransfers, HintBytes: stats.Hints.Bytes, Time: time.Now().UTC()}
	select {
	case <-h.st.Ready():
		s.Ready = true
	default:
	}
	for _, n := range v.Nodes {
		if n.Reachable {
			s.Reachable++
		}
	}
	for _, n := range stats.Hints.Pending {
		s.HintsPending += n
	}
	return s
}

// selfID is the ID of the view's own node.
func selfID(v dynamo.RingView) string {
	for _, n := range v.Nodes {
		if n.Self {
			return n.ID
		}
	}
	return ""
}

func (h *handler) members() []Member {
	v := h.st.Ring()
	out := make([]Member, 0, len(v.Nodes))
	for _, n := range v.Nodes {
		out = append(out, Member{ID: n.ID, Addr: n.Addr, Zone: n.Zone, Self: n.Self, Reachable: n.Reachable,
			MembershipUp: n.MembershipUp, Suspected: n.Suspected})
	}
	return out
}

func (h *handler) hints() Hints {
	hs := h.st.Stats().Hints
	out := Hints{Pending: make([]OwnerHints, 0, len(hs.Pending)), Bytes: hs.Bytes, Stored: hs.Stored,
		Delivered: hs.Delivered, Refused: hs.Refused, Rehomed: hs.Rehomed}
	for owner, n := range hs.Pending {
		if n > 0 {
			out.Pending = append(out.Pending, OwnerHints{Owner: owner, Hints: n})
			out.Total += n
		}
	}
	slices.SortFunc(out.Pending, func(a, b OwnerHints) int {
		return cmp.Or(cmp.Compare(b.Hints, a.Hints), cmp.Compare(a.Owner, b.Owner))
	})
	return out
}

func (h *handler) stats() StatsReply {
	s := h.st.Stats()
	if !h.opts.hotKeys {
		s.HotKeys = nil
	}
	return StatsReply{Stats: s}
}
