// Peer: who sent an inbound request, as the transport authenticated it, carried in the handler's ctx.
package transport

import "context"

// Peer describes the sender of an inbound request.
type Peer struct {
	// Addr is the sender's network address.
	Addr string
	// NodeID is the identity the sender proved when it connected, for
	// instance by its TLS certificate. It is empty when the transport
	// authenticates no one; a handler must then treat the sender as
	// unknown.
	NodeID string
}

type peerKey struct{}

// WithPeer returns a ctx carrying p, for a transport to hand to its Handler.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerFromContext returns the Peer a transport put in a handler's ctx, and
// false when it put none.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}
