// Change notification for Membership.Subscribe (§4.8): coalescing, never blocking.

package membership

import "sync"

// notifier fans a "something changed" signal out to subscribers. Each
// subscriber has a channel buffered for one value; a send that finds the
// buffer full is dropped, so pending changes coalesce and notify never
// blocks. The zero value is ready to use and safe for concurrent use.
type notifier struct {
	mu   sync.Mutex
	next uint64
	subs map[uint64]chan struct{}
}

// subscribe registers a subscriber. cancel is idempotent; it does not close
// the channel, so a receiver blocked on it simply stops being woken.
func (n *notifier) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs == nil {
		n.subs = make(map[uint64]chan struct{})
	}
	id := n.next
	n.next++
	n.subs[id] = ch
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.subs, id)
	}
}

// notify wakes every subscriber without blocking.
func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default: // a value is already pending; this change coalesces into it
		}
	}
}
