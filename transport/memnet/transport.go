// Transport is one node's endpoint on an in-memory Network: Call, Serve and Close.
package memnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

var (
	_ transport.Transport    = (*Transport)(nil)
	_ transport.FrameLimiter = (*Transport)(nil)
)

// errLost is wrapped, with transport.ErrUnreachable and the ctx error, by
// calls whose request or reply the network lost.
var errLost = errors.New("message lost")

// Transport is a node's endpoint on a Network, created by Network.Listen.
// It implements transport.Transport and is safe for concurrent use.
type Transport struct {
	net  *Network
	addr string

	ctx    context.Context // parent of every handler ctx; cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed by Close, before handlers are cancelled

	mu      sync.Mutex
	closed  bool
	handler transport.Handler
	wg      sync.WaitGroup // running handlers

	closeOnce sync.Once
}

// result is a handler's outcome as the caller sees it.
type result struct {
	reply []byte
	err   error
}

func newTransport(n *Network, addr string) *Transport {
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{net: n, addr: addr, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// Addr returns the address the transport listens on.
func (t *Transport) Addr() string { return t.addr }

// MaxFrameSize returns the largest request or reply the network carries
// (transport.FrameLimiter).
func (t *Transport) MaxFrameSize() int { return t.net.maxFrame }

// Serve starts delivering inbound requests to h. It returns
// transport.ErrClosed after Close, and an error if called twice.
func (t *Transport) Serve(h transport.Handler) error {
	if h == nil {
		return fmt.Errorf("memnet: serve %s: nil handler", t.addr)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return transport.ErrClosed
	case t.handler != nil:
		return fmt.Errorf("memnet: serve %s: already serving", t.addr)
	}
	t.handler = h
	return nil
}

// Call sends a copy of req to the handler at addr and returns a copy of its
// reply. See the package doc for how faults change the outcome.
func (t *Transport) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	select {
	case <-t.done:
		return nil, transport.ErrClosed
	default:
	}
	if len(req) > t.net.maxFrame {
		return nil, fmt.Errorf("memnet: call %s: request of %d bytes exceeds the limit of %d: %w",
			addr, len(req), t.net.maxFrame, transport.ErrFrameTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memnet: call %s: %w", addr, err)
	}
	p := t.net.route(t.addr, addr)
	if p.lost {
		return nil, t.waitLost(ctx, addr)
	}
	if p.peer == nil {
		return nil, fmt.Errorf("memnet: call %s: nothing listens there: %w", addr, transport.ErrUnreachable)
	}
	if p.delay > 0 {
		timer := time.NewTimer(p.delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("memnet: call %s: %w", addr, ctx.Err())
		case <-t.done:
			timer.Stop()
			return nil, transport.ErrClosed
		}
	}
	deadline, _ := ctx.Deadline()
	ch, err := p.peer.deliver(t.addr, req, deadline, p.duplicate)
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if t.net.replyLost(addr, t.addr) {
			return nil, t.waitLost(ctx, addr)
		}
		if r.err != nil {
			// The handler most likely failed because the deadline it shares
			// with the caller passed: report the caller's own error. The
			// caller's ctx may not have noticed yet, so look at the clock too.
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("memnet: call %s: %w", addr, err)
			}
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				return nil, fmt.Errorf("memnet: call %s: %w", addr, context.DeadlineExceeded)
			}
		}
		return r.reply, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("memnet: call %s: %w", addr, ctx.Err())
	case <-t.done:
		return nil, transport.ErrClosed
	case <-p.peer.done:
		return nil, fmt.Errorf("memnet: call %s: peer closed: %w", addr, transport.ErrUnreachable)
	}
}

// waitLost blocks like a call whose packet vanished: until ctx ends or the
// caller's transport closes.
func (t *Transport) waitLost(ctx context.Context, addr string) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("memnet: call %s: %w: %w: %w", addr, errLost, transport.ErrUnreachable, ctx.Err())
	case <-t.done:
		return transport.ErrClosed
	}
}

// deliver starts the handler on a copy of req (twice if duplicate) and
// returns the channel that receives the first handler's result.
func (t *Transport) deliver(from string, req []byte, deadline time.Time, duplicate bool) (<-chan result, error) {
	first := bytes.Clone(req)
	var second []byte
	if duplicate {
		second = bytes.Clone(req)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.handler == nil {
		t.net.count(func(s *Stats) { s.Refused++ })
		why := "peer closed"
		if !t.closed {
			why = "peer not serving"
		}
		return nil, fmt.Errorf("memnet: call %s from %s: %s: %w", t.addr, from, why, transport.ErrUnreachable)
	}
	ch := make(chan result, 1)
	t.wg.Add(1)
	go t.handle(t.handler, first, deadline, ch)
	if duplicate {
		t.wg.Add(1)
		go t.handle(t.handler, second, deadline, nil)
	}
	t.net.count(func(s *Stats) {
		s.Delivered++
		if duplicate {
			s.Duplicated++
		}
	})
	return ch, nil
}

// handle runs h and sends its outcome on ch, unless ch is nil (a duplicate)
// or the transport closed meanwhile (the reply dies with the connection).
func (t *Transport) handle(h transport.Handler, req []byte, deadline time.Time, ch chan<- result) {
	defer t.wg.Done()
	ctx, cancel := t.ctx, context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(t.ctx, deadline)
	}
	reply, err := h(ctx, req)
	cancel()
	if ch == nil {
		return
	}
	select {
	case <-t.done:
		return
	default:
	}
	var r result
	switch {
	case err != nil:
		r.err = &transport.RemoteError{Addr: t.addr, Msg: err.Error()}
	case len(reply) > t.net.maxFrame:
		r.err = fmt.Errorf("memnet: reply from %s of %d bytes exceeds the limit of %d: %w",
			t.addr, len(reply), t.net.maxFrame, transport.ErrFrameTooLarge)
	default:
		r.reply = bytes.Clone(reply)
	}
	ch <- r
}

// Close frees the address, makes the transport's calls in flight return
// transport.ErrClosed and calls to it fail with transport.ErrUnreachable,
// cancels its handlers' ctx and waits for them to return. It is idempotent.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.done)
		t.mu.Unlock()
		t.net.remove(t)
		t.cancel()
		t.wg.Wait()
	})
	return nil
}
