// metrics.go: the Store's built-in metrics (request counts and latencies by
// outcome, siblings per read, object sizes, quorum failures, requests served
// to peers, anti-entropy rounds) and the Metrics snapshot that gathers them
// with Stats, membership, transport and storage figures. No metrics backend:
// a collector (package metrics/prom) reads the snapshot at scrape time.
package dynamo

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/transport"
)

// The operations Metrics.Requests reports. OpForward is a Put or Delete
// that this node, not a replica of its key, handed to a replica: each is
// also counted as its OpPut or OpDelete.
const (
	OpGet     = "get"
	OpPut     = "put"
	OpDelete  = "delete"
	OpForward = "forward"
)

// The outcomes of a request, as Metrics.Requests reports them.
const (
	OutcomeOK            = "ok"
	OutcomeBadInput      = "bad_input"      // empty or too large key or value, bad context or option, too many siblings
	OutcomeQuorum        = "quorum"         // a *QuorumError: too few replicas answered in time
	OutcomeNoReplica     = "no_replica"     // ErrNoReplica
	OutcomeTimeout       = "timeout"        // the caller's deadline passed
	OutcomeCanceled      = "canceled"       // the caller's context was canceled
	OutcomeClosed        = "closed"         // ErrClosed
	OutcomeStorageFailed = "storage_failed" // ErrStorageFailed
	OutcomeError         = "error"          // anything else (a failed Resolver, a protocol error)
)

// The reasons of quorum failures, as Metrics.QuorumFailures reports them.
const (
	ReasonTimeout     = "timeout"     // the request's time ran out before enough replicas answered
	ReasonCanceled    = "canceled"    // the caller canceled it first
	ReasonReplicas    = "replicas"    // too many replicas failed or were unreachable
	ReasonUnreachable = "unreachable" // with WithPrimariesOnly, too few primaries believed up to try
	ReasonNoReplica   = "no_replica"  // a forwarded write found no replica to take it
)

var (
	opNames      = [...]string{OpGet, OpPut, OpDelete, OpForward}
	outcomeNames = [...]string{OutcomeOK, OutcomeBadInput, OutcomeQuorum, OutcomeNoReplica, OutcomeTimeout,
		OutcomeCanceled, OutcomeClosed, OutcomeStorageFailed, OutcomeError}
	reasonNames = [...]string{ReasonTimeout, ReasonCanceled, ReasonReplicas, ReasonUnreachable, ReasonNoReplica}
)

const (
	opGet = iota
	opPut
	opDelete
	opForward
)

// metrics are a Store's counters and histograms.
type metrics struct {
	latency  [len(opNames)][len(outcomeNames)]*histogram
	quorum   [len(opNames)][len(reasonNames)]atomic.Uint64
	siblings *histogram // live siblings per successful Get
	readSize *histogram // bytes of the live sibling values per successful Get
	putSize  *histogram // bytes of the value per Put attempted

	served       [kindFold + 1]atomic.Uint64 // requests from peers served, by kind
	servedHints  atomic.Uint64               // replicate requests that were hints
	servedErrors atomic.Uint64               // requests from peers answered with an error

	memberChanges atomic.Uint64
	ae            aeMetrics
}

func newMetrics() *metrics {
	m := &metrics{siblings: newHistogram(siblingsLayout), readSize: newHistogram(sizeLayout), putSize: newHistogram(sizeLayout)}
	for o := range m.latency {
		for c := range m.latency[o] {
			m.latency[o][c] = newHistogram(latencyLayout)
		}
	}
	m.ae.duration = newHistogram(latencyLayout)
	return m
}

// done records one request of op that started at start and ended with err.
func (m *metrics) done(op int, start time.Time, err error) {
	m.latency[op][outcomeOf(err)].observe(int64(time.Since(start)))
	if err == nil {
		return
	}
	var qe *QuorumError
	switch {
	case errors.Is(err, ErrNoReplica):
		m.quorum[op][4].Add(1)
	case errors.As(err, &qe):
		m.quorum[op][qe.reasonIndex()].Add(1)
	}
}

// outcomeOf returns the index in outcomeNames of err's outcome.
func outcomeOf(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrEmptyKey), errors.Is(err, ErrKeyTooLarge), errors.Is(err, ErrValueTooLarge),
		errors.Is(err, ErrBadContext), errors.Is(err, ErrBadOption), errors.Is(err, ErrTooManySiblings):
		return 1
	case errors.Is(err, ErrNoReplica):
		return 3
	case errors.Is(err, ErrReadQuorum), errors.Is(err, ErrWriteQuorum):
		return 2
	case errors.Is(err, context.DeadlineExceeded):
		return 4
	case errors.Is(err, context.Canceled):
		return 5
	case errors.Is(err, ErrClosed):
		return 6
	case errors.Is(err, ErrStorageFailed):
		return 7
	}
	return 8
}

// reasonIndex returns the index in reasonNames of why the quorum failed.
func (e *QuorumError) reasonIndex() int {
	switch {
	case e.unreachable:
		return 3
	case errors.Is(e.cause, context.DeadlineExceeded):
		return 0
	case errors.Is(e.cause, context.Canceled):
		return 1
	}
	return 2
}

// aeMetrics count anti-entropy rounds (background and AntiEntropy calls)
// and keep each peer's last result.
type aeMetrics struct {
	rounds, errors atomic.Uint64
	duration       *histogram

	mu     sync.Mutex
	totals SyncResult
	last   map[string]AntiEntropyPeer // by peer ID, for the peers of the current ring
}

func (a *aeMetrics) record(start time.Time, total SyncResult, peers []AntiEntropyPeer, err error) {
	a.rounds.Add(1)
	if err != nil {
		a.errors.Add(1)
	}
	a.duration.observe(int64(time.Since(start)))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.totals.add(total)
	if a.last == nil {
		a.last = map[string]AntiEntropyPeer{}
	}
	for _, p := range peers {
		a.last[p.Peer] = p
	}
}

// Metrics is a snapshot of a Store's metrics, taken by Store.Metrics. The
// counters count since the Store started; gauges (marked "now") are
// current. The snapshot is the caller's: nothing in it is shared.
type Metrics struct {
	Node string `json:"node"` // Config.NodeID
	// Requests are the client requests this node coordinated (Get, Put,
	// Delete and the calls built on them), each with its latency
	// histogram, by operation and outcome: every operation's OutcomeOK,
	// and every other outcome that occurred. A request is counted once it
	// returns.
	Requests []RequestMetrics `json:"requests"`
	// QuorumFailures count the requests that failed their quorum, by
	// operation and reason (one entry per pair that occurred).
	QuorumFailures []QuorumFailures `json:"quorum_failures"`
	// Siblings counts the live siblings each successful Get found (before
	// any Resolver merged them).
	Siblings Histogram `json:"siblings"`
	// ReadBytes is the bytes of the live sibling values each successful
	// Get found; WriteBytes the bytes of each value a Put wrote.
	ReadBytes  Histogram `json:"read_bytes"`
	WriteBytes Histogram `json:"write_bytes"`
	// Served counts the requests from peers this node served, by kind:
	// "get", "replicate", "hint", "put" (a write forwarded here to
	// coordinate), "ping", "purge", "fold", "anti_entropy"; ServedErrors
	// those answered with an error.
	Served       map[string]uint64 `json:"served"`
	ServedErrors uint64            `json:"served_errors"`
	// Stats holds the counters of background work: read repairs, hints,
	// transfers, tombstones purged, damaged records (see Stats; its
	// HotKeys hold raw keys: do not export them as labels).
	Stats       Stats              `json:"stats"`
	AntiEntropy AntiEntropyMetrics `json:"anti_entropy"`
	Membership  MembershipMetrics  `json:"membership"`
	// Transport holds the Transport's figures when it reports them
	// (transport.StatsReporter, as transport/tcp does); nil otherwise.
	Transport *transport.Stats `json:"transport,omitempty"`
	// Storage holds the Storage's figures when it reports them
	// (storage.StatsReporter, as storage/bolt does); nil otherwise.
	Storage *storage.Stats `json:"storage,omitempty"`
	Health  Health         `json:"health"`
}

// RequestMetrics are one operation's requests with one outcome.
type RequestMetrics struct {
	Op      string    `json:"op"`      // OpGet, OpPut, OpDelete or OpForward
	Outcome string    `json:"outcome"` // OutcomeOK, OutcomeQuorum, ...
	Latency Histogram `json:"latency"` // seconds; Latency.Count is the number of requests
}

// QuorumFailures count one operation's quorum failures for one reason.
type QuorumFailures struct {
	Op     string `json:"op"`
	Reason string `json:"reason"` // ReasonTimeout, ReasonReplicas, ...
	Count  uint64 `json:"count"`
}

// AntiEntropyMetrics describe this node's anti-entropy rounds: the
// background ones and AntiEntropy calls.
type AntiEntropyMetrics struct {
	Rounds uint64 `json:"rounds"` // rounds run
	Errors uint64 `json:"errors"` // rounds in which the sync with some peer failed
	// Totals sums the rounds' results: partitions compared, keys and bytes
	// exchanged.
	Totals SyncResult `json:"totals"`
	// Duration is each round's duration in seconds.
	Duration Histogram `json:"duration"`
	// Peers holds the last result with each member of the current ring
	// this node synced with, sorted by peer ID.
	Peers []AntiEntropyPeer `json:"peers"`
}

// AntiEntropyPeer is the result of the last anti-entropy sync with one peer.
type AntiEntropyPeer struct {
	Peer     string        `json:"peer"`
	At       time.Time     `json:"at"`       // when the sync ended
	Duration time.Duration `json:"duration"` // how long it took
	Result   SyncResult    `json:"result"`
	Err      string        `json:"err,omitempty"` // why it failed, or empty
}

// MembershipMetrics describe the ring as this node sees it.
type MembershipMetrics struct {
	Members   int    `json:"members"`   // nodes in the ring now
	Reachable int    `json:"reachable"` // of them, believed up now (this node included)
	Changes   uint64 `json:"changes"`   // membership changes this node was told of
}

// Metrics returns a snapshot of the Store's metrics. It takes a few short
// locks (hints, transfers, anti-entropy results, the transport's
// connection table) and is cheap enough for every scrape; it works after
// Close too.
func (s *Store) Metrics() Metrics {
	m := s.metrics
	out := Metrics{
		Node:         s.cfg.NodeID,
		Siblings:     m.siblings.snapshot(),
		ReadBytes:    m.readSize.snapshot(),
		WriteBytes:   m.putSize.snapshot(),
		Served:       map[string]uint64{},
		ServedErrors: m.servedErrors.Load(),
		Stats:        s.Stats(),
		Health:       s.Health(),
	}
	for o, name := range opNames {
		for c, outcome := range outcomeNames {
			h := m.latency[o][c].snapshot()
			if c == 0 || h.Count > 0 {
				out.Requests = append(out.Requests, RequestMetrics{Op: name, Outcome: outcome, Latency: h})
			}
		}
		for r, reason := range reasonNames {
			if n := m.quorum[o][r].Load(); n > 0 {
				out.QuorumFailures = append(out.QuorumFailures, QuorumFailures{Op: name, Reason: reason, Count: n})
			}
		}
	}
	for k := range m.served {
		if n := m.served[k].Load(); n > 0 {
			out.Served[servedName(kind(k))] += n
		}
	}
	if n := m.servedHints.Load(); n > 0 {
		out.Served["hint"] = n
		out.Served["replicate"] -= n
	}
	out.AntiEntropy = s.aeSnapshot()
	out.Membership = MembershipMetrics{Members: out.Health.Members, Reachable: out.Health.Reachable, Changes: m.memberChanges.Load()}
	if r, ok := s.cfg.Transport.(transport.StatsReporter); ok {
		ts := r.TransportStats()
		out.Transport = &ts
	}
	if r, ok := s.cfg.Storage.(storage.StatsReporter); ok {
		ss := r.StorageStats()
		out.Storage = &ss
	}
	return out
}

func (s *Store) aeSnapshot() AntiEntropyMetrics {
	a := &s.metrics.ae
	out := AntiEntropyMetrics{Rounds: a.rounds.Load(), Errors: a.errors.Load(), Duration: a.duration.snapshot()}
	members := s.ring.Load().members
	a.mu.Lock()
	defer a.mu.Unlock()
	out.Totals = a.totals
	for _, m := range members { // sorted by ID; peers gone from the ring are left out
		if p, ok := a.last[m.ID]; ok {
			out.Peers = append(out.Peers, p)
		}
	}
	return out
}

// servedName names a request kind in Metrics.Served.
func servedName(k kind) string {
	switch k {
	case kindAERanges, kindAEKeys, kindAEExchange:
		return "anti_entropy"
	}
	return k.String()
}

// Count returns the number of requests of op with outcome.
func (m Metrics) Count(op, outcome string) uint64 {
	for _, r := range m.Requests {
		if r.Op == op && r.Outcome == outcome {
			return r.Latency.Count
		}
	}
	return 0
}

// observeRead records a successful Get's state: its live siblings (0 for a
// missing or deleted key) and, when it found any, their bytes.
func (m *metrics) observeRead(st state) {
	n, size := 0, 0
	for _, sb := range st.Siblings {
		if !sb.Tombstone {
			n++
			size += len(sb.Value)
		}
	}
	m.siblings.observe(int64(n))
	if n > 0 {
		m.readSize.observe(int64(size))
	}
}

// countServed counts one request from a peer.
func (m *metrics) countServed(b body) {
	if k := b.kind(); int(k) < len(m.served) {
		m.served[k].Add(1)
	}
	if r, ok := b.(*replicateReq); ok && r.HintFor != "" {
		m.servedHints.Add(1)
	}
}
