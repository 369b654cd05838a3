// tombstone.go: §4.7 safe deletes: a tombstone is purged only once every
// replica of its key holds it and a grace period has passed, so a replica
// that missed the delete cannot resurrect the key.
package dynamo

import (
	"bytes"
	"context"
)

// purgeTombstones purges the tombstone-only keys this node is the first
// primary of, once their newest tombstone is older than TombstoneGrace and
// all N primaries answer with the same state. Each replica then deletes the
// key only if its state is still that one. It returns how many keys it
// purged.
func (s *Store) purgeTombstones(ctx context.Context) int {
	r := s.ring.Load()
	now := s.cfg.Clock().UnixNano()
	purged := 0
	for _, key := range s.rep.tombs.list() {
		if ctx.Err() != nil {
			break
		}
		q := request{r: r, p: partitionOf(key, s.cfg.Partitions), key: key}
		primaries := r.preference(q.p, s.cfg.N)
		if len(primaries) == 0 || primaries[0].ID != s.cfg.NodeID || len(primaries) < s.cfg.N {
			continue
		}
		st, err := s.rep.read(q.p, key)
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
		if s.purgeKey(ctx, q, st, primaries) {
			purged++
		}
	}
	s.stats.purged.Add(int64(purged))
	return purged
}

// purgeKey confirms every primary holds exactly st for the key, then has
// each delete it if unchanged.
func (s *Store) purgeKey(ctx context.Context, q request, st state, primaries []Member) bool {
	enc := encodeState(st)
	req := s.encode(&getReq{Key: q.key})
	for _, m := range primaries {
		if !s.reachable(m.ID) {
			return false
		}
		theirs, err := s.readReplica(ctx, m, q, req)
		if err != nil || !bytes.Equal(encodeState(theirs), enc) {
			return false // a replica lacks the tombstone (or has more): anti-entropy first
		}
	}
	d := digest(q.key, enc)
	purge := s.encode(&purgeReq{Key: q.key, Digest: d})
	ok := true
	for _, m := range primaries {
		var err error
		if m.ID == s.cfg.NodeID {
			err = s.rep.purge(q.p, q.key, d)
		} else {
			_, err = s.call(ctx, m, purge)
		}
		if err != nil {
			s.log.Debug("purge failed", "partition", q.p, keyAttr(q.key), "peer", m.ID, "err", err)
			ok = false
		}
	}
	return ok
}
