// integrity.go: DESIGN §8 damaged stored states: a record that fails its
// checksum (or cannot be decoded) is never served; the replica treats it as
// absent, takes the key back from its peers (read repair, anti-entropy), and
// counts it. Losing a record is partial data loss, so the key's own actor
// epochs are no longer trusted (issue 20, see mint.go).
package dynamo

import (
	"errors"

	"github.com/dynamo-kv/dynamo/storage"
)

// corruptDiscarder is implemented by a Storage that checks its own values
// (storage.Discarder): Get, ForEach and Update report a damaged value with an
// error matching storage.ErrCorrupt, and Update does not call its function,
// until the value is discarded.
type corruptDiscarder interface {
	DiscardCorrupt(key []byte) (bool, error)
}

// isCorrupt reports whether err says stored bytes are damaged: the root
// package's ErrCorrupt (a state that fails its checksum or its decoding) or
// the Storage's own storage.ErrCorrupt.
func isCorrupt(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, storage.ErrCorrupt)
}

// decodeLocal decodes this node's stored state of key for an update. A
// damaged state is treated as absent (the update replaces it, and the key
// comes back from the other replicas); lost reports it, so that the caller
// can count it once the update is durable (an update's function may run more
// than once).
func decodeLocal(cur []byte) (st state, lost bool) {
	st, err := decodeState(cur)
	if err != nil {
		return state{}, true
	}
	return st, false
}
