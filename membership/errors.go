// Errors of the membership package: the ring's members and failure detection (§4.8).

package membership

import "errors"

var (
	// ErrInvalidConfig is returned by GossipConfig.Validate, NewGossip and
	// JoinGossip when a GossipConfig cannot be used. It wraps one error per
	// problem, so a single call reports every problem at once.
	ErrInvalidConfig = errors.New("dynamo: membership: invalid gossip config")

	// ErrClosed is returned by Join and Remove after Close or Leave.
	ErrClosed = errors.New("dynamo: membership: gossip closed")

	// ErrJoin is returned by Join and JoinGossip when none of the seeds
	// could be contacted. It wraps memberlist's error for each seed.
	ErrJoin = errors.New("dynamo: membership: no seed answered")

	// ErrUnknownMember is returned by Gossip.Remove when no ring member has
	// the given ID (it never joined, already left, or was already removed).
	ErrUnknownMember = errors.New("dynamo: membership: unknown member")

	// ErrRemoveSelf is returned by Gossip.Remove when asked to remove the
	// local node; a node takes itself out of the ring with Leave.
	ErrRemoveSelf = errors.New("dynamo: membership: cannot remove the local node; use Leave")
)
