// budget: the per-node bound on request payload bytes held at once (Options.ReadBudget).
package tcp

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

// errBudget closes a connection whose frame waited for the read budget
// until its deadline.
var errBudget = errors.New("tcp: read budget spent until the frame's deadline")

// budget counts bytes reserved against a maximum. A nil *budget reserves
// nothing and never runs out. Safe for concurrent use.
type budget struct {
	max  int64
	used atomic.Int64

	waiters atomic.Int32 // readers waiting in reserve
	mu      sync.Mutex
	wake    chan struct{} // closed, and replaced, by a release while waiters > 0
}

func newBudget(max int64) *budget {
	return &budget{max: max, wake: make(chan struct{})}
}

// tryReserve reserves n bytes if they are free. It never takes more than
// it keeps, so a failure never makes another reserve fail.
func (b *budget) tryReserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// reserve reserves n bytes, waiting for releases until deadline, or until
// done closes.
func (b *budget) reserve(n int64, deadline time.Time, done <-chan struct{}) error {
	if b == nil || n == 0 || b.tryReserve(n) {
		return nil
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	b.waiters.Add(1)
	defer b.waiters.Add(-1)
	for {
		// Take the channel before trying, so a release in between wakes us.
		b.mu.Lock()
		wake := b.wake
		b.mu.Unlock()
		if b.tryReserve(n) {
			return nil
		}
		select {
		case <-wake:
		case <-timer.C:
			return errBudget
		case <-done:
			return transport.ErrClosed
		}
	}
}

// release returns n reserved bytes.
func (b *budget) release(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.used.Add(-n)
	if b.waiters.Load() > 0 {
		b.mu.Lock()
		close(b.wake)
		b.wake = make(chan struct{})
		b.mu.Unlock()
	}
}

// reserved is the number of bytes reserved now.
func (b *budget) reserved() int64 { return b.used.Load() }
