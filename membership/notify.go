// Change notification for Membership.Subscribe (§4.8): coalescing, never blocking.

package membership

import "sync"

// Notifier fans a "something changed" signal out to subscribers, the way
// Membership.Subscribe promises: each subscriber has a channel buffered for
// one value, and a send that finds the buffer full is dropped, so pending
// changes coalesce and Notify never blocks. Implementations of Membership
// (Static, gossip.Gossip) use it for Subscribe.
//
// The zero value is ready to use. It is safe for concurrent use.
type Notifier struct {
	mu   sync.Mutex
	next uint64
	subs map[uint64]chan struct{}
}

// Subscribe registers a subscriber. cancel is idempotent; it does not close
// the channel, so a receiver blocked on it simply stops being woken.
func (n *Notifier) Subscribe() (changes <-chan struct{}, cancel func()) {
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

// Notify wakes every subscriber without blocking.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default: // a value is already pending; this change coalesces into it
		}
	}
}
