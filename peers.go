// peers.go: §4.6 the node's own failure detector: "node A may consider node B
// failed if node B does not respond to node A's messages", whatever the
// membership's failure detector says.
package dynamo

import (
	"sync"
	"time"
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
