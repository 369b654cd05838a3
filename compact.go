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
	"slices"
	"strings"
	"sync"
	"time"
)

// foldIndex tracks the keys whose vector probably holds dead entries (see
// mayFold), with, for those this node is the first primary of, the entries
// every primary was seen to hold dead and since when. It is rebuilt with the
// hash tree at start-up.
type foldIndex struct {
	mu      sync.Mutex
	keys    map[string]struct{}
	pending map[string]foldPending
}

// foldPending is a set of dead entries that every primary of a key held at
// since, each at exactly its counter and with no live sibling.
type foldPending struct {
	entries versionVector
	since   time.Time
}

// maxFoldKeys bounds the index; keys beyond it wait for a later write or
// restart to be indexed.
const maxFoldKeys = 1 << 20

func newFoldIndex() *foldIndex {
	return &foldIndex{keys: map[string]struct{}{}, pending: map[string]foldPending{}}
}

// note indexes key if st probably holds dead entries, and drops it
// otherwise.
func (f *foldIndex) note(key []byte, st state, n int) {
	may := mayFold(st, n)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !may {
		delete(f.keys, string(key))
		delete(f.pending, string(key))
	} else if len(f.keys) < maxFoldKeys {
		f.keys[string(key)] = struct{}{}
	}
}

func (f *foldIndex) list() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]byte, 0, len(f.keys))
	for k := range f.keys {
		out = append(out, []byte(k))
	}
	return out
}

func (f *foldIndex) drop(key []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, string(key))
	delete(f.pending, string(key))
}

// mayFold is the cheap test of the index, run on every stored write: st's
// vector has an entry without a live sibling that is a dot moved off a
// conflict, or belongs to a node that has another entry (an earlier run or
// incarnation), or the vector is wider than 2n entries. Which entries are
// dead is decided by foldable, with the primaries.
func mayFold(st state, n int) bool {
	if len(st.VV) > 2*n {
		return true
	}
	for i, e := range st.VV {
		if hasSibling(st, e.Actor) {
			continue
		}
		if derived(e.Actor) {
			return true
		}
		node := nodeOf(e.Actor)
		for j, o := range st.VV {
			if j != i && !derived(o.Actor) && nodeOf(o.Actor) == node {
				return true
			}
		}
	}
	return false
}

// nodeOf returns the node ID part of a Store's actor (NodeID/incarnation.epoch).
func nodeOf(actor string) string {
	if i := strings.LastIndexByte(actor, '/'); i >= 0 {
		return actor[:i]
	}
	return actor
}

func hasSibling(st state, actor string) bool {
	return slices.ContainsFunc(st.Siblings, func(sb sibling) bool { return sb.Dot.Actor == actor })
}

// foldable returns the entries of st without a live sibling, except the
// actors in live (the actors the primaries would mint the key's next
// version with).
func foldable(st state, live []string) versionVector {
	var out versionVector
	for _, e := range st.VV {
		if !hasSibling(st, e.Actor) && !slices.Contains(live, e.Actor) {
			out = append(out, e)
		}
	}
	return out
}

// agreed keeps the entries of f that st holds at exactly their counter with
// no live sibling.
func agreed(f versionVector, st state) versionVector {
	var out versionVector
	for _, e := range f {
		if st.VV.get(e.Actor) == e.Counter && !hasSibling(st, e.Actor) {
			out = append(out, e)
		}
	}
	return out
}

// compactRound folds dead vector entries of the keys this node is the first
// primary of, paced like anti-entropy. An entry is folded once every primary
// held it dead at two reads at least Config.TombstoneGrace apart (the
// bound on how long a hint or a message stays in flight, so that no copy
// of a version the entry covered is left to come back); each primary drops
// it only if it still holds it dead. It returns how many keys it folded.
func (s *Store) compactRound(ctx context.Context) int {
	r := s.ring.Load()
	folded := 0
	for _, key := range s.folds.list() {
		if ctx.Err() != nil {
			break
		}
		primaries := r.preference(r.partition(key), s.cfg.N)
		if len(primaries) < s.cfg.N || primaries[0].ID != s.cfg.NodeID {
			s.folds.drop(key)
			continue
		}
		if err := s.aePace.wait(ctx, 1, s.cfg.AntiEntropy.KeysPerSecond); err != nil {
			break
		}
		if s.compactKey(ctx, key, primaries) {
			folded++
		}
	}
	return folded
}

// compactKey runs one round of the fold protocol for key; see compactRound.
func (s *Store) compactKey(ctx context.Context, key []byte, primaries []Member) bool {
	var states []state
	var live []string
	req := encodeMessage(&message{Version: protocolVersion, Kind: kindGet, Cluster: s.wireCluster, Key: key, Flags: flagNoReadThrough | flagWantActor})
	for _, m := range primaries {
		if !s.reachable(m.ID) {
			return false
		}
		st, actor, err := s.readReplicaActor(ctx, m, key, req)
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
	ripe := s.folds.advance(key, ready, keep, s.cfg.Clock(), s.cfg.TombstoneGrace)
	if len(ripe) == 0 {
		return false
	}
	fold := encodeMessage(&message{Version: protocolVersion, Kind: kindFold, Cluster: s.wireCluster, Key: key, Context: ripe})
	for _, m := range primaries {
		var err error
		if m.ID == s.cfg.NodeID {
			err = s.localFold(key, ripe)
		} else {
			_, err = s.call(ctx, m, fold)
		}
		if err != nil {
			s.log.Debug("fold failed", "key", key, "replica", m.ID, "err", err)
		}
	}
	return true
}

// advance records the candidate entries of key found in a round (keep:
// dead on every primary that has caught up with them), of which ready are
// dead on every primary, and returns those to fold: ready now, and
// candidates since a round at least grace ago.
func (f *foldIndex) advance(key []byte, ready, keep versionVector, now time.Time, grace time.Duration) versionVector {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := string(key)
	if len(keep) == 0 {
		delete(f.pending, k)
		delete(f.keys, k)
		return nil
	}
	p, ok := f.pending[k]
	still := agreedEntries(p.entries, keep)
	switch {
	case !ok || len(still) == 0:
		f.pending[k] = foldPending{entries: keep, since: now}
		return nil
	case now.Sub(p.since) < grace:
		f.pending[k] = foldPending{entries: still, since: p.since}
		return nil
	}
	ripe := agreedEntries(still, ready)
	var waiting, later versionVector // candidates since p.since not ready yet, and newer ones
	for _, e := range keep {
		switch {
		case ripe.get(e.Actor) == e.Counter:
		case still.get(e.Actor) == e.Counter:
			waiting = append(waiting, e)
		default:
			later = append(later, e)
		}
	}
	switch {
	case len(waiting) > 0:
		f.pending[k] = foldPending{entries: waiting, since: p.since}
	case len(later) > 0:
		f.pending[k] = foldPending{entries: later, since: now}
	default:
		delete(f.pending, k)
	}
	return ripe
}

// agreedEntries keeps the entries of a that b holds at the same counter.
func agreedEntries(a, b versionVector) versionVector {
	var out versionVector
	for _, e := range a {
		if b.get(e.Actor) == e.Counter {
			out = append(out, e)
		}
	}
	return out
}

// readReplicaActor reads key's state from one replica (locally when m is
// this node) and the actor that replica would mint the key's next version
// with ("" for a fresh epoch). req is the encoded kindGet with
// flagWantActor.
func (s *Store) readReplicaActor(ctx context.Context, m Member, key, req []byte) (state, string, error) {
	if m.ID == s.cfg.NodeID {
		st, err := s.localRead(key)
		if err != nil {
			return state{}, "", err
		}
		return st, s.ownActor(key, st), nil
	}
	resp, err := s.call(ctx, m, req)
	if err != nil {
		return state{}, "", err
	}
	if resp.Kind != kindGetReply {
		return state{}, "", fmt.Errorf("%w: %s answered a get with %v", ErrProtocol, m.ID, resp.Kind)
	}
	st, err := decodeState(resp.State)
	return st, resp.Hint, err
}

// localFold drops from key's vector each entry of entries that it still
// holds at exactly that counter with no live sibling.
func (s *Store) localFold(key []byte, entries versionVector) error {
	var folded state
	changed, n := false, 0
	err := s.updateData(key, func(cur []byte) ([]byte, bool, error) {
		st, err := decodeState(cur)
		drop := agreed(entries, st)
		if err != nil || len(drop) == 0 {
			changed = false
			return slices.Clone(cur), err == nil && onlyTombstones(st), nil // damaged, gone or changed: nothing to fold
		}
		st.VV = slices.DeleteFunc(slices.Clone(st.VV), func(e vvEntry) bool { return drop.get(e.Actor) == e.Counter })
		folded, changed, n = st, true, len(drop)
		return encodeState(st), onlyTombstones(st), nil
	})
	if err == nil && changed {
		s.folds.note(key, folded, s.cfg.N)
		s.stats.entriesFolded.Add(int64(n))
	}
	return err
}
