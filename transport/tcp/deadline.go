// deadlineCtx: a request's deadline handed to its handler without a timer until the handler waits on it.
package tcp

import (
	"context"
	"sync"
	"time"
)

// deadlineCtx is the context a handler runs under: the connection's, with
// the deadline the caller sent. Most handlers never wait on Done (a replica
// merging a write, or reading a key, returns without blocking on the
// caller), so the timer that context.WithDeadline starts at once, and its
// registration with the connection's context, were wasted on them: 2 to 3%
// of a put's and a get's CPU in the peer benchmark. deadlineCtx starts them
// on the first call of Done. Deadline and Err answer from the clock until
// then.
type deadlineCtx struct {
	parent   context.Context
	deadline time.Time

	mu     sync.Mutex
	armed  context.Context // context.WithDeadline(parent, deadline), once Done asked
	cancel context.CancelFunc
}

func newDeadlineCtx(parent context.Context, deadline time.Time) *deadlineCtx {
	return &deadlineCtx{parent: parent, deadline: deadline}
}

// Deadline returns the earlier of the request's and the parent's.
func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done returns a channel closed when the deadline passes or the parent is
// done; the first call starts the timer.
func (c *deadlineCtx) Done() <-chan struct{} {
	return c.arm().Done()
}

func (c *deadlineCtx) arm() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed == nil {
		c.armed, c.cancel = context.WithDeadline(c.parent, c.deadline)
	}
	return c.armed
}

// Err is the parent's error, else context.DeadlineExceeded once the
// deadline has passed, else nil.
func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	armed := c.armed
	c.mu.Unlock()
	if armed != nil {
		if err := armed.Err(); err != nil {
			return err
		}
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value looks key up in the armed context once there is one (so that a
// context derived from c finds its cancellation there), else in the parent.
func (c *deadlineCtx) Value(key any) any {
	c.mu.Lock()
	armed := c.armed
	c.mu.Unlock()
	if armed != nil {
		return armed.Value(key)
	}
	return c.parent.Value(key)
}

// release stops the timer, if Done started one. The handler has returned.
func (c *deadlineCtx) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
}
