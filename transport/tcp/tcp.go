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
// closes.
//
// Connections are dialled lazily. A broken connection fails its calls in
// flight with transport.ErrUnreachable and leaves the pool; the next call
// dials again, so a restarted peer is reached without recreating the caller.
// With Options.TLS set, the transport both listens and dials with TLS, so
// setting ClientAuth to tls.RequireAndVerifyClientCert requires mutual TLS.
//
// # Caveats
//
//   - Peers should share MaxFrameSize. A frame larger than the receiver's limit
//     closes the connection, failing every call on it with ErrUnreachable.
//   - Close waits for running handlers to return; a handler must return once
//     its ctx ends, and must not call Close on its own transport.
//   - Only the caller's deadline reaches the handler, not its cancellation.
//   - The transport dials only the addresses its callers pass.
package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

var (
	_ transport.Transport    = (*Transport)(nil)
	_ transport.FrameLimiter = (*Transport)(nil)
)

// ErrInvalidOptions is returned by Listen, wrapping every problem found, when
// Options.Validate fails.
var ErrInvalidOptions = errors.New("tcp: invalid options")

// Options configures a Transport. The zero value is usable.
type Options struct {
	// MaxFrameSize is the largest request or reply payload in bytes.
	// Zero means transport.DefaultMaxFrameSize (16 MiB).
	MaxFrameSize int
	// ConnsPerPeer is how many connections are kept to each peer, each
	// carrying many calls at once. Zero means 2.
	ConnsPerPeer int
	// DialTimeout bounds connecting to a peer, TLS handshake included, on
	// top of the call's ctx; it also bounds the server side of a TLS
	// handshake. Zero means 5s.
	DialTimeout time.Duration
	// WriteTimeout is how long a write may make no progress before its
	// connection counts as broken. Zero means 10s.
	WriteTimeout time.Duration
	// TLS, when set, is used to listen and to dial. It must hold a
	// certificate for the listener (Certificates, GetCertificate or
	// GetConfigForClient). When ServerName is empty, dialling uses the host
	// of the address called.
	TLS *tls.Config
	// Logger receives connection errors. Nil means no logging.
	Logger *slog.Logger
}

// Validate reports every problem with o at once, wrapped in
// ErrInvalidOptions. It never modifies o.
func (o Options) Validate() error {
	var errs []error
	if o.MaxFrameSize < 0 {
		errs = append(errs, fmt.Errorf("MaxFrameSize (%d) must not be negative", o.MaxFrameSize))
	}
	if o.MaxFrameSize > maxFrameLimit {
		errs = append(errs, fmt.Errorf("MaxFrameSize (%d) must be at most %d", o.MaxFrameSize, maxFrameLimit))
	}
	if o.ConnsPerPeer < 0 {
		errs = append(errs, fmt.Errorf("ConnsPerPeer (%d) must not be negative", o.ConnsPerPeer))
	}
	if o.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("DialTimeout (%v) must not be negative", o.DialTimeout))
	}
	if o.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("WriteTimeout (%v) must not be negative", o.WriteTimeout))
	}
	if c := o.TLS; c != nil && len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		errs = append(errs, errors.New("TLS has no certificate for the listener (Certificates, GetCertificate or GetConfigForClient)"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return nil
}

// maxFrameLimit keeps the frame length within the prefix and an int on every platform.
const maxFrameLimit = math.MaxInt32 - headerLen

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = transport.DefaultMaxFrameSize
	}
	if o.ConnsPerPeer == 0 {
		o.ConnsPerPeer = 2
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

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

	handler atomic.Pointer[transport.Handler]

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{} // inbound and outbound
	peers  map[string]*peer   // outbound pools, by address

	wg        sync.WaitGroup // every goroutine the transport starts
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
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		opts:   opts,
		ln:     ln,
		addr:   ln.Addr().String(),
		log:    opts.Logger,
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		conns:  make(map[*conn]struct{}),
		peers:  make(map[string]*peer),
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
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

// track registers c and counts one goroutine for it, or reports false if the
// transport is closed.
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

// forget drops a broken c from the transport and, if outbound, its pool.
func (t *Transport) forget(c *conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	if p := c.peer; p != nil {
		p.mu.Lock()
		if p.slots[c.slot].c == c {
			p.slots[c.slot].c = nil
		}
		p.mu.Unlock()
	}
}
