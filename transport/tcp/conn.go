// conn is one TCP connection: batched frame writes, deadline-bounded frame reads, and the calls in flight on an outbound one.
package tcp

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

const bufSize = 32 << 10

var (
	// errIdle closes a connection that carried nothing for IdleTimeout.
	errIdle = errors.New("tcp: connection idle")
	// errSlow closes a connection whose frame did not arrive whole within
	// ReadTimeout of its first byte.
	errSlow = errors.New("tcp: frame not read within the read timeout")
)

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

	// Inbound only: one token per request read and not yet replied to, the
	// reader's own included while it reads; the NodeID the peer proved; and
	// that peer's tokens across its connections (nil without a NodeID).
	slots     chan struct{}
	nodeID    string
	peerSlots chan struct{}

	// The reader's: the read deadline now set, and scratch for headers.
	rdl  time.Time
	rhdr [frameOverhead]byte

	lastActive atomic.Int64 // unix ns of the last frame begun or written
	retired    atomic.Bool  // outbound, out of its pool: close once no call is pending
	bytesIn    atomic.Uint64
	bytesOut   atomic.Uint64

	// Writers queue on wmu. writers counts those queued or writing, so the
	// last one out flushes everyone's frames with one syscall.
	writers atomic.Int32
	wmu     sync.Mutex
	bw      *bufio.Writer // made by the first write
	whdr    [frameOverhead]byte
	werr    error     // sticky write error
	renew   time.Time // when the write deadline needs pushing back

	mu      sync.Mutex
	pending map[uint64]chan<- result // outbound calls awaiting replies, by id
	nextID  uint64
	err     error // why the conn broke; set once
}

func newConn(t *Transport, nc net.Conn, addr string) *conn {
	c := &conn{
		t:       t,
		nc:      nc,
		rw:      nc,
		addr:    addr,
		br:      bufio.NewReaderSize(nc, bufSize),
		pending: make(map[uint64]chan<- result),
	}
	c.lastActive.Store(time.Now().UnixNano())
	return c
}

// useTLS puts tc, built over c.nc, between the frames and the socket.
// It must come before the first write.
func (c *conn) useTLS(tc *tls.Conn) {
	c.rw = tc
	c.br.Reset(tc)
}

// writeFrame writes one frame. Frames from concurrent writers are buffered and
// flushed by whichever writer finds no one queued behind it.
func (c *conn) writeFrame(h header, payload []byte) error {
	c.writers.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := c.werr
	if err == nil {
		now := time.Now()
		c.lastActive.Store(now.UnixNano())
		// Keep at least half of WriteTimeout ahead of every write without
		// resetting the deadline on each frame.
		if now.After(c.renew) {
			wt := c.t.opts.WriteTimeout
			err = c.nc.SetWriteDeadline(now.Add(wt))
			c.renew = now.Add(wt / 2)
		}
		if c.bw == nil {
			c.bw = bufio.NewWriterSize(c.rw, bufSize)
		}
	}
	if err == nil {
		putHeader(c.whdr[:], h, len(payload))
		if _, err = c.bw.Write(c.whdr[:]); err == nil {
			_, err = c.bw.Write(payload)
		}
		c.bytesOut.Add(uint64(frameOverhead + len(payload)))
	}
	if c.writers.Add(-1) == 0 && err == nil {
		err = c.bw.Flush()
	}
	if err != nil && c.werr == nil {
		c.werr = err
	}
	return err
}

// releaseSlots gives back the tokens of a request replied to.
func (c *conn) releaseSlots() {
	if c.peerSlots != nil {
		<-c.peerSlots
	}
	<-c.slots
}

// setReadDeadline gives the reader 2×ReadTimeout from now.
func (c *conn) setReadDeadline(now time.Time) error {
	c.rdl = now.Add(2 * c.t.opts.ReadTimeout)
	return c.nc.SetReadDeadline(c.rdl)
}

// readFrame waits for the next frame and reads it, holding it to the read
// timeout once its first byte has come. An inbound conn waiting with no
// request in flight fails with errIdle after IdleTimeout. The payload's
// bytes are reserved from b, if set; the caller releases the count
// returned.
func (c *conn) readFrame(b *budget) (header, []byte, int64, error) {
	if err := c.awaitFrame(); err != nil {
		return header{}, nil, 0, err
	}
	h, payload, reserved, err := readFrame(c.br, &c.rhdr, c.t.opts.MaxFrameSize, b, c.rdl, c.t.done)
	if err != nil {
		if !errors.Is(err, errProtocol) {
			err = c.readError(err)
		}
		return header{}, nil, 0, err
	}
	c.bytesIn.Add(uint64(frameOverhead + len(payload)))
	return h, payload, reserved, nil
}

// awaitFrame waits for the first byte of a frame, then makes sure the read
// deadline leaves at least ReadTimeout for the rest.
func (c *conn) awaitFrame() error {
	for c.br.Buffered() == 0 {
		_, err := c.br.Peek(1)
		if err == nil {
			break
		}
		if !isTimeout(err) {
			return err
		}
		// Nothing came for the whole deadline.
		now := time.Now()
		idle := now.Sub(time.Unix(0, c.lastActive.Load()))
		if c.peer == nil && len(c.slots) <= 1 && idle >= c.t.opts.IdleTimeout {
			return errIdle
		}
		if err := c.setReadDeadline(now); err != nil {
			return err
		}
	}
	now := time.Now()
	c.lastActive.Store(now.UnixNano())
	if c.rdl.Sub(now) < c.t.opts.ReadTimeout {
		return c.setReadDeadline(now)
	}
	return nil
}

// readError names a timeout inside a frame for what it is.
func (c *conn) readError(err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%w: %w", errSlow, err)
	}
	return unexpectedEOF(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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
	if err := c.setReadDeadline(time.Now()); err != nil {
		c.fail(err)
		return
	}
	for {
		h, payload, _, err := c.readFrame(nil)
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
		if c.retired.Load() && c.closeIfIdle(math.MaxInt64) {
			return
		}
	}
}

// closeIfIdle breaks an outbound conn with no call pending and no frame
// since cutoff (unix ns), and reports whether it did.
func (c *conn) closeIfIdle(cutoff int64) bool {
	c.mu.Lock()
	if c.err != nil || len(c.pending) > 0 || c.lastActive.Load() > cutoff {
		c.mu.Unlock()
		return false
	}
	c.err = errIdle
	c.pending = nil
	c.mu.Unlock()
	c.teardown(errIdle, nil)
	return true
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
	c.teardown(cause, pending)
}

// teardown closes the socket of a conn just broken by cause, and fails the
// calls that were pending on it.
func (c *conn) teardown(cause error, pending map[uint64]chan<- result) {
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
