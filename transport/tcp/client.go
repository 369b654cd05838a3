// The calling side of the tcp transport: Call, the per-peer connection pool and dialling.
package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

// peer is the pool of connections to one address. Each slot holds a live
// conn, a dial in progress, or nothing; calls spread over the slots in turn.
type peer struct {
	mu    sync.Mutex
	next  int
	slots []slot
}

type slot struct {
	c    *conn
	dial *dialing
}

// dialing is one dial in progress; done closes when c or err is set.
type dialing struct {
	done   chan struct{}
	c      *conn
	err    error
	ctxErr bool // the dial failed only because its caller's ctx ended
}

var resultChans = sync.Pool{New: func() any { return make(chan result, 1) }}

// Call sends req to the transport listening at addr and waits for its reply.
// Errors match transport.ErrUnreachable (no connection, or it broke),
// transport.ErrFrameTooLarge, transport.ErrClosed, transport.ErrRemote,
// transport.ErrBusy (the peer refused it unhandled), or the ctx error.
func (t *Transport) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	if len(req) > t.opts.MaxFrameSize {
		return nil, fmt.Errorf("tcp: call %s: request of %d bytes exceeds the limit of %d: %w",
			addr, len(req), t.opts.MaxFrameSize, transport.ErrFrameTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tcp: call %s: %w", addr, err)
	}
	deadline, _ := ctx.Deadline()
	// A conn found broken before anything was written to it is safe to
	// replace, once or twice; past that, report the peer unreachable.
	for attempt := 1; ; attempt++ {
		c, err := t.getConn(ctx, addr, len(req) >= bulkFrame)
		if err != nil {
			return nil, err
		}
		ch := resultChans.Get().(chan result)
		id, ok := c.register(ch)
		if !ok {
			// Broken, and perhaps not out of the pool yet: the next
			// attempt must not find it there again.
			c.leavePool()
			resultChans.Put(ch)
			if attempt < 3 {
				continue
			}
			return nil, fmt.Errorf("tcp: call %s: connection broken: %w", addr, transport.ErrUnreachable)
		}
		h := header{kind: kindRequest, id: id}
		if !deadline.IsZero() {
			// Measured after dialling, so the handler gets what is left.
			left := time.Until(deadline)
			if left <= 0 {
				if c.unregister(id) {
					resultChans.Put(ch)
				}
				return nil, fmt.Errorf("tcp: call %s: %w", addr, context.DeadlineExceeded)
			}
			h.deadline = deadlineMs(left)
		}
		if err := c.writeFrame(h, req); err != nil {
			c.fail(err) // delivers the error to ch, along with every other call on c
		}
		return t.await(ctx, c, addr, id, ch, deadline)
	}
}

// await waits for the reply to call id on c, and turns it into Call's result.
func (t *Transport) await(ctx context.Context, c *conn, addr string, id uint64, ch chan result, deadline time.Time) ([]byte, error) {
	var r result
	select {
	case r = <-ch:
		resultChans.Put(ch)
	case <-ctx.Done():
		if c.unregister(id) {
			resultChans.Put(ch)
		}
		return nil, fmt.Errorf("tcp: call %s: %w", addr, ctx.Err())
	case <-t.done:
		c.unregister(id)
		return nil, transport.ErrClosed
	}
	switch {
	case r.err != nil:
		if t.isClosed() {
			return nil, transport.ErrClosed
		}
		return nil, r.err
	case r.kind == kindReply:
		return r.payload, nil
	case r.kind == kindError:
		// A handler that failed as the deadline passed most likely failed
		// because of it: report the caller's own error.
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("tcp: call %s: %w", addr, err)
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, fmt.Errorf("tcp: call %s: %w", addr, context.DeadlineExceeded)
		}
		return nil, &transport.RemoteError{Addr: addr, Msg: string(r.payload)}
	case r.kind == kindTooLarge:
		return nil, fmt.Errorf("tcp: call %s: reply exceeds the peer's limit: %w", addr, transport.ErrFrameTooLarge)
	case r.kind == kindNotServing:
		return nil, fmt.Errorf("tcp: call %s: peer not serving yet: %w", addr, transport.ErrUnreachable)
	case r.kind == kindBusy:
		return nil, fmt.Errorf("tcp: call %s: %w", addr, transport.ErrBusy)
	default:
		err := fmt.Errorf("%w: reply of unknown kind %d", errProtocol, r.kind)
		c.fail(err)
		return nil, fmt.Errorf("tcp: call %s: %w: %w", addr, transport.ErrUnreachable, err)
	}
}

// bulkFrame is the request size from which a call goes on the pool's last
// connection, apart from the small ones.
const bulkFrame = 64 << 10

// getConn returns a live connection to addr, dialling one if the slot it
// picks is empty. Callers that find a dial in progress wait for it. With two
// or more slots, bulk requests (anti-entropy pages, transfers, hint
// batches) take the last one, so a small call never waits behind megabytes
// on its connection, and small ones take the others in turn. Small calls
// kept together on one connection share its writes: the peer benchmark's
// CPU per operation fell by 4 to 10% against spreading them over two.
func (t *Transport) getConn(ctx context.Context, addr string, bulk bool) (*conn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, transport.ErrClosed
	}
	p := t.peers[addr]
	if p == nil {
		p = &peer{slots: make([]slot, t.opts.ConnsPerPeer)}
		t.peers[addr] = p
	}
	t.mu.Unlock()

	p.mu.Lock()
	i := len(p.slots) - 1
	if small := len(p.slots) - 1; !bulk && small > 0 {
		i = p.next % small
		p.next = (p.next + 1) % small
	}
	for {
		s := &p.slots[i]
		if s.c != nil {
			c := s.c
			p.mu.Unlock()
			return c, nil
		}
		if d := s.dial; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("tcp: call %s: %w", addr, ctx.Err())
			case <-t.done:
				return nil, transport.ErrClosed
			}
			if d.err != nil && !d.ctxErr {
				return nil, d.err
			}
			p.mu.Lock()
			continue // the dial succeeded, or failed for its caller's reasons only
		}
		d := &dialing{done: make(chan struct{})}
		s.dial = d
		p.mu.Unlock()

		d.c, d.err = t.dial(ctx, addr, p, i)
		d.ctxErr = d.err != nil && ctx.Err() != nil

		p.mu.Lock()
		s.dial = nil
		if d.err == nil {
			s.c = d.c
		}
		close(d.done)
		p.mu.Unlock()
		if d.err != nil {
			return nil, d.err
		}
		go d.c.readReplies() // counted in t.wg by dial
		return d.c, nil
	}
}

// dial connects to addr, within ctx and Options.DialTimeout, for slot i of
// p's pool, and registers the new conn with one goroutine counted for its
// reader.
func (t *Transport) dial(ctx context.Context, addr string, p *peer, i int) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel) // Close aborts dials
	defer stop()

	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", addr)
	var tc *tls.Conn
	if err == nil && t.opts.TLS != nil {
		tc = tls.Client(nc, t.clientTLS(addr))
		if err = tc.HandshakeContext(dctx); err != nil {
			_ = nc.Close()
		}
	}
	if err != nil {
		switch {
		case t.isClosed():
			return nil, transport.ErrClosed
		case ctx.Err() != nil:
			return nil, fmt.Errorf("tcp: call %s: dial: %w", addr, ctx.Err())
		}
		return nil, fmt.Errorf("tcp: dial %s: %w: %w", addr, transport.ErrUnreachable, err)
	}
	c := newConn(t, nc, addr)
	c.peer, c.slot = p, i
	if tc != nil {
		c.useTLS(tc)
	}
	if !t.track(c) {
		_ = nc.Close()
		return nil, transport.ErrClosed
	}
	return c, nil
}

// clientTLS returns the TLS config for dialling addr, naming the server after
// addr's host when the config names none.
func (t *Transport) clientTLS(addr string) *tls.Config {
	cfg := t.opts.TLS
	if cfg.ServerName != "" || cfg.InsecureSkipVerify {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ServerName = host
	return cfg
}

// Redial makes later calls use new connections, with a new TLS handshake:
// after a rotation of Options.TLS's credentials, say. Connections already
// open carry the calls in flight on them to their end, then close.
func (t *Transport) Redial() {
	var out []*conn
	t.mu.Lock()
	for c := range t.conns {
		if c.peer != nil {
			out = append(out, c)
		}
	}
	t.mu.Unlock()
	for _, c := range out {
		c.retired.Store(true)
		p := c.peer
		p.mu.Lock()
		if p.slots[c.slot].c == c {
			p.slots[c.slot].c = nil
		}
		p.mu.Unlock()
		c.closeIfIdle(math.MaxInt64)
	}
}

func isProtocolError(err error) bool { return errors.Is(err, errProtocol) }
