// The serving side of the tcp transport: accepting connections and running handlers.
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

// acceptLoop accepts connections until the listener closes, starting a
// reader for each.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: back off rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
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
		c := newConn(t, nc, nc.RemoteAddr().String())
		if !t.track(c) {
			_ = nc.Close()
			return
		}
		go t.serveConn(c)
	}
}

// serveConn reads requests from an inbound connection and starts a handler
// goroutine for each, until the connection breaks or the transport closes.
// Handlers' ctx end with the connection.
func (t *Transport) serveConn(c *conn) {
	defer t.wg.Done()
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	if t.opts.TLS != nil {
		tc := tls.Server(c.nc, t.opts.TLS)
		hctx, hcancel := context.WithTimeout(ctx, t.opts.DialTimeout)
		err := tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			c.fail(fmt.Errorf("tls handshake: %w", err))
			return
		}
		c.useTLS(tc)
	}
	var hdr [frameOverhead]byte
	for {
		h, req, err := readFrame(c.br, &hdr, t.opts.MaxFrameSize)
		if err == nil && h.kind != kindRequest {
			err = fmt.Errorf("%w: frame of kind %d on an inbound connection", errProtocol, h.kind)
		}
		if err != nil {
			c.fail(err)
			return
		}
		hp := t.handler.Load()
		if hp == nil {
			if err := c.writeFrame(header{kind: kindNotServing, id: h.id}, nil); err != nil {
				c.fail(err)
				return
			}
			continue
		}
		t.wg.Add(1) // this goroutine is counted, so Close's Wait cannot have returned
		go t.handle(ctx, c, *hp, h, req)
	}
}

// handle runs one request's handler and writes its reply back on c.
func (t *Transport) handle(ctx context.Context, c *conn, h transport.Handler, hdr header, req []byte) {
	defer t.wg.Done()
	cancel := context.CancelFunc(func() {})
	if hdr.deadline > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(hdr.deadline)*time.Millisecond)
	}
	reply, err := h(ctx, req)
	cancel()
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
	if err := c.writeFrame(out, reply); err != nil {
		c.fail(err)
	}
}
