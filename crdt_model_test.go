// crdt_model_test.go: the convergent types through real §4.4 versioning
// (mint at a coordinator, syncStates between replicas, stale and concurrent
// writers) checked against their specifications, and the OR-set's size
// after 10,000 operations.
package dynamo

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// crdtModel is the replicas of one key. Writes are minted by the real mint
// at a coordinator replica, and replicas exchange states with syncStates, as
// read repair, hints and anti-entropy do.
type crdtModel struct {
	actors   []string
	replicas []state
	now      int64
}

func newCRDTModel(n int) *crdtModel {
	m := &crdtModel{replicas: make([]state, n)}
	for i := range n {
		m.actors = append(m.actors, fmt.Sprintf("n%d/0a1b2c3d4e5f.%d", i, i))
	}
	return m
}

// read merges the states of the replicas in idx: a quorum read.
func (m *crdtModel) read(idx []int) state {
	var st state
	for _, i := range idx {
		st = syncStates(st, m.replicas[i])
	}
	return st
}

// write mints value at coordinator c with the context ctx and returns its dot.
func (m *crdtModel) write(c int, ctx versionVector, value []byte) dot {
	m.now++
	next, d := mint(m.replicas[c], ctx, m.actors[c], value, false, m.now)
	m.replicas[c] = next
	return d
}

func (m *crdtModel) sync(from, to int) { m.replicas[to] = syncStates(m.replicas[to], m.replicas[from]) }

func (m *crdtModel) syncAll() {
	for i := range m.replicas {
		for j := range m.replicas {
			m.sync(i, j)
		}
	}
}

// drawReplicas draws a non-empty set of replicas to read.
func (m *crdtModel) drawReplicas(t *rapid.T, label string) []int {
	idx := rapid.SliceOfNDistinct(rapid.IntRange(0, len(m.replicas)-1), 1, len(m.replicas), rapid.ID[int]).Draw(t, label)
	slices.Sort(idx)
	return idx
}

// orSpec is the textbook observed-remove set: every add has a unique tag,
// a remove cancels the tags of the element it observed, and states merge
// by union. An element is in the set while one of its tags is not cancelled.
type orSpec struct {
	adds      map[int]string
	cancelled map[int]bool
}

func (s orSpec) clone() orSpec {
	return orSpec{adds: maps.Clone(s.adds), cancelled: maps.Clone(s.cancelled)}
}

func (s orSpec) union(o orSpec) orSpec {
	out := s.clone()
	maps.Copy(out.adds, o.adds)
	maps.Copy(out.cancelled, o.cancelled)
	return out
}

func (s orSpec) elements() []string {
	in := map[string]bool{}
	for tag, e := range s.adds {
		if !s.cancelled[tag] {
			in[e] = true
		}
	}
	return append([]string{}, slices.Sorted(maps.Keys(in))...)
}

// prepared is a write whose read is done and whose value is built: it may
// be written much later, so it is concurrent with what happens meanwhile.
type prepared[S any] struct {
	ctx   versionVector
	value []byte
	spec  S
}

// TestORSet_Model_MatchesSpec: whatever replicas a read reaches, the merged
// set of its siblings is exactly the textbook OR-set of the writes it
// covers, with writes through any coordinator, stale contexts, concurrent
// writers through one coordinator, and replicas syncing in any order.
func TestORSet_Model_MatchesSpec(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := newCRDTModel(3)
		specs := map[dot]orSpec{} // each write's state
		readSpec := func(st state) orSpec {
			out := orSpec{adds: map[int]string{}, cancelled: map[int]bool{}}
			for _, sb := range st.Siblings {
				out = out.union(specs[sb.Dot])
			}
			return out
		}
		check := func(st state, label string) *ORSet[string] {
			set, err := resolveSet[string](nil, st, Context{vv: st.VV})
			require.NoError(t, err)
			require.Equal(t, readSpec(st).elements(), set.Elements(), "%s: the merged set differs from the OR-set spec", label)
			return set
		}
		var pending []prepared[orSpec]
		tags := 0
		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for step := range steps {
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0, 1: // a client reads and builds an update
				st := m.read(m.drawReplicas(t, "read"))
				set := check(st, fmt.Sprintf("step %d read", step))
				sp := readSpec(st).clone()
				e := rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "elem")
				if rapid.Bool().Draw(t, "add") {
					set.Add(e)
					tags++
					sp.adds[tags] = e
				} else {
					set.Remove(e)
					for tag, x := range sp.adds {
						if x == e {
							sp.cancelled[tag] = true
						}
					}
				}
				b, err := encodeSet(set)
				require.NoError(t, err)
				pending = append(pending, prepared[orSpec]{st.VV, b, sp})
			case 2: // a prepared update is written through some coordinator
				if len(pending) == 0 {
					continue
				}
				i := rapid.IntRange(0, len(pending)-1).Draw(t, "which")
				p := pending[i]
				pending = slices.Delete(pending, i, i+1)
				d := m.write(rapid.IntRange(0, 2).Draw(t, "coordinator"), p.ctx, p.value)
				specs[d] = p.spec
			case 3:
				m.sync(rapid.IntRange(0, 2).Draw(t, "from"), rapid.IntRange(0, 2).Draw(t, "to"))
			case 4:
				check(m.read(m.drawReplicas(t, "check")), fmt.Sprintf("step %d check", step))
			}
		}
		m.syncAll()
		want := check(m.replicas[0], "converged")
		for i := range m.replicas {
			require.True(t, sameVersion(m.replicas[0], m.replicas[i]))
			require.Equal(t, want.Elements(), check(m.replicas[i], "converged").Elements())
		}
	})
}

// TestCounter_Model_MatchesSpec: the merged counter of any read is the sum
// of the changes of exactly the writes it covers, each counted once.
func TestCounter_Model_MatchesSpec(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := newCRDTModel(3)
		specs := map[dot]map[int]int64{} // each write's changes seen, by change ID
		readSpec := func(st state) map[int]int64 {
			out := map[int]int64{}
			for _, sb := range st.Siblings {
				maps.Copy(out, specs[sb.Dot])
			}
			return out
		}
		check := func(st state, label string) {
			c, err := resolveCounter(nil, st, Context{vv: st.VV})
			require.NoError(t, err)
			var want int64
			for _, v := range readSpec(st) {
				want += v
			}
			require.Equal(t, want, c.Value(), "%s", label)
		}
		var pending []prepared[map[int]int64]
		changes := 0
		for step := range rapid.IntRange(1, 40).Draw(t, "steps") {
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0, 1:
				st := m.read(m.drawReplicas(t, "read"))
				check(st, fmt.Sprintf("step %d read", step))
				c, err := resolveCounter(nil, st, Context{vv: st.VV})
				require.NoError(t, err)
				delta := rapid.Int64Range(-3, 5).Draw(t, "delta")
				c.Add(delta)
				sp := maps.Clone(readSpec(st))
				changes++
				sp[changes] = delta
				pending = append(pending, prepared[map[int]int64]{st.VV, encodeCounter(c), sp})
			case 2:
				if len(pending) == 0 {
					continue
				}
				i := rapid.IntRange(0, len(pending)-1).Draw(t, "which")
				p := pending[i]
				pending = slices.Delete(pending, i, i+1)
				specs[m.write(rapid.IntRange(0, 2).Draw(t, "coordinator"), p.ctx, p.value)] = p.spec
			case 3:
				m.sync(rapid.IntRange(0, 2).Draw(t, "from"), rapid.IntRange(0, 2).Draw(t, "to"))
			case 4:
				check(m.read(m.drawReplicas(t, "check")), fmt.Sprintf("step %d check", step))
			}
		}
		m.syncAll()
		check(m.replicas[0], "converged")
	})
}

// TestORSet_Size: an OR-set of about 1,000 elements after 10,000 adds and
// removes (300 after 1,500 with -short or -race) through 5 coordinators, with stale reads (R=2 of 5), writes
// replicated to one more replica and anti-entropy now and then, stays under
// twice its elements' bytes plus a term that grows with the actors only:
// removed elements leave nothing behind, and each element carries one small
// dot.
func TestORSet_Size(t *testing.T) {
	ops, size := 10_000, 1000 // 3.5s of CPU; about 30s with -race, which runs a smaller case
	if testing.Short() || raceEnabled {
		ops, size = 1500, 300
	}
	m := newCRDTModel(5)
	rng := rand.New(rand.NewPCG(1, 2))
	next := 0
	var set *ORSet[string]
	for i := range ops {
		c := rng.IntN(5)
		st := m.read([]int{c, rng.IntN(5)})
		var err error
		set, err = resolveSet[string](nil, st, Context{vv: st.VV})
		require.NoError(t, err)
		if n := set.Len(); n < size || (n == size && rng.IntN(2) == 0) {
			set.Add(fmt.Sprintf("item-%06d", next))
			next++
		} else {
			elems := set.Elements()
			set.Remove(elems[rng.IntN(len(elems))])
		}
		b, err := encodeSet(set)
		require.NoError(t, err)
		m.write(c, st.VV, b)
		m.sync(c, (c+1)%5)
		if i%100 == 99 {
			m.syncAll()
		}
	}
	m.syncAll()
	st := m.replicas[0]
	set, err := resolveSet[string](nil, st, Context{vv: st.VV})
	require.NoError(t, err)
	stored, err := encodeSet(set) // what the next write stores
	require.NoError(t, err)

	elemBytes, actorTerm := 0, 16
	for _, e := range set.Elements() {
		elemBytes += len(e)
	}
	for _, a := range newActorTable(set.clock).names {
		actorTerm += len(a) + 16 // the name, its counter, its share of the headers
	}
	table, err := encodeSet(&ORSet[string]{clock: set.clock})
	require.NoError(t, err)
	t.Logf("%d ops, %d elements of %d bytes, %d actors: stored set %d bytes (%.2fx the elements' bytes; %d of them the clock and headers; bound %d = 2x + %d for the actors); the key held %d siblings",
		ops, set.Len(), elemBytes, len(newActorTable(set.clock).names), len(stored), float64(len(stored))/float64(elemBytes), len(table), 2*elemBytes+actorTerm, actorTerm, len(st.Siblings))
	require.InDelta(t, size, set.Len(), 5)
	require.Len(t, newActorTable(set.clock).names, 5, "one clock entry per coordinator")
	require.Less(t, len(stored), 2*elemBytes+actorTerm)
}
