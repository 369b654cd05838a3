// Errors of the gossip package: ring membership and failure detection over memberlist (§4.8).

package gossip

import "errors"

var (
	// ErrInvalidConfig is returned by Config.Validate, New and
	// Join when a Config cannot be used. It wraps one error per
	// problem, so a single call reports every problem at once.
	ErrInvalidConfig = errors.New("dynamo: gossip: invalid gossip config")

	// ErrClosed is returned by Join and Remove after Close or Leave.
	ErrClosed = errors.New("dynamo: gossip: gossip closed")

	// ErrJoin is returned by Join and Join when none of the seeds
	// could be contacted. It wraps memberlist's error for each seed.
	ErrJoin = errors.New("dynamo: gossip: no seed answered")

	// ErrUnknownMember is returned by Gossip.Remove when no ring member has
	// the given ID (it never joined, already left, or was already removed).
	ErrUnknownMember = errors.New("dynamo: gossip: unknown member")

	// ErrRemoveSelf is returned by Gossip.Remove when asked to remove the
	// local node; a node takes itself out of the ring with Leave.
	ErrRemoveSelf = errors.New("dynamo: gossip: cannot remove the local node; use Leave")
)
