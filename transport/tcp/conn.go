// conn is one TCP connection: batched frame writes, and the calls in flight on an outbound one.
package tcp

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

const bufSize = 32 << 10

// result is what an outbound call receives from its connection: a frame, or
// the error that broke the connection.
type result struct {
	kind    kind
	payload []byte
	err     error
}

// conn is a connection in either direction. Outbound connections carry calls
// and read replies; inbound ones read requests and write replies.
type conn struct {
	t    *Transport
	nc   net.Conn // the TCP connection; closing it unblocks every reader and writer
	rw   net.Conn // what frames go through: nc, or TLS over it
	addr string   // the peer: the address dialled, or the remote address
	br   *bufio.Reader

	// peer and slot locate an outbound conn in its pool; peer is nil inbound.
	peer *peer
	slot int

	// Writers queue on wmu. writers counts those queued or writing, so the
	// last one out flushes everyone's frames with one syscall.
	writers atomic.Int32
	wmu     sync.Mutex
	bw      *bufio.Writer
	whdr    [frameOverhead]byte
	werr    error     // sticky write error
	renew   time.Time // when the write deadline needs pushing back

	mu      sync.Mutex
	pending map[uint64]chan<- result // outbound calls awaiting replies, by id
	nextID  uint64
	err     error // why the conn broke; set once
}

func newConn(t *Transport, nc net.Conn, addr string) *conn {
	return &conn{
		t:       t,
		nc:      nc,
		rw:      nc,
		addr:    addr,
		br:      bufio.NewReaderSize(nc, bufSize),
		bw:      bufio.NewWriterSize(nc, bufSize),
		pending: make(map[uint64]chan<- result),
	}
}

// useTLS puts tc, built over c.nc, between the frames and the socket.
func (c *conn) useTLS(tc *tls.Conn) {
	c.rw = tc
	c.br.Reset(tc)
	c.bw.Reset(tc)
}

// writeFrame writes one frame. Frames from concurrent writers are buffered and
// flushed by whichever writer finds no one queued behind it.
func (c *conn) writeFrame(h header, payload []byte) error {
	c.writers.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := c.werr
	if err == nil {
		if wt := c.t.opts.WriteTimeout; wt > 0 {
			// Keep at least half of WriteTimeout ahead of every write without
			// resetting the deadline on each frame.
			if now := time.Now(); now.After(c.renew) {
				err = c.nc.SetWriteDeadline(now.Add(wt))
				c.renew = now.Add(wt / 2)
			}
		}
	}
	if err == nil {
		putHeader(c.whdr[:], h, len(payload))
		if _, err = c.bw.Write(c.whdr[:]); err == nil {
			_, err = c.bw.Write(payload)
		}
	}
	if c.writers.Add(-1) == 0 && err == nil {
		err = c.bw.Flush()
	}
	if err != nil && c.werr == nil {
		c.werr = err
	}
	return err
}

// register reserves an id for a call whose reply goes to ch. It reports false
// if the conn is already broken.
func (c *conn) register(ch chan<- result) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, false
	}
	c.nextID++
	c.pending[c.nextID] = ch
	return c.nextID, true
}

// unregister abandons a call. It reports whether the call was still pending;
// if not, a result is on its way to the call's channel.
func (c *conn) unregister(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending[id]
	delete(c.pending, id)
	return ok
}

// readReplies delivers each reply frame to its call until the conn breaks.
func (c *conn) readReplies() {
	defer c.t.wg.Done()
	var hdr [frameOverhead]byte
	for {
		h, payload, err := readFrame(c.br, &hdr, c.t.opts.MaxFrameSize)
		if err == nil && h.kind == kindRequest {
			err = fmt.Errorf("%w: request frame on an outbound connection", errProtocol)
		}
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		ch, ok := c.pending[h.id]
		delete(c.pending, h.id)
		c.mu.Unlock()
		if ok {
			ch <- result{kind: h.kind, payload: payload}
		}
	}
}

// fail breaks the conn once: it closes the socket, fails every pending call
// with an error matching transport.ErrUnreachable, and leaves the pool.
func (c *conn) fail(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = cause
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()

	_ = c.nc.Close()
	c.t.forget(c)
	if cause != transport.ErrClosed {
		level := c.t.log.Debug
		if isProtocolError(cause) {
			level = c.t.log.Warn
		}
		level("tcp: connection closed", "local", c.t.addr, "peer", c.addr, "outbound", c.peer != nil, "err", cause)
	}
	if len(pending) == 0 {
		return
	}
	err := fmt.Errorf("tcp: connection to %s broken: %w: %w", c.addr, transport.ErrUnreachable, cause)
	for _, ch := range pending {
		ch <- result{err: err}
	}
}
