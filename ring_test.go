// ring_test.go: layer-1 tests of §4.2-4.3 and §6.2 placement: distinct
// physical nodes in every preference list, a ring that is a pure function of
// the member set, balance at 100 nodes, and minimal movement on join and leave.
package dynamo

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// rgKeep is the stored preference-list length the Store uses for N=3.
const rgKeep = 2*DefaultN + 2

// rgMembers returns n members named node-000, node-001, ...
func rgMembers(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = rgMember(i)
	}
	return ms
}

func rgMember(i int) Member {
	id := fmt.Sprintf("node-%03d", i)
	return Member{ID: id, Addr: "addr-" + id}
}

// rgKeys returns n random keys from a fixed seed.
func rgKeys(n int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	keys := make([][]byte, n)
	for i := range keys {
		k := make([]byte, 8+rng.IntN(24))
		for j := range k {
			k[j] = byte(rng.Uint32())
		}
		keys[i] = k
	}
	return keys
}

func rgIDs(ms []Member) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// Reference: §4.3 "the preference list for a key is constructed by skipping
// positions in the ring to ensure that the list contains only distinct
// physical nodes".
func TestRing_PreferenceList_NeverRepeatsANode(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := map[string]struct {
		members, partitions, keep int
	}{
		"one node":                     {members: 1, partitions: 16, keep: rgKeep},
		"two nodes":                    {members: 2, partitions: 64, keep: rgKeep},
		"three nodes, keep 1":          {members: 3, partitions: 64, keep: 1},
		"five nodes":                   {members: 5, partitions: 256, keep: rgKeep},
		"eight nodes, keep all":        {members: 8, partitions: 256, keep: rgKeep},
		"twelve nodes, beyond keep":    {members: 12, partitions: 256, keep: rgKeep},
		"forty nodes, small keep":      {members: 40, partitions: 128, keep: 3},
		"one partition":                {members: 7, partitions: 1, keep: rgKeep},
		"keep larger than the members": {members: 4, partitions: 64, keep: 100},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// A random member set: random IDs, not just node-000..
			ms := make([]Member, tc.members)
			for i := range ms {
				ms[i] = Member{ID: fmt.Sprintf("m%x", rng.Uint64()), Addr: fmt.Sprint(i)}
			}
			r := newRing(ms, tc.partitions, tc.keep)
			all := map[string]bool{}
			for _, m := range ms {
				all[m.ID] = true
			}
			for p := range tc.partitions {
				full := r.preference(p, len(ms))
				for k := 0; k <= len(ms)+2; k++ {
					ids := rgIDs(r.preference(p, k))
					require.Len(t, ids, min(k, len(ms)), "partition %d, k=%d", p, k)
					seen := map[string]bool{}
					for _, id := range ids {
						require.False(t, seen[id], "partition %d, k=%d: %s twice in %v", p, k, id, ids)
						seen[id] = true
						require.True(t, all[id], "partition %d: %s is not a member", p, id)
					}
					require.Equal(t, rgIDs(full[:len(ids)]), ids,
						"partition %d: the first %d nodes are a prefix of the whole list", p, k)
				}
				require.Equal(t, full[0], r.owner(p), "partition %d: owner is the first node", p)
			}
		})
	}
}

func TestRing_IsPrimary_MatchesPreferenceList(t *testing.T) {
	tests := map[string]struct{ members, keep int }{
		"one node":          {members: 1, keep: rgKeep},
		"three nodes":       {members: 3, keep: rgKeep},
		"ten nodes":         {members: 10, keep: rgKeep},
		"ten nodes, keep 2": {members: 10, keep: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRing(rgMembers(tc.members), 128, tc.keep)
			for p := range 128 {
				for n := 0; n <= tc.members+1; n++ {
					pref := rgIDs(r.preference(p, n))
					for i, m := range r.members {
						require.Equal(t, slices.Contains(pref, m.ID), r.isPrimary(p, i, n),
							"partition %d, n=%d, member %s, list %v", p, n, m.ID, pref)
					}
				}
			}
		})
	}
}

// preference computes lists longer than the stored ones on demand; they must
// extend the stored lists, not reorder them.
func TestRing_PreferenceList_BeyondKeepExtendsStoredList(t *testing.T) {
	ms := rgMembers(20)
	short := newRing(ms, 512, 3)
	long := newRing(ms, 512, len(ms))
	for p := range 512 {
		want := rgIDs(long.preference(p, len(ms)))
		for k := 1; k <= len(ms); k++ {
			require.Equal(t, want[:k], rgIDs(short.preference(p, k)), "partition %d, k=%d", p, k)
		}
	}
}

// Reference: DESIGN §3 "every node computes the same ring from the same
// member set".
func TestRing_SameMemberSet_AnyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tests := map[string]struct{ members int }{
		"three nodes":   {members: 3},
		"ten nodes":     {members: 10},
		"hundred nodes": {members: 100},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ms := rgMembers(tc.members)
			want := newRing(ms, 1024, rgKeep)
			for range 5 {
				shuffled := slices.Clone(ms)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				got := newRing(shuffled, 1024, rgKeep)
				require.Equal(t, want.members, got.members)
				require.Equal(t, want.prefs, got.prefs, "stored preference lists differ")
				for p := range 1024 {
					require.Equal(t, want.preference(p, len(ms)), got.preference(p, len(ms)), "partition %d", p)
				}
			}
			// The caller's slice is not reordered.
			require.Equal(t, rgMembers(tc.members), ms)
		})
	}
}

func TestRing_DuplicateIDs_KeepFirst(t *testing.T) {
	ms := []Member{{ID: "b", Addr: "b1"}, {ID: "a", Addr: "a1"}, {ID: "b", Addr: "b2"}, {ID: "a", Addr: "a2"}}
	r := newRing(ms, 64, rgKeep)
	require.Equal(t, []Member{{ID: "a", Addr: "a1"}, {ID: "b", Addr: "b1"}}, r.members)
	for p := range 64 {
		require.Len(t, r.preference(p, 3), 2)
	}
}

func TestRing_Empty(t *testing.T) {
	r := newRing(nil, 64, rgKeep)
	require.Empty(t, r.preference(r.partition([]byte("k")), 3))
	require.False(t, r.contains("a"))
}

func TestRing_Contains(t *testing.T) {
	r := newRing(rgMembers(3), 64, rgKeep)
	require.True(t, r.contains("node-000"))
	require.True(t, r.contains("node-002"))
	require.False(t, r.contains("node-003"))
	require.False(t, r.contains(""))
}

func TestRing_Partition_InRangeAndUniform(t *testing.T) {
	keys := rgKeys(20000, 5)
	for _, q := range []int{1, 2, 7, 64, 1000, DefaultPartitions, maxPartitions} {
		t.Run(fmt.Sprintf("Q=%d", q), func(t *testing.T) {
			r := &ring{partitions: q} // partition depends only on Q
			counts := map[int]int{}
			for _, k := range keys {
				p := r.partition(k)
				require.True(t, p >= 0 && p < q, "partition %d of %d", p, q)
				counts[p]++
			}
			if q <= 64 {
				mean := float64(len(keys)) / float64(q)
				for p := range q {
					require.InDelta(t, mean, float64(counts[p]), 0.25*mean, "partition %d of %d", p, q)
				}
			}
		})
	}
}

// Reference: §6.2 strategy 3 and DESIGN §3 "with 100 nodes, the busiest node
// holds at most 1.10 times the mean load".
func TestRing_Balance_100Nodes(t *testing.T) {
	ms := rgMembers(100)
	r := newRing(ms, DefaultPartitions, rgKeep)
	owned := map[string]int{}
	replicas := map[string]int{}
	for p := range DefaultPartitions {
		owned[r.owner(p).ID]++
		for _, m := range r.preference(p, DefaultN) {
			replicas[m.ID]++
		}
	}
	require.Len(t, owned, len(ms), "every node owns partitions")
	ratio := func(counts map[string]int, total int) (float64, int, int) {
		lo, hi := total, 0
		for _, c := range counts {
			lo, hi = min(lo, c), max(hi, c)
		}
		return float64(hi) / (float64(total) / float64(len(ms))), lo, hi
	}
	own, lo, hi := ratio(owned, DefaultPartitions)
	t.Logf("100 nodes, Q=%d: partitions owned per node min %d max %d mean %.1f, max/mean %.4f",
		DefaultPartitions, lo, hi, float64(DefaultPartitions)/100, own)
	rep, rlo, rhi := ratio(replicas, DefaultPartitions*DefaultN)
	t.Logf("100 nodes, Q=%d: replicas held per node (N=%d) min %d max %d, max/mean %.4f",
		DefaultPartitions, DefaultN, rlo, rhi, rep)
	require.LessOrEqual(t, own, 1.10, "busiest owner holds %.4f times the mean", own)
	require.LessOrEqual(t, rep, 1.10, "busiest replica holds %.4f times the mean", rep)
}

// rgOwners returns each key's owner on r.
func rgOwners(r *ring, keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = r.owner(r.partition(k)).ID
	}
	return out
}

// Reference: DESIGN §3 "when a node joins a cluster of n, about 1/(n+1) of
// the keys move, all of them to the new node".
func TestRing_Join_MovesOneInElevenToTheNewNode(t *testing.T) {
	ms := rgMembers(10)
	newcomer := rgMember(10)
	before := newRing(ms, DefaultPartitions, rgKeep)
	after := newRing(append(slices.Clone(ms), newcomer), DefaultPartitions, rgKeep)

	keys := rgKeys(200_000, 6)
	was, now := rgOwners(before, keys), rgOwners(after, keys)
	moved := 0
	for i := range keys {
		if was[i] != now[i] {
			moved++
			require.Equal(t, newcomer.ID, now[i], "key %x moved from %s to an old node", keys[i], was[i])
		}
	}
	frac := float64(moved) / float64(len(keys))
	t.Logf("10 -> 11 nodes, Q=%d: %d of %d keys moved (%.4f; ideal 1/11 = %.4f, ratio %.3f)",
		DefaultPartitions, moved, len(keys), frac, 1.0/11, frac*11)
	require.LessOrEqual(t, frac, 1.15/11)
	require.Greater(t, moved, 0)
}

// Reference: DESIGN §3 "a partition moves as a unit when nodes join or
// leave"; a leaving node's keys go to the next node of their lists and
// nothing else moves.
func TestRing_Leave_MovesOnlyTheLeaversKeys(t *testing.T) {
	ms := rgMembers(11)
	leaver := ms[4]
	before := newRing(ms, DefaultPartitions, rgKeep)
	after := newRing(slices.Delete(slices.Clone(ms), 4, 5), DefaultPartitions, rgKeep)

	keys := rgKeys(200_000, 7)
	was, now := rgOwners(before, keys), rgOwners(after, keys)
	moved := 0
	for i, k := range keys {
		if was[i] == leaver.ID {
			moved++
			next := before.preference(before.partition(k), 2)[1]
			require.Equal(t, next.ID, now[i], "key %x goes to the next node of its list", k)
			continue
		}
		require.Equal(t, was[i], now[i], "key %x moved although its owner stayed", k)
	}
	t.Logf("11 -> 10 nodes: %d of %d keys moved (%.4f)", moved, len(keys), float64(moved)/float64(len(keys)))
	require.Greater(t, moved, 0)
}

// On a join, each partition's preference list changes only by inserting the
// new node: the old nodes keep their relative order, so the first N entries
// lose at most their last node. On a leave, the leaver is removed and the
// rest close up.
func TestRing_PreferenceList_ChangesOnlyByTheJoiningOrLeavingNode(t *testing.T) {
	const q = 4096
	tests := map[string]struct {
		members int
		n       int
	}{
		"3 of 10":  {members: 10, n: 3},
		"5 of 10":  {members: 10, n: 5},
		"3 of 4":   {members: 4, n: 3},
		"3 of 3":   {members: 3, n: 3},
		"3 of 100": {members: 100, n: 3},
		"all 12":   {members: 12, n: 12},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ms := rgMembers(tc.members)
			newcomer := Member{ID: "joiner", Addr: "joiner"}
			before := newRing(ms, q, rgKeep)
			after := newRing(append(slices.Clone(ms), newcomer), q, rgKeep)
			for p := range q {
				old := rgIDs(before.preference(p, tc.n))
				cur := rgIDs(after.preference(p, tc.n))
				without := slices.DeleteFunc(slices.Clone(cur), func(id string) bool { return id == newcomer.ID })
				require.Equal(t, old[:len(without)], without, "partition %d: join changed more than an insertion: %v -> %v", p, old, cur)
				if len(without) == len(cur) {
					require.Equal(t, old, cur, "partition %d", p)
				}
			}
			// A leave of an old node only closes the gap it leaves.
			for _, gone := range []Member{ms[0], ms[len(ms)/2], ms[len(ms)-1]} {
				left := newRing(slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return m.ID == gone.ID }), q, rgKeep)
				for p := range q {
					full := slices.DeleteFunc(rgIDs(before.preference(p, len(ms))), func(id string) bool { return id == gone.ID })
					require.Equal(t, full[:min(tc.n, len(full))], rgIDs(left.preference(p, tc.n)), "partition %d after %s left", p, gone.ID)
				}
			}
		})
	}
}

func BenchmarkRing_PreferenceList(b *testing.B) {
	r := newRing(rgMembers(10), DefaultPartitions, rgKeep)
	keys := rgKeys(4096, 8)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i%len(keys)]
		i++
		if len(r.preference(r.partition(k), DefaultN)) != DefaultN {
			b.Fatal("short preference list")
		}
	}
}

func BenchmarkRing_Build(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			ms := rgMembers(n)
			b.ReportAllocs()
			for b.Loop() {
				newRing(ms, DefaultPartitions, rgKeep)
			}
		})
	}
}
