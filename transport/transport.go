// Package transport defines how dynamo nodes exchange opaque request and reply
// payloads (DESIGN §1, §8). It knows nothing of keys, clocks or siblings: the
// root package owns the msgpack wire format, and a Transport only moves bytes.
//
// Implementations live in sub-packages: memnet (an in-memory network with seeded
// fault injection) and tcp (length-prefixed frames over TCP). The conformance
// suite in transporttest tells whether a custom implementation is right.
package transport

import (
	"context"
	"errors"
)

// DefaultMaxFrameSize is the largest payload a Transport accepts when its
// options leave the limit at zero: 16 MiB.
const DefaultMaxFrameSize = 16 << 20

var (
	// ErrClosed is returned by Call and Serve once the Transport is closed.
	ErrClosed = errors.New("transport: closed")
	// ErrFrameTooLarge is returned when a request or reply exceeds the
	// transport's maximum frame size. Nothing is sent.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrUnreachable is returned when the peer cannot be reached: no such
	// address, connection refused, or the network dropped the call.
	ErrUnreachable = errors.New("transport: peer unreachable")
	// ErrRemote is matched (through errors.Is) by a *RemoteError.
	ErrRemote = errors.New("transport: remote handler failed")
	// ErrBusy is returned when the peer refused the request because it
	// already runs as many requests as it allows. The handler did not run,
	// so the call may be retried, later or on another node.
	ErrBusy = errors.New("transport: peer busy")
)

// Handler serves one inbound request. It may be called concurrently from many
// goroutines. req is owned by the handler and may be retained. The returned
// reply is owned by the transport once the handler returns. A non-nil error is
// sent to the caller, whose Call returns a *RemoteError carrying its text.
// ctx ends when the transport closes or the caller's deadline passes: a
// transport carries the caller's deadline to the handler, not its
// cancellation. A Transport's Close may wait for running handlers, so a
// handler must return once its ctx ends.
type Handler func(ctx context.Context, req []byte) ([]byte, error)

// Transport carries opaque request and reply payloads between nodes.
// All methods are safe for concurrent use.
type Transport interface {
	// Call sends req to the node listening at addr and waits for its reply, or
	// until ctx ends. req is only read during the call; the caller may reuse it
	// afterwards. The reply is owned by the caller. Errors match ErrUnreachable,
	// ErrFrameTooLarge, ErrClosed, ErrRemote, ErrBusy or the ctx error
	// through errors.Is.
	Call(ctx context.Context, addr string, req []byte) ([]byte, error)
	// Serve starts delivering inbound requests to h and returns without
	// blocking. It may be called once; a second call returns an error.
	// Until Serve is called, calls to this transport fail with ErrUnreachable.
	Serve(h Handler) error
	// Addr is the address other nodes use to reach this one.
	Addr() string
	// Close stops serving and makes calls in flight return ErrClosed promptly.
	// Calls from other nodes to this one then fail with ErrUnreachable,
	// including those in flight. It is idempotent.
	Close() error
}

// FrameLimiter is implemented by a Transport that can say how large a
// request or reply it carries. The root package sizes its batches (anti-entropy
// exchanges, hint deliveries, transfers) below it; a Transport without it is
// taken to carry DefaultMaxFrameSize.
type FrameLimiter interface {
	// MaxFrameSize returns the largest payload in bytes, in either direction.
	MaxFrameSize() int
}

// RemoteError is the error a Handler returned on the remote node.
type RemoteError struct {
	Addr string // the remote node
	Msg  string // the handler's error text
}

func (e *RemoteError) Error() string { return "transport: remote " + e.Addr + ": " + e.Msg }

// Is makes errors.Is(err, ErrRemote) true.
func (e *RemoteError) Is(target error) bool { return target == ErrRemote }

// Stats are a Transport's figures for metrics. Those marked "now" are
// gauges; the others count since the Transport started.
type Stats struct {
	ConnsIn  int `json:"conns_in"`  // inbound connections open now
	ConnsOut int `json:"conns_out"` // outbound connections open now
	// Accepted counts inbound connections accepted; Refused, those closed
	// at once because the transport held as many as it allows.
	Accepted uint64 `json:"accepted"`
	Refused  uint64 `json:"refused"`
	// InFlight is the inbound requests being handled now; Busy counts
	// those refused because too many were.
	InFlight int    `json:"in_flight"`
	Busy     uint64 `json:"busy"`
	BytesIn  uint64 `json:"bytes_in"`  // bytes read
	BytesOut uint64 `json:"bytes_out"` // bytes written
}

// StatsReporter is implemented by a Transport that reports Stats. The
// root package's Store.Metrics includes them.
type StatsReporter interface {
	// TransportStats returns the figures now. It must be cheap enough to
	// call at every metrics scrape.
	TransportStats() Stats
}
