// Options of the tcp transport: frame size, pooling, TLS, and the bounds every inbound connection and request is held to.
package tcp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

// ErrInvalidOptions is returned by Listen, wrapping every problem found, when
// Options.Validate fails.
var ErrInvalidOptions = errors.New("tcp: invalid options")

// Defaults of the zero Options.
const (
	DefaultConnsPerPeer     = 2
	DefaultDialTimeout      = 5 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultReadTimeout      = 10 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultMaxConns         = 1024
	DefaultMaxConnInFlight  = 128
	DefaultMaxPeerInFlight  = DefaultConnsPerPeer * DefaultMaxConnInFlight
	DefaultMaxInFlight      = 2048
	DefaultReadBudget       = 128 << 20
)

// Options configures a Transport. The zero value is usable.
type Options struct {
	// MaxFrameSize is the largest request or reply payload in bytes.
	// Zero means transport.DefaultMaxFrameSize (16 MiB).
	MaxFrameSize int
	// ConnsPerPeer is how many connections are kept to each peer, each
	// carrying many calls at once. With two or more, the last carries the
	// bulk requests (64 KiB and more) and the others the rest, in turn.
	// Zero means DefaultConnsPerPeer (2).
	ConnsPerPeer int
	// DialTimeout bounds connecting to a peer, TLS handshake included, on
	// top of the call's ctx. Zero means DefaultDialTimeout (5s).
	DialTimeout time.Duration
	// WriteTimeout is how long a write may make no progress before its
	// connection counts as broken. Zero means DefaultWriteTimeout (10s).
	WriteTimeout time.Duration
	// TLS, when set, is used to listen and to dial. It must hold a
	// certificate for the listener (Certificates, GetCertificate or
	// GetConfigForClient). When ServerName is empty, dialling uses the host
	// of the address called.
	TLS *tls.Config
	// Identify, with TLS, names the peer of each inbound connection once
	// its handshake is done; handlers find the name in
	// transport.PeerFromContext. An error closes the connection. Nil leaves
	// Peer.NodeID empty. auth.Credentials.PeerNodeID fits.
	Identify func(tls.ConnectionState) (string, error)
	// Logger receives connection errors. Nil means no logging.
	Logger *slog.Logger

	// HandshakeTimeout bounds the server side of a TLS handshake. Zero
	// means DefaultHandshakeTimeout (5s).
	HandshakeTimeout time.Duration
	// ReadTimeout bounds how long a frame, once its first byte has come,
	// may take to arrive whole (against slowloris peers), on inbound and
	// outbound connections. The bound is coarse: a frame gets between
	// ReadTimeout and twice that. Zero means DefaultReadTimeout (10s).
	ReadTimeout time.Duration
	// IdleTimeout closes an inbound connection that has had no request for
	// that long and runs none; the check comes up to 2×ReadTimeout late.
	// The calling side closes its own connections idle for half of it, so
	// that calls do not race the server's close. Zero means
	// DefaultIdleTimeout (2m).
	IdleTimeout time.Duration
	// MaxConns bounds inbound connections; beyond it a new connection is
	// accepted and closed at once. Zero means DefaultMaxConns (1024).
	MaxConns int
	// MaxConnInFlight bounds the requests of one inbound connection being
	// handled or replied to at once. At the bound the transport stops
	// reading that connection, so TCP pushes back on its sender. Zero means
	// DefaultMaxConnInFlight (128).
	MaxConnInFlight int
	// MaxPeerInFlight bounds the requests of one peer, a NodeID proved by
	// Identify, being handled or replied to at once across all its inbound
	// connections: a peer that opens more connections than a node's pool
	// gets no more of this node's work. At the bound the transport stops
	// reading that peer's connections. Without Identify only the other
	// bounds apply. Zero means DefaultMaxPeerInFlight (256: ConnsPerPeer
	// connections at MaxConnInFlight each, the defaults).
	MaxPeerInFlight int
	// MaxInFlight bounds the requests being handled or replied to at once
	// across all inbound connections. A request beyond it gets a busy
	// reply at once, which its caller sees as transport.ErrBusy; its
	// handler does not run. Zero means DefaultMaxInFlight (2048).
	MaxInFlight int
	// ReadBudget bounds, in bytes, the request payloads the transport holds
	// at once: read so far, or whole and waiting for their handler to
	// return. Memory is reserved as bytes arrive (at most twice what has
	// come, or 4 KiB), never from the length a frame announces. A reader that finds
	// the budget spent waits, until its frame's ReadTimeout closes the
	// connection. It must be at least MaxFrameSize. Zero means
	// max(DefaultReadBudget, MaxFrameSize) (128 MiB).
	ReadBudget int64
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
	for _, f := range []struct {
		name string
		v    int
	}{{"ConnsPerPeer", o.ConnsPerPeer}, {"MaxConns", o.MaxConns}, {"MaxConnInFlight", o.MaxConnInFlight}, {"MaxPeerInFlight", o.MaxPeerInFlight}, {"MaxInFlight", o.MaxInFlight}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s (%d) must not be negative", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"DialTimeout", o.DialTimeout}, {"WriteTimeout", o.WriteTimeout}, {"HandshakeTimeout", o.HandshakeTimeout}, {"ReadTimeout", o.ReadTimeout}, {"IdleTimeout", o.IdleTimeout}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s (%v) must not be negative", f.name, f.v))
		}
	}
	if o.ReadBudget < 0 {
		errs = append(errs, fmt.Errorf("ReadBudget (%d) must not be negative", o.ReadBudget))
	} else if frame := o.withDefaults().MaxFrameSize; o.ReadBudget > 0 && o.ReadBudget < int64(frame) {
		errs = append(errs, fmt.Errorf("ReadBudget (%d) must be at least MaxFrameSize (%d)", o.ReadBudget, frame))
	}
	if c := o.TLS; c != nil && len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		errs = append(errs, errors.New("TLS has no certificate for the listener (Certificates, GetCertificate or GetConfigForClient)"))
	}
	if o.Identify != nil && o.TLS == nil {
		errs = append(errs, errors.New("Identify needs TLS"))
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
	if o.MaxFrameSize <= 0 {
		o.MaxFrameSize = transport.DefaultMaxFrameSize
	}
	setDefault(&o.ConnsPerPeer, DefaultConnsPerPeer)
	setDefault(&o.DialTimeout, DefaultDialTimeout)
	setDefault(&o.WriteTimeout, DefaultWriteTimeout)
	setDefault(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&o.ReadTimeout, DefaultReadTimeout)
	setDefault(&o.IdleTimeout, DefaultIdleTimeout)
	setDefault(&o.MaxConns, DefaultMaxConns)
	setDefault(&o.MaxConnInFlight, DefaultMaxConnInFlight)
	setDefault(&o.MaxPeerInFlight, DefaultMaxPeerInFlight)
	setDefault(&o.MaxInFlight, DefaultMaxInFlight)
	setDefault(&o.ReadBudget, max(DefaultReadBudget, int64(o.MaxFrameSize)))
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
