// errors.go: every error the root package exports, in one block.
package dynamo

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

var (
	// ErrInvalidConfig is returned by Config.Validate and New when the
	// configuration is unusable. The wrapped errors name every problem.
	ErrInvalidConfig = errors.New("dynamo: invalid config")
	// ErrClosed is returned by every Store method after Close.
	ErrClosed = errors.New("dynamo: store closed")
	// ErrEmptyKey is returned when a key is empty.
	ErrEmptyKey = errors.New("dynamo: empty key")
	// ErrKeyTooLarge is returned when a key exceeds Limits.MaxKeySize.
	ErrKeyTooLarge = errors.New("dynamo: key too large")
	// ErrValueTooLarge is returned when a value exceeds Limits.MaxValueSize,
	// or when a key's whole state (all its siblings) would exceed
	// Limits.MaxStateSize.
	ErrValueTooLarge = errors.New("dynamo: value too large")
	// ErrTooManySiblings is returned by Put when the key already holds
	// Limits.MaxSiblings siblings that the write's context does not cover.
	// Read the key, resolve its siblings and write back with the context.
	ErrTooManySiblings = errors.New("dynamo: too many siblings")
	// ErrBadContext is returned when a causal context is malformed, too large,
	// or was issued by another cluster.
	ErrBadContext = errors.New("dynamo: bad context")
	// ErrBadOption is returned when a per-request option is out of range.
	ErrBadOption = errors.New("dynamo: bad option")
	// ErrReadQuorum is matched (through errors.Is) by a *QuorumError from Get.
	ErrReadQuorum = errors.New("dynamo: read quorum not met")
	// ErrWriteQuorum is matched (through errors.Is) by a *QuorumError from Put
	// or Delete.
	ErrWriteQuorum = errors.New("dynamo: write quorum not met")
	// ErrNoReplica is returned when the ring has no node that can coordinate
	// the request: an empty ring, or, for a Put or Delete through a node that
	// is not a replica of the key, no replica that answered. In the latter
	// case the error also wraps a *QuorumError (Got 0, each replica's
	// reason), so it matches ErrWriteQuorum too.
	ErrNoReplica = errors.New("dynamo: no replica available")
	// ErrCorrupt is returned when stored or received bytes cannot be decoded.
	// The bytes are left as they are.
	ErrCorrupt = errors.New("dynamo: corrupt data")
	// ErrProtocol is returned when a peer sends a message this node cannot
	// accept: an unknown protocol version or kind, or another cluster's name.
	ErrProtocol = errors.New("dynamo: protocol error")
	// ErrHintsFull is returned by a fallback node that declines a hint because
	// its hint store has reached Handoff.MaxHints or Handoff.MaxHintBytes. The
	// coordinator then tries the next fallback.
	ErrHintsFull = errors.New("dynamo: hint store full")
	// ErrResolve is returned when a Resolver fails; it wraps the resolver's error.
	ErrResolve = errors.New("dynamo: resolver failed")
	// ErrStorageFailed is returned by Put and Delete once the node's
	// Storage has failed for good (a write or fsync error; see
	// storage.Failer): the node refuses writes from then on, and Store.Err
	// and Store.Health report the failure. The error wraps the Storage's.
	// Restart the node on a reopened or replaced disk.
	ErrStorageFailed = errors.New("dynamo: storage failed")
)

// QuorumError says how far a read or write got before it gave up. It matches
// ErrReadQuorum (Op "get") or ErrWriteQuorum (Op "put" or "delete") through
// errors.Is.
type QuorumError struct {
	Op   string // "get", "put" or "delete"
	Need int    // R or W
	Got  int    // replicas that answered successfully
	// PerReplica holds, for each replica that failed, why. Replicas that had
	// not answered when the operation gave up are absent.
	PerReplica map[string]error

	cause       error // the context's error when the request's time ran out first
	unreachable bool  // failed before trying: too few primaries believed up
}

func (e *QuorumError) Error() string {
	var b strings.Builder
	if e.Op == "get" {
		b.WriteString(ErrReadQuorum.Error())
	} else {
		b.WriteString(ErrWriteQuorum.Error())
	}
	fmt.Fprintf(&b, ": %s got %d of %d replicas", e.Op, e.Got, e.Need)
	if len(e.PerReplica) > 0 {
		ids := make([]string, 0, len(e.PerReplica))
		for id := range e.PerReplica {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		b.WriteString(" (")
		for i, id := range ids {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %v", id, e.PerReplica[id])
		}
		b.WriteString(")")
	}
	return b.String()
}

// Is matches ErrReadQuorum for reads and ErrWriteQuorum for writes.
func (e *QuorumError) Is(target error) bool {
	if e.Op == "get" {
		return target == ErrReadQuorum
	}
	return target == ErrWriteQuorum
}
