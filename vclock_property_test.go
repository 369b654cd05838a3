// vclock_property_test.go: a model-checked random history of §4.4 dotted
// version vectors: clients write through random replicas with fresh or stale
// contexts, replicas merge in any order, and the surviving siblings must be
// exactly the writes no later write's context covered.
package dynamo

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// vcpWrite is one acknowledged write: the dot minted for it and the context
// the client wrote with.
type vcpWrite struct {
	dot       dot
	ctx       versionVector
	value     string
	tombstone bool
}

// vcpModel is a handful of replicas of one key and every write made so far.
type vcpModel struct {
	actors   []string
	replicas []state
	writes   []vcpWrite
	contexts []versionVector // every context a client has read, for stale writes
	pool     []state         // every replica state reached, for the algebra checks
	now      int64
}

func (m *vcpModel) record(st state) { m.pool = append(m.pool, st) }

// write runs a client Put through replica c with context ctx.
func (m *vcpModel) write(t *rapid.T, c int, ctx versionVector) {
	tomb := rapid.IntRange(0, 4).Draw(t, "tombstone") == 0
	value := fmt.Sprintf("w%d", len(m.writes))
	var v []byte
	if !tomb {
		v = []byte(value)
	}
	m.now++
	before := m.replicas[c]
	next, d := mint(before, ctx, m.actors[c], v, tomb, m.now)

	require.Equal(t, m.actors[c], d.Actor)
	require.Equal(t, max(before.VV.get(d.Actor), ctx.get(d.Actor))+1, d.Counter,
		"counter = max(local, ctx) + 1")
	require.False(t, ctx.covers(d), "a write's own context never covers its dot")
	for _, w := range m.writes {
		require.NotEqual(t, w.dot, d, "dot %v minted twice", d)
	}
	m.writes = append(m.writes, vcpWrite{dot: d, ctx: ctx, value: value, tombstone: tomb})
	m.replicas[c] = next
	m.record(next)
}

// read merges the states of the given replicas as a Get would and remembers
// the context it returns.
func (m *vcpModel) read(from []int) versionVector {
	var merged state
	for _, i := range from {
		merged = syncStates(merged, m.replicas[i])
	}
	m.contexts = append(m.contexts, merged.VV)
	return merged.VV
}

func (m *vcpModel) putFresh(t *rapid.T) {
	n := len(m.replicas)
	from := rapid.SliceOfNDistinct(rapid.IntRange(0, n-1), 1, n, rapid.ID[int]).Draw(t, "read from")
	c := rapid.IntRange(0, n-1).Draw(t, "coordinator")
	m.write(t, c, m.read(from))
}

func (m *vcpModel) putStale(t *rapid.T) {
	i := rapid.IntRange(0, len(m.contexts)-1).Draw(t, "remembered context")
	c := rapid.IntRange(0, len(m.replicas)-1).Draw(t, "coordinator")
	m.write(t, c, m.contexts[i])
}

func (m *vcpModel) merge(t *rapid.T) {
	n := len(m.replicas)
	from := rapid.IntRange(0, n-1).Draw(t, "from")
	to := rapid.IntRange(0, n-1).Draw(t, "to")
	m.replicas[to] = syncStates(m.replicas[to], m.replicas[from])
	m.record(m.replicas[to])
}

// seen returns, in dot order, the writes a replica whose vector is vv must
// hold: those it has seen (vv covers the dot) that no other write it has seen
// was written with a context covering. With vv the join of everything, these
// are the writes not superseded anywhere: the pairwise concurrent ones.
func (m *vcpModel) seen(vv versionVector) []vcpWrite {
	var out []vcpWrite
	for i, w := range m.writes {
		if !vv.covers(w.dot) {
			continue
		}
		superseded := slices.ContainsFunc(m.writes, func(o vcpWrite) bool {
			return o.dot != m.writes[i].dot && vv.covers(o.dot) && o.ctx.covers(w.dot)
		})
		if !superseded {
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b vcpWrite) int { return a.dot.compare(b.dot) })
	return out
}

func (m *vcpModel) writeOf(d dot) (vcpWrite, bool) {
	i := slices.IndexFunc(m.writes, func(w vcpWrite) bool { return w.dot == d })
	if i < 0 {
		return vcpWrite{}, false
	}
	return m.writes[i], true
}

// requireExactSiblings checks properties (a) and (b) on one state: its
// siblings are exactly the writes it has seen and not seen superseded, with
// the values they were written with, and so are pairwise concurrent.
func (m *vcpModel) requireExactSiblings(t require.TestingT, name string, st state) {
	vcRequireWellFormed(t, st)
	want := m.seen(st.VV)
	wantDots := make([]dot, len(want))
	for i, w := range want {
		wantDots[i] = w.dot
	}
	gotDots := make([]dot, len(st.Siblings))
	for i, sb := range st.Siblings {
		gotDots[i] = sb.Dot
	}
	require.Equal(t, wantDots, gotDots, "%s %s: siblings are not the seen, unsuperseded writes", name, vcString(st))
	for _, sb := range st.Siblings {
		w, ok := m.writeOf(sb.Dot)
		require.True(t, ok, "%s holds %v, which no client wrote", name, sb.Dot)
		require.Equal(t, w.tombstone, sb.Tombstone, "%s: sibling %v", name, sb.Dot)
		if !w.tombstone {
			require.Equal(t, w.value, string(sb.Value), "%s: sibling %v", name, sb.Dot)
		}
		for _, other := range st.Siblings {
			if other.Dot != sb.Dot {
				require.False(t, w.ctx.covers(other.Dot),
					"%s: sibling %v was superseded by sibling %v: a false conflict", name, other.Dot, sb.Dot)
			}
		}
	}
}

func (m *vcpModel) checkInvariants(t *rapid.T) {
	for i, st := range m.replicas {
		m.requireExactSiblings(t, m.actors[i], st)
	}
}

// vcpRequireSameState requires a and b to be the same version holding the same
// values.
func vcpRequireSameState(t require.TestingT, a, b state, msg string) {
	require.True(t, sameVersion(a, b), "%s: %s vs %s", msg, vcString(a), vcString(b))
	require.Equal(t, vcString(a), vcString(b), msg)
	for i := range a.Siblings {
		require.Equal(t, a.Siblings[i].Time, b.Siblings[i].Time, msg)
	}
}

// checkAlgebra checks property (c) on three states reached by this history.
func (m *vcpModel) checkAlgebra(t *rapid.T) {
	if len(m.pool) == 0 {
		return // nothing to check before the first state exists
	}
	pick := rapid.IntRange(0, len(m.pool)-1)
	a := m.pool[pick.Draw(t, "a")]
	b := m.pool[pick.Draw(t, "b")]
	c := m.pool[pick.Draw(t, "c")]
	sa, sb, sc := vcString(a), vcString(b), vcString(c)

	vcpRequireSameState(t, syncStates(a, b), syncStates(b, a), "commutative")
	vcpRequireSameState(t, syncStates(syncStates(a, b), c), syncStates(a, syncStates(b, c)), "associative")
	vcpRequireSameState(t, syncStates(a, a), a, "idempotent")
	ab := syncStates(a, b)
	vcpRequireSameState(t, syncStates(ab, b), ab, "absorbs a side already merged")
	require.True(t, ab.VV.descends(a.VV) && ab.VV.descends(b.VV), "the merge has seen both sides")

	require.Equal(t, sa, vcString(a), "syncStates modified an input")
	require.Equal(t, sb, vcString(b), "syncStates modified an input")
	require.Equal(t, sc, vcString(c), "syncStates modified an input")
}

// TestVClock_Property_SiblingsAreExactlyTheUnsupersededWrites runs random
// histories of 3-5 replicas and checks (a) no written value disappears unless
// a later write's context covered its dot, and no covered write survives;
// (b) siblings never outnumber the pairwise concurrent writes (at every step
// on every replica they are exactly the writes it has seen and not seen
// superseded); (c) syncStates is commutative, associative and idempotent on
// the states these histories reach.
func TestVClock_Property_SiblingsAreExactlyTheUnsupersededWrites(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(3, 5).Draw(t, "replicas")
		m := &vcpModel{replicas: make([]state, n), contexts: []versionVector{nil}}
		for i := range n {
			// Actors look like the Store's: node ID plus incarnation.
			m.actors = append(m.actors, fmt.Sprintf("n%d/%02x", i, 0xa0+i))
		}
		t.Repeat(map[string]func(*rapid.T){
			"put fresh": m.putFresh,
			"put stale": m.putStale,
			"merge":     m.merge,
			"algebra":   m.checkAlgebra,
			"":          m.checkInvariants,
		})

		// Final anti-entropy: fold every replica in a random order, then
		// hand the result to everyone.
		ids := make([]int, n)
		for i := range ids {
			ids[i] = i
		}
		order := rapid.Permutation(ids).Draw(t, "final merge order")
		var all, reverse state
		for _, i := range order {
			all = syncStates(all, m.replicas[i])
		}
		for _, i := range slices.Backward(order) {
			reverse = syncStates(m.replicas[i], reverse)
		}
		vcpRequireSameState(t, all, reverse, "the final merge does not depend on order")
		for i := range m.replicas {
			m.replicas[i] = syncStates(m.replicas[i], all)
			vcpRequireSameState(t, m.replicas[i], all, "replica converged")
		}

		// (a) and (b) after convergence, stated globally.
		var maximal []dot
		for _, w := range m.writes {
			superseded := slices.ContainsFunc(m.writes, func(o vcpWrite) bool {
				return o.dot != w.dot && o.ctx.covers(w.dot)
			})
			require.True(t, all.VV.covers(w.dot), "every write reached every replica")
			present := slices.ContainsFunc(all.Siblings, func(sb sibling) bool { return sb.Dot == w.dot })
			if superseded {
				require.False(t, present, "write %v survives although a later context covered it", w.dot)
			} else {
				require.True(t, present, "write %v was lost although no context covered it", w.dot)
				maximal = append(maximal, w.dot)
			}
		}
		require.Len(t, all.Siblings, len(maximal), "siblings are exactly the pairwise concurrent writes")
		m.requireExactSiblings(t, "converged", all)
	})
}
