// Package tcp implements transport.Transport with length-prefixed frames over TCP, optionally TLS (DESIGN §8).
//
// # Basics
//
//	t, err := tcp.Listen("127.0.0.1:7946", tcp.Options{})
//	if err != nil { ... }
//	defer t.Close()
//	t.Serve(handler)
//	reply, err := t.Call(ctx, "127.0.0.1:7947", req)
//
// Each frame is a 4-byte big-endian length, a 14-byte header (wire version,
// kind, request id, and the caller's remaining deadline in milliseconds) and
// the payload. Calls to a peer are multiplexed over a small pool of
// connections (Options.ConnsPerPeer), many in flight on each; frames written
// by concurrent callers are batched and flushed together. The server runs
// each request's handler in its own goroutine, with a ctx that ends at the
// caller's deadline, when the connection breaks, or when the transport
// closes; transport.PeerFromContext tells who sent it.
//
// Connections are dialled lazily. A broken connection fails its calls in
// flight with transport.ErrUnreachable and leaves the pool; the next call
// dials again, so a restarted peer is reached without recreating the caller.
// With Options.TLS set, the transport both listens and dials with TLS;
// package auth makes a mutual TLS 1.3 config from a cluster secret or a PKI.
//
// # Bounds
//
// Every peer may be hostile, so the serving side holds each to bounds:
//
//   - MaxConns inbound connections; more are accepted and closed at once.
//     Accept failures (EMFILE) back off, up to a second, while the
//     connections already open go on.
//   - HandshakeTimeout for TLS, ReadTimeout for a frame once it has begun
//     (slowloris), IdleTimeout for a connection with nothing in flight.
//   - MaxConnInFlight requests per connection, and MaxPeerInFlight per
//     peer NodeID across its connections: at the bound the transport stops
//     reading, so TCP pushes back on the sender; and MaxInFlight
//     across the node, beyond which requests get transport.ErrBusy without
//     running. Goroutines thus stay within MaxInFlight handlers plus one
//     reader per connection, whatever peers send.
//   - ReadBudget bytes of request payload held at once. A payload's buffer
//     grows as its bytes arrive, never from the length a frame announces.
//
// Stats exposes the counters.
//
// # Caveats
//
//   - Peers should share MaxFrameSize. A frame larger than the receiver's limit
//     closes the connection, failing every call on it with ErrUnreachable.
//   - Close waits for running handlers to return; a handler must return once
//     its ctx ends, and must not call Close on its own transport.
//   - Only the caller's deadline reaches the handler, not its cancellation.
//   - The transport dials only the addresses its callers pass.
//   - A reply waiting to be written counts against the in-flight caps, so a
//     peer that does not read its replies holds its places for up to
//     WriteTimeout, then loses its connection.
//   - The caps bound how many requests a peer has handled at once, not what
//     they cost: a peer (a member) that floods cheap requests still takes a
//     share of the node's CPU and storage in proportion to MaxPeerInFlight,
//     and with a cluster secret a member can present many NodeIDs.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/internal/workers"
	"github.com/dynamo-kv/dynamo/transport"
)

var (
	_ transport.Transport    = (*Transport)(nil)
	_ transport.FrameLimiter = (*Transport)(nil)
)

// Transport is a node's TCP endpoint. It implements transport.Transport and is
// safe for concurrent use.
type Transport struct {
	opts Options // defaults applied
	ln   net.Listener
	addr string
	log  *slog.Logger

	ctx    context.Context // parent of every handler ctx and dial; cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed first thing in Close

	handler    atomic.Pointer[transport.Handler]
	budget     *budget      // request payload bytes held
	peerLimits *peerLimits  // requests in flight per peer NodeID
	inFlight   atomic.Int64 // inbound requests admitted and not yet replied to
	counts     counters

	mu      sync.Mutex
	closed  bool
	conns   map[*conn]struct{} // inbound and outbound
	connsIn int                // inbound ones among conns
	peers   map[string]*peer   // outbound pools, by address
	gone    traffic            // bytes moved by conns no longer in conns

	wg        sync.WaitGroup // every goroutine the transport starts
	handlers  *workers.Pool  // runs request handlers, on goroutines kept for the next one
	closeOnce sync.Once
}

// Listen returns a Transport listening on addr, such as "127.0.0.1:0".
// Addr reports the address actually bound.
func Listen(addr string, opts Options) (*Transport, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp: listen %s: %w", addr, err)
	}
	return serve(ln, opts), nil
}

// serve returns a Transport accepting on ln with valid opts.
func serve(ln net.Listener, opts Options) *Transport {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		opts:       opts,
		ln:         ln,
		addr:       ln.Addr().String(),
		log:        opts.Logger,
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		budget:     newBudget(opts.ReadBudget),
		peerLimits: newPeerLimits(opts.MaxPeerInFlight),
		conns:      make(map[*conn]struct{}),
		peers:      make(map[string]*peer),
	}
	t.handlers = workers.New(t.done, &t.wg, 0)
	t.wg.Add(2)
	go t.acceptLoop()
	go t.closeIdle()
	return t
}

// Addr returns the address the transport listens on, as host:port.
func (t *Transport) Addr() string { return t.addr }

// MaxFrameSize returns the largest request or reply payload the transport
// sends or accepts (transport.FrameLimiter).
func (t *Transport) MaxFrameSize() int { return t.opts.MaxFrameSize }

// Serve starts delivering inbound requests to h. It returns
// transport.ErrClosed after Close, and an error if called twice.
func (t *Transport) Serve(h transport.Handler) error {
	if h == nil {
		return fmt.Errorf("tcp: serve %s: nil handler", t.addr)
	}
	if t.isClosed() {
		return transport.ErrClosed
	}
	if !t.handler.CompareAndSwap(nil, &h) {
		return fmt.Errorf("tcp: serve %s: already serving", t.addr)
	}
	return nil
}

// Close stops listening, closes every connection so that calls in flight
// return transport.ErrClosed, cancels running handlers' ctx, and waits for all
// the transport's goroutines to end. It is idempotent.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		conns := make([]*conn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()
		close(t.done)
		if cerr := t.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("tcp: close %s: %w", t.addr, cerr)
		}
		for _, c := range conns {
			c.fail(transport.ErrClosed)
		}
		t.cancel()
		t.wg.Wait()
	})
	return err
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// Outcomes of trackInbound.
const (
	tracked = iota
	trackClosed
	trackFull
)

// track registers outbound c and counts one goroutine for it, or reports
// false if the transport is closed.
func (t *Transport) track(c *conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

// trackInbound registers inbound c and counts one goroutine for it, unless
// the transport is closed or holds MaxConns inbound connections already.
func (t *Transport) trackInbound(c *conn) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return trackClosed
	case t.connsIn >= t.opts.MaxConns:
		return trackFull
	}
	t.conns[c] = struct{}{}
	t.connsIn++
	t.wg.Add(1)
	return tracked
}

// forget drops a broken c from the transport and, if outbound, its pool.
func (t *Transport) forget(c *conn) {
	t.mu.Lock()
	if _, ok := t.conns[c]; ok {
		delete(t.conns, c)
		if c.peer == nil {
			t.connsIn--
		}
		t.gone.add(c)
	}
	t.mu.Unlock()
	c.leavePool()
}

// leavePool empties c's slot in its peer's pool, if c still holds it, so
// the next call there dials a new connection.
func (c *conn) leavePool() {
	if p := c.peer; p != nil {
		p.mu.Lock()
		if p.slots[c.slot].c == c {
			p.slots[c.slot].c = nil
		}
		p.mu.Unlock()
	}
}

// closeIdle closes, every IdleTimeout/4, the outbound conns that carried
// nothing for IdleTimeout/2, so that they close before the server's side
// closes them under a call.
func (t *Transport) closeIdle() {
	defer t.wg.Done()
	tick := time.NewTicker(max(t.opts.IdleTimeout/4, time.Millisecond))
	defer tick.Stop()
	var idle []*conn
	for {
		select {
		case <-tick.C:
		case <-t.done:
			return
		}
		t.mu.Lock()
		for c := range t.conns {
			if c.peer != nil {
				idle = append(idle, c)
			}
		}
		t.mu.Unlock()
		cutoff := time.Now().Add(-t.opts.IdleTimeout / 2).UnixNano()
		for _, c := range idle {
			c.closeIfIdle(cutoff)
		}
		clear(idle)
		idle = idle[:0]
	}
}
