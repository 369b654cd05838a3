// peers.go: §4.6 calls to peers and the node's own failure detector: "node A
// may consider node B failed if node B does not respond to node A's
// messages", whatever the membership's failure detector says.
package dynamo

import (
	"context"
	"errors"
	"fmt"
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
type peerHealth struct {
	mu   sync.Mutex
	down map[string]*peerDown
}

type peerDown struct {
	until time.Time
	delay time.Duration
	// fdDown is set once the membership also reported the peer unreachable:
	// when it reports the peer back, the peer starts afresh.
	fdDown bool
}

// failed records a call to id that got no answer.
func (h *peerHealth) failed(id string, now time.Time, base time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down == nil {
		h.down = map[string]*peerDown{}
	}
	d := h.down[id]
	if d == nil {
		d = &peerDown{}
		h.down[id] = d
	}
	if now.Before(d.until) {
		return // calls in flight when it was marked: one verdict per backoff
	}
	d.delay = min(max(2*d.delay, base), 16*base)
	d.until = now.Add(jitter(id, d.delay))
}

// ok records an answered call from id.
func (h *peerHealth) ok(id string) {
	h.mu.Lock()
	if h.down != nil {
		delete(h.down, id)
	}
	h.mu.Unlock()
}

// suspect reports whether id is in its backoff at now.
func (h *peerHealth) suspect(id string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.down[id]
	return d != nil && now.Before(d.until)
}

// membershipChanged lets the peers the membership reports back up after it
// reported them down start afresh. reachable is the membership's view.
func (h *peerHealth) membershipChanged(reachable func(id string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, d := range h.down {
		switch {
		case !reachable(id):
			d.fdDown = true
		case d.fdDown:
			delete(h.down, id)
		}
	}
}

// suspects returns the peers in their backoff at now.
func (h *peerHealth) suspects(now time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, d := range h.down {
		if now.Before(d.until) {
			out = append(out, id)
		}
	}
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
	raw, err := s.cfg.Transport.Call(callCtx, m.Addr, req)
	if err != nil {
		if errors.Is(err, transport.ErrClosed) {
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		// A peer that answered (with an error, or busy) is up; one that did
		// not, while the caller still waited, is backed off.
		if ctx.Err() == nil && !errors.Is(err, transport.ErrFrameTooLarge) && !errors.Is(err, transport.ErrRemote) && !errors.Is(err, transport.ErrBusy) {
			s.health.failed(m.ID, time.Now(), s.cfg.ReplicaTimeout)
		}
		return nil, err
	}
	s.health.ok(m.ID)
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
