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
// of a get's CPU in its profile. deadlineCtx starts them on the first call
// of Done; until then Deadline and Err answer from the parent and the
// clock. Otherwise it behaves as the context.WithDeadline it replaces: Err
// is nil while Done is open and never changes once set, and release (the
// handler has returned) ends it, as that context's cancel function did.
// A handler that waits on Done pays one allocation more than before.
type deadlineCtx struct {
	parent   context.Context
	deadline time.Time

	mu       sync.Mutex
	armed    context.Context // once Done is asked: its channel's context
	cancel   context.CancelFunc
	err      error // the first non-nil Err, kept: Err never changes once set
	released bool  // the handler has returned
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

// Done returns a channel closed when the deadline passes, the parent is
// done or the handler has returned; the first call starts the timer.
func (c *deadlineCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed == nil {
		c.armed, c.cancel = context.WithDeadline(c.parent, c.deadline)
		if c.released || c.err != nil {
			c.cancel() // already over: the channel is closed from the start
		}
	}
	return c.armed.Done()
}

// Err is nil until the context is over and then stays the first reason it
// was: the parent's error, context.DeadlineExceeded, or context.Canceled
// once the handler has returned. Once Done has been asked, Err follows its
// channel: non-nil only after the channel is closed.
func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if c.armed != nil {
		c.err = c.armed.Err()
	} else {
		c.err = c.overLocked()
	}
	return c.err
}

// overLocked is why an unarmed c is over, or nil: the parent's error,
// else context.DeadlineExceeded once the deadline has passed.
func (c *deadlineCtx) overLocked() error {
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

// release ends the context as the handler returns, as the cancel function
// of context.WithDeadline would: Err becomes context.Canceled (unless it
// had a reason already), and Done is, or will be, closed. It stops the
// timer, if Done started one, so a goroutine the handler left behind holds
// nothing past the handler's return.
func (c *deadlineCtx) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
	switch {
	case c.cancel != nil:
		c.cancel()
	case c.err == nil:
		c.err = c.overLocked()
		if c.err == nil {
			c.err = context.Canceled
		}
	}
}
