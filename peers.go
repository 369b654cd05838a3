// peers.go: §4.6 calls to peers and the node's own failure detector: "node A
// may consider node B failed if node B does not respond to node A's
// messages", whatever the membership's failure detector says.
package dynamo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

// peerHealth remembers the peers whose calls recently failed for want of an
// answer (a timeout or an unreachable address; not an error the peer sent).
// Such a peer is treated as unreachable until its backoff passes; the next
// request that needs it then probes it, and one answered call clears it.
// The backoff starts at the replica timeout and doubles up to 16 times that.
//
// Membership and this detector are combined in Store.reachable: a peer is up
// only when both say so. With a static member list (Config.Members) this is
// the only failure detector; with gossip it closes the seconds between a
// silent failure and memberlist's verdict, and it covers partitions that
// gossip does not see (a one-way block on the data port).
//
// Verdicts take effect from the instant after the call that led to them:
// what calls observe at one instant is applied together, in a fixed order,
// before the first read at a later instant. So the outcome never depends on
// which of two goroutines finishing at the same instant records first, and
// simulations in fake time replay.
type peerHealth struct {
	mu      sync.Mutex
	down    map[string]*peerDown
	pending []healthEvent
	// earliest is the time of the earliest pending event, so a read at an
	// instant with nothing to apply costs no sort; failing counts the
	// pending failures per peer and failKeys dedupes them.
	earliest time.Time
	failing  map[string]int
	failKeys map[failKey]struct{}
}

type failKey struct {
	id   string
	at   time.Time
	base time.Duration
}

type peerDown struct {
	at    time.Time // when the verdict was reached
	until time.Time
	delay time.Duration
	// fdDown is set once the membership also reported the peer unreachable:
	// when it reports the peer back, the peer starts afresh.
	fdDown bool
}

// healthEvent is one observation, applied in order of (at, kind, id,
// started).
type healthEvent struct {
	at      time.Time
	kind    int // eventFailed, eventAnswered or eventMembership
	id      string
	started time.Time       // eventAnswered: when the answered call began
	base    time.Duration   // eventFailed: the first backoff
	view    map[string]bool // eventMembership: the membership's view of every member
}

const (
	eventFailed = iota
	eventAnswered
	eventMembership
)

// failed records, at now, a call to id that got no answer.
func (h *peerHealth) failed(id string, now time.Time, base time.Duration) {
	h.record(healthEvent{at: now, kind: eventFailed, id: id, base: base})
}

// ok records, at now, that a call to id made at started was answered. It
// clears only a verdict reached before the call began.
func (h *peerHealth) ok(id string, started, now time.Time) {
	h.record(healthEvent{at: now, kind: eventAnswered, id: id, started: started})
}

// membershipChanged records, at now, the membership's view of every member
// (reachable, asked for each of members): a peer the membership reported
// down and then back up starts afresh.
func (h *peerHealth) membershipChanged(members []Member, reachable func(id string) bool, now time.Time) {
	view := make(map[string]bool, len(members))
	for _, m := range members {
		view[m.ID] = reachable(m.ID)
	}
	h.record(healthEvent{at: now, kind: eventMembership, view: view})
}

func (h *peerHealth) record(e healthEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch e.kind {
	case eventAnswered:
		// An answer from a peer with no verdict and no failure pending
		// changes nothing, in whatever order it is applied: the common
		// case costs no queueing.
		if h.down[e.id] == nil && h.failing[e.id] == 0 {
			return
		}
	case eventFailed:
		k := failKey{e.id, e.at, e.base}
		if _, dup := h.failKeys[k]; dup {
			return // the same observation twice applies as once
		}
		if h.failKeys == nil {
			h.failKeys, h.failing = map[failKey]struct{}{}, map[string]int{}
		}
		h.failKeys[k] = struct{}{}
		h.failing[e.id]++
	}
	if len(h.pending) == 0 || e.at.Before(h.earliest) {
		h.earliest = e.at
	}
	h.pending = append(h.pending, e)
	if len(h.pending) > 4096 {
		h.settle(e.at)
	}
}

// settle applies the observations made before now, in order. Callers hold mu.
func (h *peerHealth) settle(now time.Time) {
	if len(h.pending) == 0 || !h.earliest.Before(now) {
		return
	}
	slices.SortFunc(h.pending, func(a, b healthEvent) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.kind, b.kind), cmp.Compare(a.id, b.id),
			a.started.Compare(b.started), cmp.Compare(a.base, b.base))
	})
	n := 0
	for n < len(h.pending) && h.pending[n].at.Before(now) {
		e := h.pending[n]
		if e.kind == eventFailed {
			delete(h.failKeys, failKey{e.id, e.at, e.base})
			if h.failing[e.id]--; h.failing[e.id] <= 0 {
				delete(h.failing, e.id)
			}
		}
		h.apply(e)
		n++
	}
	h.pending = slices.Delete(h.pending, 0, n)
	if len(h.pending) > 0 {
		h.earliest = h.pending[0].at
	}
}

func (h *peerHealth) apply(e healthEvent) {
	if h.down == nil {
		h.down = map[string]*peerDown{}
	}
	d := h.down[e.id]
	switch e.kind {
	case eventFailed:
		if d == nil {
			d = &peerDown{}
			h.down[e.id] = d
		}
		if e.at.Before(d.until) {
			return // calls in flight when it was marked: one verdict per backoff
		}
		d.at = e.at
		d.delay = min(max(2*d.delay, e.base), 16*e.base)
		d.until = e.at.Add(jitter(e.id, d.delay))
	case eventAnswered:
		if d != nil && d.at.Before(e.started) {
			delete(h.down, e.id)
		}
	case eventMembership:
		for id, d := range h.down {
			switch up := e.view[id]; {
			case !up:
				d.fdDown = true
			case d.fdDown:
				delete(h.down, id)
			}
		}
	}
}

// suspect reports whether id is in its backoff at now.
func (h *peerHealth) suspect(id string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settle(now)
	d := h.down[id]
	return d != nil && now.Before(d.until)
}

// suspects returns the peers in their backoff at now.
func (h *peerHealth) suspects(now time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settle(now)
	var out []string
	for id, d := range h.down {
		if now.Before(d.until) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// jitter spreads d by up to a quarter, the same way for the same peer and
// delay (no shared random source: simulations replay).
func jitter(id string, d time.Duration) time.Duration {
	q := int64(d / 4)
	if q <= 0 {
		return d
	}
	h := mix64(hashString(id) ^ uint64(d))
	return d - time.Duration(q) + time.Duration(int64(h%uint64(2*q)))
}

var errUnreachable = errors.New("unreachable (failure detector)")

// reachable reports whether id is up by both the membership's failure
// detector and this node's own.
func (s *Store) reachable(id string) bool {
	return id == s.cfg.NodeID || (s.members.Reachable(id) && !s.health.suspect(id, time.Now()))
}

// encode returns the wire form of b from this node.
func (s *Store) encode(b body) []byte { return encodeMessage(s.wireCluster, s.cfg.NodeID, b) }

// call sends an encoded request to m with the replica timeout and decodes the
// reply. An errorReply becomes the error it carries.
func (s *Store) call(ctx context.Context, m Member, req []byte) (*envelope, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ReplicaTimeout)
	defer cancel()
	return s.callObserved(ctx, cctx, m, req)
}

// callObserved makes the call with callCtx, a context derived from ctx, and
// feeds the outcome to the node's own failure detector: an answer clears m, a
// call that got none while ctx (the caller's own deadline) still ran marks it
// down for a backoff.
func (s *Store) callObserved(ctx, callCtx context.Context, m Member, req []byte) (*envelope, error) {
	started := time.Now()
	raw, err := s.cfg.Transport.Call(callCtx, m.Addr, req)
	if err != nil {
		if errors.Is(err, transport.ErrClosed) {
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		// A peer that answered (with an error, or busy) is up; one that did
		// not, while the caller still waited, is backed off.
		if callerWaiting(ctx) && !errors.Is(err, transport.ErrFrameTooLarge) && !errors.Is(err, transport.ErrRemote) && !errors.Is(err, transport.ErrBusy) {
			s.health.failed(m.ID, time.Now(), s.cfg.ReplicaTimeout)
		}
		return nil, err
	}
	s.health.ok(m.ID, started, time.Now())
	return s.reply(m, raw)
}

// reply decodes m's reply raw; an errorReply becomes the error it carries.
func (s *Store) reply(m Member, raw []byte) (*envelope, error) {
	resp, err := decodeMessage(raw, s.wire)
	if err != nil {
		return nil, fmt.Errorf("reply from %s: %w", m.ID, err)
	}
	if e, ok := resp.Body.(*errorReply); ok {
		return nil, errorFromReply(e)
	}
	return resp, nil
}

// errorFromReply rebuilds the error a peer sent.
func errorFromReply(e *errorReply) error {
	if e.Code == codeWriteQuorum {
		return &QuorumError{Op: "put", Need: e.Need, Got: e.Got, PerReplica: map[string]error{"coordinator": errors.New(e.Msg)}}
	}
	if sentinel, ok := codeErrors[e.Code]; ok {
		return fmt.Errorf("%w (remote: %s)", sentinel, e.Msg)
	}
	return fmt.Errorf("%w: %s", transport.ErrRemote, e.Msg)
}

// callerWaiting reports whether ctx, a caller's context, is still waiting:
// not ended and not at its deadline. A call that fails at the instant its
// caller's deadline passes is the caller's timeout, not the peer's silence,
// whichever of the two timers fired first.
func callerWaiting(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	dl, ok := ctx.Deadline()
	return !ok || time.Now().Before(dl)
}
