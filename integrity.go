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

// recordLost accounts for a damaged stored state of key that an update has
// just replaced: it is counted and logged, and the key's actor epochs on
// this node are no longer trusted (the record of the dots this node issued
// for the key is gone).
func (s *Store) recordLost(key []byte) {
	s.stats.corruptRecords.Add(1)
	s.distrustKey(key)
	s.log.Warn("discarded a damaged stored state; the key comes back from the other replicas", "key", key)
}

// updateStorage runs one Storage.Update of the data key dk. When the Storage
// itself reports the stored value damaged (it then does not call fn) and can
// discard it, the value is discarded and the update runs again on the absent
// key; discarded reports that.
func (s *Store) updateStorage(dk []byte, fn func(cur []byte) ([]byte, error)) (discarded bool, err error) {
	err = s.cfg.Storage.Update(dk, fn)
	if err == nil || !errors.Is(err, storage.ErrCorrupt) {
		return false, err
	}
	d, ok := s.cfg.Storage.(corruptDiscarder)
	if !ok {
		return false, err
	}
	if gone, derr := d.DiscardCorrupt(dk); derr != nil || !gone {
		return false, err
	}
	return true, s.cfg.Storage.Update(dk, fn)
}

// forEach walks the Storage like its ForEach. A Storage that checks its
// values skips the damaged ones and reports them after the walk in a
// *storage.CorruptError: forEach discards those it can (a damaged state is
// counted and its key comes back from the peers, a damaged hint is dropped)
// and returns nil for them, so one damaged record never stops a start-up,
// an anti-entropy round or a hint delivery. Damaged keys beyond the ones the
// error lists stay where they are until a read or an update meets them.
func (s *Store) forEach(prefix []byte, fn func(k, v []byte) error) error {
	err := s.cfg.Storage.ForEach(prefix, fn)
	var ce *storage.CorruptError
	if !errors.As(err, &ce) {
		return err
	}
	d, ok := s.cfg.Storage.(corruptDiscarder)
	for _, k := range ce.Keys {
		if !ok {
			break
		}
		gone, derr := d.DiscardCorrupt(k)
		if derr != nil {
			return derr
		}
		if gone && len(k) > 5 && k[0] == spaceData {
			s.recordLost(k[5:])
		} else if gone {
			s.log.Warn("discarded a damaged stored record", "key", k)
		}
	}
	if ce.Count > len(ce.Keys) {
		s.log.Warn("more damaged records than one walk lists; the rest are discarded when met", "damaged", ce.Count, "listed", len(ce.Keys))
	}
	return nil
}
