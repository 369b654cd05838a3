// indexes.go: DESIGN §4 the indexes a replica keeps beside its data, moved
// by its one write path: the tombstone-only keys (§4.7 purge candidates)
// and the keys whose version vectors may hold dead entries (DESIGN §2
// folding), with the fold protocol's pending entries.
package dynamo

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"time"
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
	slices.SortFunc(out, bytes.Compare) // a fixed order: rounds replay
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
