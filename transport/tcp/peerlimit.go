// The per-peer bound on inbound requests in flight (Options.MaxPeerInFlight), across all of one peer's connections.
package tcp

import "sync"

// peerLimits holds one semaphore per peer NodeID with a connection open.
// Safe for concurrent use; the zero value is not usable (see newPeerLimits).
type peerLimits struct {
	max int
	mu  sync.Mutex
	m   map[string]*peerLimit
}

// peerLimit is one peer's semaphore and how many of its connections use it.
type peerLimit struct {
	slots chan struct{} // one token per request being handled or replied to
	conns int
}

func newPeerLimits(max int) *peerLimits {
	return &peerLimits{max: max, m: make(map[string]*peerLimit)}
}

// join returns the semaphore of peer id for a new connection of it.
func (p *peerLimits) join(id string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.m[id]
	if l == nil {
		l = &peerLimit{slots: make(chan struct{}, p.max)}
		p.m[id] = l
	}
	l.conns++
	return l.slots
}

// leave drops a connection of peer id, and the peer's semaphore with its
// last connection. Handlers still running give their tokens back to the
// semaphore they took them from.
func (p *peerLimits) leave(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.m[id]; l != nil {
		if l.conns--; l.conns == 0 {
			delete(p.m, id)
		}
	}
}
