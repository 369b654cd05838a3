// integrity.go: DESIGN §8 damaged stored states: a record that fails its
// checksum (or cannot be decoded) is never served; the replica treats it as
// absent, takes the key back from its peers (read repair, anti-entropy), and
// counts it. Losing a record is partial data loss, so the key's own actor
// epochs are no longer trusted (issue 20, see mint.go).
package dynamo

import (
	"errors"
	"log/slog"

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

// forEach walks st like its ForEach. A Storage that checks its values skips
// the damaged ones and reports them after the walk in a
// *storage.CorruptError: forEach discards those it can, calls lost with
// each key it discarded, and returns nil for them, so one damaged record
// never stops a start-up, an anti-entropy round or a hint delivery. Damaged
// keys beyond the ones the error lists stay where they are until a read or
// an update meets them.
func forEach(st Storage, log *slog.Logger, prefix []byte, fn func(k, v []byte) error, lost func(k []byte)) error {
	err := st.ForEach(prefix, fn)
	var ce *storage.CorruptError
	if !errors.As(err, &ce) {
		return err
	}
	d, ok := st.(corruptDiscarder)
	for _, k := range ce.Keys {
		if !ok {
			break
		}
		gone, derr := d.DiscardCorrupt(k)
		if derr != nil {
			return derr
		}
		if gone {
			lost(k)
		}
	}
	if ce.Count > len(ce.Keys) {
		log.Warn("more damaged records than one walk lists; the rest are discarded when met", "damaged", ce.Count, "listed", len(ce.Keys))
	}
	return nil
}
