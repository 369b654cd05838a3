// vclock.go: §4.4 data versioning with dotted version vectors: dots, version
// vectors, a key's sibling state, and the sync rule that merges replicas.
package dynamo

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
)

// dot names the one event that created a sibling: the actor's counter-th write.
type dot struct {
	Actor   string
	Counter uint64
}

func (d dot) compare(o dot) int {
	if c := cmp.Compare(d.Actor, o.Actor); c != 0 {
		return c
	}
	return cmp.Compare(d.Counter, o.Counter)
}

// vvEntry is one actor's entry in a version vector.
type vvEntry struct {
	Actor   string
	Counter uint64
}

// versionVector summarises every event seen for one key: for each actor, all
// of its dots with counters 1..Counter. Entries are sorted by actor, unique and
// non-zero. The zero value is the empty vector. A versionVector is never
// modified in place once built; operations return new vectors.
type versionVector []vvEntry

func (v versionVector) find(actor string) (int, bool) {
	return slices.BinarySearchFunc(v, actor, func(e vvEntry, a string) int { return cmp.Compare(e.Actor, a) })
}

// get returns the actor's counter, 0 when absent.
func (v versionVector) get(actor string) uint64 {
	if i, ok := v.find(actor); ok {
		return v[i].Counter
	}
	return 0
}

// covers reports whether the event d is summarised by v.
func (v versionVector) covers(d dot) bool { return v.get(d.Actor) >= d.Counter }

// with returns a copy of v whose actor entry is at least counter.
func (v versionVector) with(actor string, counter uint64) versionVector {
	i, ok := v.find(actor)
	if counter == 0 || (ok && v[i].Counter >= counter) {
		return v
	}
	out := make(versionVector, 0, len(v)+1)
	out = append(out, v[:i]...)
	out = append(out, vvEntry{actor, counter})
	if ok {
		i++
	}
	return append(out, v[i:]...)
}

// join returns the pointwise maximum of a and b.
func join(a, b versionVector) versionVector {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make(versionVector, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := cmp.Compare(a[i].Actor, b[j].Actor); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, vvEntry{a[i].Actor, max(a[i].Counter, b[j].Counter)})
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// descends reports whether v has seen everything o has (v >= o pointwise).
func (v versionVector) descends(o versionVector) bool {
	for _, e := range o {
		if v.get(e.Actor) < e.Counter {
			return false
		}
	}
	return true
}

func (v versionVector) equal(o versionVector) bool {
	return slices.Equal(v, o)
}

// sibling is one concurrent version of a key's value. A tombstone is a
// sibling with no value that records a delete; it keeps its dot so the delete
// supersedes exactly what its writer had seen.
type sibling struct {
	Dot       dot
	Time      int64 // wall-clock nanoseconds from the coordinator's Clock
	Tombstone bool
	Value     []byte
}

// state is what one replica holds for one key: the surviving siblings, sorted
// by dot, and the version vector of every event the replica has seen for the
// key (which covers every sibling's dot). The zero value is an absent key.
type state struct {
	VV       versionVector
	Siblings []sibling
}

func (s state) empty() bool { return len(s.VV) == 0 && len(s.Siblings) == 0 }

// live returns the siblings that are not tombstones.
func (s state) live() []sibling {
	n := 0
	for _, sb := range s.Siblings {
		if !sb.Tombstone {
			n++
		}
	}
	if n == len(s.Siblings) {
		return s.Siblings
	}
	out := make([]sibling, 0, n)
	for _, sb := range s.Siblings {
		if !sb.Tombstone {
			out = append(out, sb)
		}
	}
	return out
}

// sameVersion reports whether a and b hold the same causal history and the same
// siblings. Two replicas with the same version need no repair.
func sameVersion(a, b state) bool {
	if !a.VV.equal(b.VV) || len(a.Siblings) != len(b.Siblings) {
		return false
	}
	for i := range a.Siblings {
		if a.Siblings[i].Dot != b.Siblings[i].Dot {
			return false
		}
	}
	return true
}

// syncStates merges two replicas' states of one key (DESIGN §2): a sibling
// survives if both sides hold it, or if the other side has not seen its dot;
// the vectors join pointwise. syncStates is commutative, associative and
// idempotent, so replicas may exchange states in any order, any number of times.
// Neither input is modified; the result may share value slices with them.
func syncStates(a, b state) state {
	if a.empty() {
		return b
	}
	if b.empty() {
		return a
	}
	out := state{VV: join(a.VV, b.VV), Siblings: make([]sibling, 0, max(len(a.Siblings), len(b.Siblings)))}
	i, j := 0, 0
	for i < len(a.Siblings) || j < len(b.Siblings) {
		var c int
		switch {
		case i == len(a.Siblings):
			c = 1
		case j == len(b.Siblings):
			c = -1
		default:
			c = a.Siblings[i].Dot.compare(b.Siblings[j].Dot)
		}
		switch {
		case c < 0: // only a has it: keep unless b has seen (and so superseded) it
			if !b.VV.covers(a.Siblings[i].Dot) {
				out.Siblings = append(out.Siblings, a.Siblings[i])
			}
			i++
		case c > 0:
			if !a.VV.covers(b.Siblings[j].Dot) {
				out.Siblings = append(out.Siblings, b.Siblings[j])
			}
			j++
		default: // both: one event, so one value; pick deterministically if a disk lied
			sa, sb := a.Siblings[i], b.Siblings[j]
			if siblingAfter(sb, sa) {
				sa = sb
			}
			out.Siblings = append(out.Siblings, sa)
			i++
			j++
		}
	}
	return out
}

// mint applies a write coordinated by actor to the replica state st (DESIGN
// §2). ctx is the caller's causal context: the siblings it covers are
// superseded; the others are concurrent with the write and survive beside it.
// The new sibling's dot is the actor's next counter for this key. mint never
// modifies st and returns the new state and the new sibling's dot.
func mint(st state, ctx versionVector, actor string, value []byte, tombstone bool, now int64) (state, dot) {
	d := dot{Actor: actor, Counter: max(st.VV.get(actor), ctx.get(actor)) + 1}
	out := state{VV: join(st.VV, ctx).with(actor, d.Counter), Siblings: make([]sibling, 0, len(st.Siblings)+1)}
	inserted := false
	nw := sibling{Dot: d, Time: now, Tombstone: tombstone, Value: value}
	for _, sb := range st.Siblings {
		if ctx.covers(sb.Dot) {
			continue
		}
		if !inserted && nw.Dot.compare(sb.Dot) < 0 {
			out.Siblings = append(out.Siblings, nw)
			inserted = true
		}
		out.Siblings = append(out.Siblings, sb)
	}
	if !inserted {
		out.Siblings = append(out.Siblings, nw)
	}
	return out, d
}

// mintable reports why mint(st, ctx, actor, ...) would build a state that
// the decoder rejects (DESIGN §8: no input makes a stored state
// undecodable), or nil: the new dot's counter must stay within maxCounter,
// and the joined vector within maxDecodedActors. Both can only be reached
// through an edited context, so the error matches ErrBadContext.
func mintable(st state, ctx versionVector, actor string) error {
	if c := max(st.VV.get(actor), ctx.get(actor)); c >= maxCounter {
		return fmt.Errorf("%w: counter %d of actor %q leaves no room for a new version (the limit is %d)", ErrBadContext, c, actor, uint64(maxCounter))
	}
	if n := joinedLen(st.VV, ctx) + 1; n > maxDecodedActors {
		return fmt.Errorf("%w: the key's vector would hold %d actors, the limit is %d", ErrBadContext, n, maxDecodedActors)
	}
	return nil
}

// decodable reports why the decoder would reject st, or nil. Merges of
// decodable states can only break the count limits.
func decodable(st state) error {
	if len(st.VV) > maxDecodedActors {
		return fmt.Errorf("%w: the merged vector would hold %d actors, the limit is %d", ErrValueTooLarge, len(st.VV), maxDecodedActors)
	}
	if len(st.Siblings) > maxDecodedSiblings {
		return fmt.Errorf("%w: the merge would hold %d siblings, the limit is %d", ErrTooManySiblings, len(st.Siblings), maxDecodedSiblings)
	}
	return nil
}

// joinedLen is len(join(a, b)), without building it.
func joinedLen(a, b versionVector) int {
	n, i, j := 0, 0, 0
	for i < len(a) && j < len(b) {
		switch c := cmp.Compare(a[i].Actor, b[j].Actor); {
		case c < 0:
			i++
		case c > 0:
			j++
		default:
			i++
			j++
		}
		n++
	}
	return n + len(a) - i + len(b) - j
}

// concurrentCount is the number of siblings a put with context ctx would leave
// beside its own: those ctx does not cover.
func concurrentCount(st state, ctx versionVector) int {
	n := 0
	for _, sb := range st.Siblings {
		if !ctx.covers(sb.Dot) {
			n++
		}
	}
	return n
}

// siblingAfter orders two siblings that claim the same dot (which only a
// damaged disk produces) so that every replica keeps the same one.
func siblingAfter(x, y sibling) bool {
	if x.Time != y.Time {
		return x.Time > y.Time
	}
	if x.Tombstone != y.Tombstone {
		return x.Tombstone
	}
	return bytes.Compare(x.Value, y.Value) > 0
}
