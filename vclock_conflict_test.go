// vclock_conflict_test.go: §4.4 dotted version vectors when a replica loses
// data and issues dots again (issue 20): random histories in which replicas
// go back to earlier states, and the merge must stay a join (commutative,
// associative, idempotent), keep every stored state well formed, and lose no
// version that no context covered.
package dynamo

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// cfModel is a few replicas of one key, each minting with its own actor, and
// every state each has held (to go back to one).
type cfModel struct {
	actors   []string
	replicas []state
	history  [][]state // per replica, every state it held
	values   []string  // every value written
	pool     []state
	blind    bool // no write covers anything: every value must survive
	now      int64
}

func (m *cfModel) set(i int, st state) {
	m.replicas[i] = st
	m.history[i] = append(m.history[i], st)
	m.pool = append(m.pool, st)
}

// write mints a new value through replica c, with the context of a read of
// some replicas (or none, when blind).
func (m *cfModel) write(t *rapid.T) {
	c := rapid.IntRange(0, len(m.replicas)-1).Draw(t, "coordinator")
	var ctx versionVector
	if !m.blind {
		for _, i := range rapid.SliceOfDistinct(rapid.IntRange(0, len(m.replicas)-1), rapid.ID[int]).Draw(t, "read from") {
			ctx = syncStates(state{VV: ctx}, m.replicas[i]).VV
		}
	}
	m.now++
	v := fmt.Sprintf("v%d", len(m.values))
	m.values = append(m.values, v)
	next, _ := mint(m.replicas[c], ctx, m.actors[c], []byte(v), false, m.now)
	m.set(c, next)
}

// lose sends replica i back to one of its earlier states (or to nothing): a
// rolled-back disk that keeps its actor, so its next write reissues dots.
func (m *cfModel) lose(t *rapid.T) {
	i := rapid.IntRange(0, len(m.replicas)-1).Draw(t, "replica")
	k := rapid.IntRange(-1, len(m.history[i])-1).Draw(t, "back to")
	var st state
	if k >= 0 {
		st = m.history[i][k]
	}
	m.set(i, st)
}

func (m *cfModel) merge(t *rapid.T) {
	from := rapid.IntRange(0, len(m.replicas)-1).Draw(t, "from")
	to := rapid.IntRange(0, len(m.replicas)-1).Draw(t, "to")
	m.set(to, syncStates(m.replicas[to], m.replicas[from]))
}

func (m *cfModel) algebra(t *rapid.T) {
	if len(m.pool) == 0 {
		return
	}
	pick := rapid.IntRange(0, len(m.pool)-1)
	a, b, c := m.pool[pick.Draw(t, "a")], m.pool[pick.Draw(t, "b")], m.pool[pick.Draw(t, "c")]
	ab := syncStates(a, b)
	vcRequireWellFormed(t, ab)
	require.NoError(t, decodable(ab))
	vcpRequireSameState(t, ab, syncStates(b, a), "commutative")
	if m.blind {
		vcpRequireSameState(t, syncStates(ab, c), syncStates(a, syncStates(b, c)), "associative")
	}
	vcpRequireSameState(t, syncStates(a, a), a, "idempotent")
	vcpRequireSameState(t, syncStates(ab, b), ab, "absorbs a side already merged")
}

// TestVClock_Property_ConflictsMergeAsAJoin runs histories in which replicas
// lose data and reissue dots. On every state reached the merge is
// commutative and idempotent and keeps states well formed, and replicas
// that merge pairwise converge to one state. With blind writes only (no
// context covers anything) it is also associative, and every value the
// replicas hold survives. (With contexts it cannot always be associative: a
// replica that superseded a dot before the conflict on it surfaced has seen
// one version under it, and no replica can tell which.)
func TestVClock_Property_ConflictsMergeAsAJoin(t *testing.T) {
	for _, blind := range []bool{true, false} {
		t.Run(fmt.Sprintf("blind=%t", blind), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				n := rapid.IntRange(2, 4).Draw(t, "replicas")
				m := &cfModel{replicas: make([]state, n), history: make([][]state, n), blind: blind}
				for i := range n {
					m.actors = append(m.actors, fmt.Sprintf("n%d/%02x.%d", i, 0xa0+i, i))
				}
				t.Repeat(map[string]func(*rapid.T){
					"write":   m.write,
					"lose":    m.lose,
					"merge":   m.merge,
					"algebra": m.algebra,
				})
				before := slices.Clone(m.replicas)
				// Anti-entropy: pairwise merges until nothing changes.
				for round := 0; ; round++ {
					require.Less(t, round, 4*n, "the replicas never converged")
					changed := false
					for i := range n {
						for j := range n {
							next := syncStates(m.replicas[i], m.replicas[j])
							if vcString(next) != vcString(m.replicas[i]) {
								m.replicas[i], changed = next, true
							}
						}
					}
					if !changed {
						break
					}
				}
				all := m.replicas[0]
				for i := range n {
					vcpRequireSameState(t, m.replicas[i], all, "converged")
				}
				vcRequireWellFormed(t, all)
				if !blind {
					return
				}
				// Every value some replica held before the final merges
				// survives: no context covered it.
				held := map[string]bool{}
				for _, st := range before {
					for _, sb := range st.Siblings {
						held[string(sb.Value)] = true
					}
				}
				got := map[string]bool{}
				for _, sb := range all.Siblings {
					got[string(sb.Value)] = true
				}
				for v := range held {
					require.True(t, got[v], "value %s was lost in the merge: %s", v, vcString(all))
				}
			})
		})
	}
}
