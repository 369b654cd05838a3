// tombstone.go: §4.7 safe deletes: a tombstone is purged only once every
// replica of its key holds it and a grace period has passed, so a replica
// that missed the delete cannot resurrect the key.
package dynamo

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
)

// tombstoneSet indexes the keys whose state holds only tombstones: the purge
// candidates. It is rebuilt with the hash tree at start-up.
type tombstoneSet struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func (t *tombstoneSet) set(key []byte, onlyTombstones bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if onlyTombstones {
		t.keys[string(key)] = struct{}{}
	} else {
		delete(t.keys, string(key))
	}
}

func (t *tombstoneSet) list() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([][]byte, 0, len(t.keys))
	for k := range t.keys {
		out = append(out, []byte(k))
	}
	slices.SortFunc(out, bytes.Compare) // a fixed order: rounds replay
	return out
}

// onlyTombstones reports whether st is non-empty and holds no live sibling.
func onlyTombstones(st state) bool {
	if len(st.Siblings) == 0 {
		return false
	}
	for _, sb := range st.Siblings {
		if !sb.Tombstone {
			return false
		}
	}
	return true
}

// purgeTombstones purges the tombstone-only keys this node is the first
// primary of, once their newest tombstone is older than TombstoneGrace and
// all N primaries answer with the same state. Each replica then deletes the
// key only if its state is still that one. It returns how many keys it
// purged.
func (s *Store) purgeTombstones(ctx context.Context) int {
	r := s.ring.Load()
	now := s.cfg.Clock().UnixNano()
	purged := 0
	for _, key := range s.tombstones.list() {
		if ctx.Err() != nil {
			break
		}
		primaries := r.preference(r.partition(key), s.cfg.N)
		if len(primaries) == 0 || primaries[0].ID != s.cfg.NodeID || len(primaries) < s.cfg.N {
			continue
		}
		st, err := s.localRead(key)
		if err != nil || !onlyTombstones(st) {
			continue
		}
		newest := int64(0)
		for _, sb := range st.Siblings {
			newest = max(newest, sb.Time)
		}
		if now-newest < int64(s.cfg.TombstoneGrace) {
			continue
		}
		if s.purgeKey(ctx, key, st, primaries) {
			purged++
		}
	}
	s.stats.purged.Add(int64(purged))
	return purged
}

// purgeKey confirms every primary holds exactly st for key, then has each
// delete it if unchanged.
func (s *Store) purgeKey(ctx context.Context, key []byte, st state, primaries []Member) bool {
	enc := encodeState(st)
	req := encodeMessage(&message{Version: protocolVersion, Kind: kindGet, Cluster: s.wireCluster, Key: key})
	for _, m := range primaries {
		if !s.reachable(m.ID) {
			return false
		}
		theirs, err := s.readReplica(ctx, m, key, req)
		if err != nil || !bytes.Equal(encodeState(theirs), enc) {
			return false // a replica lacks the tombstone (or has more): anti-entropy first
		}
	}
	d := digest(key, enc)
	purge := encodeMessage(&message{Version: protocolVersion, Kind: kindPurge, Cluster: s.wireCluster, Key: key, Hashes: []uint64{d}})
	ok := true
	for _, m := range primaries {
		var err error
		if m.ID == s.cfg.NodeID {
			err = s.localPurge(key, d)
		} else {
			_, err = s.call(ctx, m, purge)
		}
		if err != nil {
			s.log.Debug("purge failed", "key", key, "replica", m.ID, "err", err)
			ok = false
		}
	}
	return ok
}

// localPurge deletes key if its stored state's digest is still d.
func (s *Store) localPurge(key []byte, d uint64) error {
	err := s.updateData(key, func(cur []byte) ([]byte, bool, error) {
		if digest(key, cur) != d {
			st, err := decodeState(cur) // changed since: keep it for a later round
			return bytes.Clone(cur), err == nil && onlyTombstones(st), nil
		}
		return nil, false, nil
	})
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	return nil
}
