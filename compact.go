// compact.go: DESIGN §2 keeping a key's version vector bounded: entries of
// actors that will never mint for the key again (earlier runs and
// incarnations of a node, dots moved off a conflict) are folded away once
// every primary has held them, with no live sibling, for a grace period,
// so that no copy of a version they covered can still come back (issue 12
// item 3). Riak prunes vector clocks by age, which can resurrect and lose
// writes; this never folds an entry a replica, a hint or a message in
// flight may still need.
package dynamo

import (
	"context"
	"fmt"
)

// compactRound folds dead vector entries of the keys this node is the first
// primary of, paced like anti-entropy. An entry is folded once every primary
// held it dead at two reads at least Config.TombstoneGrace apart (the
// bound on how long a hint or a message stays in flight, so that no copy
// of a version the entry covered is left to come back); each primary drops
// it only if it still holds it dead. It returns how many keys it folded.
func (s *Store) compactRound(ctx context.Context) int {
	r := s.ring.Load()
	folded := 0
	for _, key := range s.rep.folds.list() {
		if ctx.Err() != nil {
			break
		}
		q := request{r: r, p: partitionOf(key, s.cfg.Partitions), key: key}
		primaries := r.preference(q.p, s.cfg.N)
		if len(primaries) < s.cfg.N || primaries[0].ID != s.cfg.NodeID {
			s.rep.folds.drop(key)
			continue
		}
		if err := s.aePace.wait(ctx, 1); err != nil {
			break
		}
		if s.compactKey(ctx, q, primaries) {
			folded++
		}
	}
	return folded
}

// compactKey runs one round of the fold protocol for key; see compactRound.
func (s *Store) compactKey(ctx context.Context, q request, primaries []Member) bool {
	var states []state
	var live []string
	req := s.encode(&getReq{Key: q.key, Flags: flagNoReadThrough | flagWantActor})
	for _, m := range primaries {
		if !s.reachable(m.ID) {
			return false
		}
		st, actor, err := s.readReplicaActor(ctx, m, q, req)
		if err != nil {
			return false
		}
		states = append(states, st)
		if actor != "" {
			live = append(live, actor)
		}
	}
	// An entry every primary holds dead is ready; one that a primary has not
	// caught up with yet (a lower counter, say a replaced disk still
	// pulling) stays a candidate; one a primary holds live or beyond is not.
	var ready, keep versionVector
	for _, e := range foldable(states[0], live) {
		all, contradicted := true, false
		for _, st := range states {
			c := st.VV.get(e.Actor)
			all = all && c == e.Counter && !hasSibling(st, e.Actor)
			contradicted = contradicted || c > e.Counter || hasSibling(st, e.Actor)
		}
		if all {
			ready = append(ready, e)
		}
		if !contradicted {
			keep = append(keep, e)
		}
	}
	ripe := s.rep.folds.advance(q.key, ready, keep, s.cfg.Clock(), s.cfg.TombstoneGrace)
	if len(ripe) == 0 {
		return false
	}
	fold := s.encode(&foldReq{Key: q.key, Entries: ripe})
	for _, m := range primaries {
		var err error
		if m.ID == s.cfg.NodeID {
			err = s.rep.fold(q.p, q.key, ripe)
		} else {
			_, err = s.call(ctx, m, fold)
		}
		if err != nil {
			s.log.Debug("fold failed", "partition", q.p, keyAttr(q.key), "peer", m.ID, "err", err)
		}
	}
	return true
}

// readReplicaActor reads the key's state from one replica (locally when m
// is this node) and the actor that replica would mint the key's next
// version with ("" for a fresh epoch). req is the encoded getReq with
// flagWantActor.
func (s *Store) readReplicaActor(ctx context.Context, m Member, q request, req []byte) (state, string, error) {
	if m.ID == s.cfg.NodeID {
		st, err := s.rep.read(q.p, q.key)
		if err != nil {
			return state{}, "", err
		}
		return st, s.rep.ownActor(q.key, st), nil
	}
	resp, err := s.call(ctx, m, req)
	if err != nil {
		return state{}, "", err
	}
	rep, ok := resp.Body.(*getReply)
	if !ok {
		return state{}, "", fmt.Errorf("%w: %s answered a get with %v", ErrProtocol, m.ID, resp.Body.kind())
	}
	st, err := decodeState(rep.State)
	return st, rep.Actor, err
}
