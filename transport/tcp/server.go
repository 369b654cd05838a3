// The serving side of the tcp transport: accepting connections within limits, and running handlers within in-flight caps.
package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

// Accept failures (out of file descriptors, say) back off from
// minAcceptBackoff, doubling to maxAcceptBackoff.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// acceptLoop accepts connections until the listener closes, starting a
// reader for each, and closing at once those beyond MaxConns.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: back off rather than spin, and
			// let the connections already open go on.
			t.counts.acceptErrors.Add(1)
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			t.log.Warn("tcp: accept failed", "local", t.addr, "err", err, "retry_in", backoff)
			timer := time.NewTimer(backoff)
			select {
			case <-timer.C:
			case <-t.done:
				timer.Stop()
				return
			}
			continue
		}
		backoff = 0
		t.counts.accepted.Add(1)
		c := newConn(t, nc, nc.RemoteAddr().String())
		c.slots = make(chan struct{}, t.opts.MaxConnInFlight)
		switch t.trackInbound(c) {
		case trackClosed:
			_ = nc.Close()
			return
		case trackFull:
			t.counts.refused.Add(1)
			_ = nc.Close()
			continue
		}
		go t.serveConn(c)
	}
}

// serveConn reads requests from an inbound connection and runs a handler
// for each on a worker (internal/workers), until the connection breaks or the transport closes.
// At MaxConnInFlight requests in flight on the connection, or
// MaxPeerInFlight across the peer's connections, it stops reading; at
// MaxInFlight across the transport it answers busy. Handlers' ctx end with
// the connection.
func (t *Transport) serveConn(c *conn) {
	defer t.wg.Done()
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	if err := t.handshake(ctx, c); err != nil {
		t.counts.handshakeFailures.Add(1)
		c.fail(err)
		return
	}
	ctx = transport.WithPeer(ctx, transport.Peer{Addr: c.addr, NodeID: c.nodeID})
	if c.nodeID != "" {
		c.peerSlots = t.peerLimits.join(c.nodeID)
		defer t.peerLimits.leave(c.nodeID)
	}
	if err := c.setReadDeadline(time.Now()); err != nil {
		c.fail(err)
		return
	}
	for {
		select {
		case c.slots <- struct{}{}: // released once the reply is written
		case <-t.done:
			// Close fails c too, but perhaps not yet: fail it before the
			// deferred cancel ends the handlers' contexts, so none of them
			// can answer with its cancellation first.
			c.fail(transport.ErrClosed)
			return
		}
		h, req, reserved, err := c.readFrame(t.budget)
		if err == nil && h.kind != kindRequest {
			t.budget.release(reserved)
			err = fmt.Errorf("%w: frame of kind %d on an inbound connection", errProtocol, h.kind)
		}
		if err != nil {
			switch {
			case errors.Is(err, errIdle):
				t.counts.idleClosed.Add(1)
			case errors.Is(err, errSlow), errors.Is(err, errBudget):
				t.counts.slowClosed.Add(1)
			}
			c.fail(err)
			return
		}
		if c.peerSlots != nil {
			// The peer's other connections have MaxPeerInFlight requests
			// in flight: wait, reading nothing more from this one.
			select {
			case c.peerSlots <- struct{}{}: // released once the reply is written
			default:
				t.counts.peerWaits.Add(1)
				select {
				case c.peerSlots <- struct{}{}:
				case <-t.done:
					t.budget.release(reserved)
					c.fail(transport.ErrClosed) // as above
					return
				}
			}
		}
		hp := t.handler.Load()
		if hp == nil || t.inFlight.Add(1) > int64(t.opts.MaxInFlight) {
			out := kindNotServing
			if hp != nil {
				t.inFlight.Add(-1)
				t.counts.busy.Add(1)
				out = kindBusy
			}
			t.budget.release(reserved)
			err := c.writeFrame(header{kind: out, id: h.id}, nil)
			c.releaseSlots()
			if err != nil {
				c.fail(err)
				return
			}
			continue
		}
		t.wg.Add(1) // this goroutine is counted, so Close's Wait cannot have returned
		t.handlers.Go(func() { t.handle(ctx, c, *hp, h, req, reserved) })
	}
}

// handshake runs the server side of TLS on c, within HandshakeTimeout, and
// names the peer with Options.Identify.
func (t *Transport) handshake(ctx context.Context, c *conn) error {
	if t.opts.TLS == nil {
		return nil
	}
	tc := tls.Server(c.nc, t.opts.TLS)
	hctx, cancel := context.WithTimeout(ctx, t.opts.HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	if t.opts.Identify != nil {
		if c.nodeID, err = t.opts.Identify(tc.ConnectionState()); err != nil {
			return fmt.Errorf("tls peer: %w", err)
		}
	}
	c.useTLS(tc)
	return nil
}

// handle runs one request's handler and writes its reply back on c, then
// gives back the request's budget and in-flight places.
func (t *Transport) handle(ctx context.Context, c *conn, h transport.Handler, hdr header, req []byte, reserved int64) {
	defer t.wg.Done()
	var dc *deadlineCtx
	if hdr.deadline > 0 {
		dc = newDeadlineCtx(ctx, time.Now().Add(time.Duration(hdr.deadline)*time.Millisecond))
		ctx = dc
	}
	reply, err := h(ctx, req)
	if dc != nil {
		dc.release()
	}
	t.budget.release(reserved)
	if t.isClosed() {
		// Closing: the caller learns it from the broken connection, not
		// from a reply the handler made of its cancelled context (Close
		// cancels the handlers as it tears the connections down, and a
		// reply could slip out in between).
		t.inFlight.Add(-1)
		c.releaseSlots()
		c.fail(transport.ErrClosed)
		return
	}
	out := header{kind: kindReply, id: hdr.id}
	switch {
	case err != nil:
		out.kind = kindError
		reply = []byte(err.Error())
		if len(reply) > t.opts.MaxFrameSize {
			reply = reply[:t.opts.MaxFrameSize]
		}
	case len(reply) > t.opts.MaxFrameSize:
		t.log.Warn("tcp: reply too large", "local", t.addr, "peer", c.addr, "size", len(reply), "limit", t.opts.MaxFrameSize)
		out.kind, reply = kindTooLarge, nil
	}
	werr := c.writeFrame(out, reply)
	t.inFlight.Add(-1)
	c.releaseSlots()
	if werr != nil {
		c.fail(werr)
	}
}
