// vclock.go: §4.4 data versioning with dotted version vectors: dots, version
// vectors, a key's sibling state, and the sync rule that merges replicas.
package dynamo

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
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

// clone returns a deep copy of s: its vector, siblings and values.
func (s state) clone() state {
	c := state{VV: slices.Clone(s.VV), Siblings: slices.Clone(s.Siblings)}
	for i := range c.Siblings {
		c.Siblings[i].Value = slices.Clone(c.Siblings[i].Value)
	}
	return c
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
//
// A dot names one event, so two versions under one dot (which only a node
// that lost data and issued the dot again, or a damaged disk, produces) are
// a conflict: neither keeps the dot; each moves to a dot of its own, derived
// from the dot and its content (redot), so that both stay visible and every
// replica that meets the conflict derives the same dots. The derived dots'
// entries in the vector mark the dot as conflicted, so a version still under
// it that arrives later (one more version, or a stale copy of one that
// moved) moves too. A moved version obeys the sync rule under its new dot: a
// side that has seen that dot without holding it superseded it. Where dots
// were reissued the merge stays commutative and idempotent, and replicas
// still converge, but it cannot always be associative: a replica that
// superseded the dot before the conflict surfaced saw one version under it,
// and nobody can tell which (vclock_conflict_test.go).
func syncStates(a, b state) state {
	st, _ := syncCount(a, b)
	return st
}

// syncCount is syncStates, also returning how many dot conflicts it found.
func syncCount(a, b state) (state, int) {
	if a.empty() {
		return b, 0
	}
	if b.empty() {
		return a, 0
	}
	out := state{VV: join(a.VV, b.VV), Siblings: make([]sibling, 0, max(len(a.Siblings), len(b.Siblings)))}
	var moved []sibling
	conflicts := 0
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
			out.Siblings, moved = syncOne(out.Siblings, moved, a.Siblings[i], b.VV)
			i++
		case c > 0:
			out.Siblings, moved = syncOne(out.Siblings, moved, b.Siblings[j], a.VV)
			j++
		default:
			x, y := a.Siblings[i], b.Siblings[j]
			if sameSibling(x, y) {
				out.Siblings = append(out.Siblings, x)
			} else {
				conflicts++
				x.Dot, y.Dot = redot(x), redot(y)
				moved = append(moved, x, y)
			}
			i++
			j++
		}
	}
	for _, m := range moved {
		if superseded(a, m.Dot) || superseded(b, m.Dot) {
			continue
		}
		k, found := slices.BinarySearchFunc(out.Siblings, m.Dot, func(sb sibling, d dot) int { return sb.Dot.compare(d) })
		if found {
			continue // held by a side under its moved dot already
		}
		out.VV = out.VV.with(m.Dot.Actor, m.Dot.Counter)
		out.Siblings = slices.Insert(out.Siblings, k, m)
	}
	return out, conflicts
}

// syncOne applies the sync rule to sb, held by one side only, against the
// other side's vector: sb moves off its dot if the other side knows the dot
// is conflicted, is dropped if the other side has seen it, and is kept
// otherwise.
func syncOne(out, moved []sibling, sb sibling, other versionVector) ([]sibling, []sibling) {
	switch {
	case conflictedAt(other, sb.Dot):
		sb.Dot = redot(sb)
		moved = append(moved, sb)
	case !other.covers(sb.Dot):
		out = append(out, sb)
	}
	return out, moved
}

// superseded reports whether st has seen d without holding it.
func superseded(st state, d dot) bool {
	return st.VV.covers(d) && !slices.ContainsFunc(st.Siblings, func(sb sibling) bool { return sb.Dot == d })
}

// sameSibling reports whether x and y are the same version.
func sameSibling(x, y sibling) bool {
	return x.Dot == y.Dot && x.Time == y.Time && x.Tombstone == y.Tombstone && bytes.Equal(x.Value, y.Value)
}

// derived reports whether actor names versions moved off a conflicted dot:
// its last '#' comes after its last '.', which no Store actor's epoch has.
func derived(actor string) bool {
	return strings.LastIndexByte(actor, '#') > strings.LastIndexByte(actor, '.')
}

// conflictedAt reports whether vv has seen versions moved off d (see
// syncStates): an entry of a derived actor of d's actor at d's counter.
func conflictedAt(vv versionVector, d dot) bool {
	if derived(d.Actor) {
		return false
	}
	base := redotBase(d.Actor)
	i, _ := vv.find(base)
	for ; i < len(vv) && strings.HasPrefix(vv[i].Actor, base); i++ {
		if a := vv[i].Actor; vv[i].Counter == d.Counter && len(a) > len(base) && a[len(base)] == '#' && derived(a) {
			return true
		}
	}
	return false
}

// redot returns the dot a version moves to off its conflicted dot: the dot's
// actor plus '#' and a hash of the dot and the version, at the same
// counter. No node mints with such an actor, so the dot is new to every
// replica that has not met the conflict, and the same for every replica
// that has. It stays within maxActorLen.
func redot(sb sibling) dot {
	base := redotBase(sb.Dot.Actor)
	var hdr [25]byte
	binary.LittleEndian.PutUint64(hdr[0:], sb.Dot.Counter)
	binary.LittleEndian.PutUint64(hdr[8:], uint64(sb.Time))
	if sb.Tombstone {
		hdr[16] = 1
	}
	binary.LittleEndian.PutUint64(hdr[17:], uint64(len(sb.Value)))
	h := hashWords(hashWords(hashWords(0x6b763637, []byte(sb.Dot.Actor)), hdr[:]), sb.Value)
	return dot{Actor: fmt.Sprintf("%s#%016x", base, h), Counter: sb.Dot.Counter}
}

// mint applies a write coordinated by actor to the replica state st (DESIGN
// §2). ctx is the caller's causal context: the siblings it covers are
// superseded; the others are concurrent with the write and survive beside it.
// The new sibling's dot is the actor's next counter for this key. mint never
// modifies st and returns the new state and the new sibling's dot.
func mint(st state, ctx versionVector, actor string, value []byte, tombstone bool, now int64) (state, dot) {
	return mintDotted(st, ctx, dot{}, actor, value, tombstone, now)
}

// mintDotted is mint with a dotted context (DESIGN §2.1): the vector ctx
// plus the one event cd (none when cd.Counter is 0), which the vector need
// not cover. The sibling under cd is superseded like those ctx covers. The
// new state's vector covers cd only when that leaves it contiguous (the
// replica has seen every earlier event of cd's actor): then a copy of cd
// that arrives later is known to be superseded. Otherwise the vector cannot
// say so without also covering events the writer never saw, and a late cd
// survives as a sibling: never lost, at worst one sibling too many.
func mintDotted(st state, ctx versionVector, cd dot, actor string, value []byte, tombstone bool, now int64) (state, dot) {
	vv := join(st.VV, ctx)
	if cd.Counter != 0 && vv.get(cd.Actor) == cd.Counter-1 {
		vv = vv.with(cd.Actor, cd.Counter)
	}
	last := vv.get(actor)
	if cd.Actor == actor {
		last = max(last, cd.Counter) // never mint a dot the context names
	}
	d := dot{Actor: actor, Counter: last + 1}
	out := state{VV: vv.with(actor, d.Counter), Siblings: make([]sibling, 0, len(st.Siblings)+1)}
	inserted := false
	nw := sibling{Dot: d, Time: now, Tombstone: tombstone, Value: value}
	for _, sb := range st.Siblings {
		if ctx.covers(sb.Dot) || (cd.Counter != 0 && sb.Dot == cd) {
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

// concurrentCount is the number of siblings a put with context ctx (and
// the context's dot cd, if any) would leave beside its own: those the
// context does not cover.
func concurrentCount(st state, ctx versionVector, cd dot) int {
	n := 0
	for _, sb := range st.Siblings {
		if !ctx.covers(sb.Dot) && (cd.Counter == 0 || sb.Dot != cd) {
			n++
		}
	}
	return n
}

// redotBase is the part of actor that redot keeps: all of it, unless that
// would take the derived actor past maxActorLen.
func redotBase(actor string) string {
	if len(actor) > maxActorLen-17 {
		return actor[:maxActorLen-17]
	}
	return actor
}

// siblingAfter orders two versions that claim the same dot (see syncStates)
// so that every replica keeps the same one under it.
func siblingAfter(x, y sibling) bool {
	if x.Time != y.Time {
		return x.Time > y.Time
	}
	if x.Tombstone != y.Tombstone {
		return x.Tombstone
	}
	return bytes.Compare(x.Value, y.Value) > 0
}
