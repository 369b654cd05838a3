// status.go: the JSON bodies of the admin endpoints, built from a Store's
// ring view (§4.2, §4.8), hint store (§4.6) and counters.
package admin

import (
	"cmp"
	"math"
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
	// Healthy is false once the node's storage failed for good; Fatal then
	// says why (dynamo.Health). Restart the node or replace its disk.
	Healthy bool   `json:"healthy"`
	Fatal   string `json:"fatal,omitempty"`
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
	// Latency summarizes the requests this node coordinated, per operation
	// and outcome: every operation's "ok", and the other outcomes that
	// occurred.
	Latency []Latency `json:"latency"`
	// Time is when the status was taken, by this node's clock.
	Time time.Time `json:"time"`
}

// Latency summarizes one operation's requests with one outcome since the
// node started, as Riak's `riak-admin status` does. Percentiles are upper
// estimates, the bound of the histogram bucket that holds them (buckets
// double from 50µs); one past the last bucket reads as that bucket's bound.
type Latency struct {
	Op          string  `json:"op"`      // get, put, delete or forward
	Outcome     string  `json:"outcome"` // ok, quorum, timeout, ... (dynamo.Outcome*)
	Count       uint64  `json:"count"`
	MeanSeconds float64 `json:"mean_seconds"`
	P50Seconds  float64 `json:"p50_seconds"`
	P95Seconds  float64 `json:"p95_seconds"`
	P99Seconds  float64 `json:"p99_seconds"`
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

func (h *handler) status() Status { return statusOf(h.st.Actor(), h.st.Ring(), h.st.Metrics()) }

func statusOf(actor string, v dynamo.RingView, m dynamo.Metrics) Status {
	stats := m.Stats
	s := Status{Node: m.Node, Actor: actor, Ready: m.Health.Ready, Healthy: m.Health.Healthy(), Fatal: m.Health.Fatal,
		Members: len(v.Nodes), Partitions: v.Partitions, N: v.N, Fingerprint: v.Fingerprint,
		PendingTransfers: stats.PendingTransfers, HintBytes: stats.Hints.Bytes, Latency: latencies(m), Time: time.Now().UTC()}
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

// latencies summarizes m's request histograms.
func latencies(m dynamo.Metrics) []Latency {
	out := make([]Latency, 0, len(m.Requests))
	for _, r := range m.Requests {
		l := r.Latency
		out = append(out, Latency{Op: r.Op, Outcome: r.Outcome, Count: l.Count, MeanSeconds: l.Mean(),
			P50Seconds: quantile(l, 0.5), P95Seconds: quantile(l, 0.95), P99Seconds: quantile(l, 0.99)})
	}
	return out
}

// quantile is h.Quantile with the overflow bucket read as the last bound
// (JSON has no +Inf).
func quantile(h dynamo.Histogram, q float64) float64 {
	v := h.Quantile(q)
	if math.IsInf(v, 1) && len(h.Bounds) > 0 {
		return h.Bounds[len(h.Bounds)-1]
	}
	return v
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

func (h *handler) hints() Hints { return hintsOf(h.st.Stats().Hints) }

func hintsOf(hs dynamo.HintStats) Hints {
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

// stats is the body of GET /stats: the node's dynamo.Metrics, with
// Stats.HotKeys emptied unless the handler was made WithHotKeys.
func (h *handler) stats() dynamo.Metrics {
	m := h.st.Metrics()
	if !h.opts.hotKeys {
		m.Stats.HotKeys = nil
	}
	return m
}
