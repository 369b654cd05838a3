// ring.go: §4.2-4.3, §6.2 placement: the hash space cut into Q fixed, equal
// partitions, each partition's preference list ranked by rendezvous hashing
// and spread across zones (failure domains, the paper's data centers of §4.6).
package dynamo

import (
	"hash/fnv"
	"slices"
	"strings"

	"github.com/dynamo-kv/dynamo/membership"
)

// Member is one node of the ring: its stable ID, its Transport address and
// its zone.
type Member = membership.Member

// ring places keys (DESIGN §3). The hash space is cut into a fixed number of
// equal partitions (the paper's strategy 3), so a partition is the unit of
// ownership, Merkle trees and transfer. Each partition ranks every node by a
// rendezvous score hash(node, partition); its preference list is the nodes in
// score order. That makes the ring a pure function of the member set, every
// list hold distinct physical nodes, and a joining node take partitions only
// for itself: a partition's order among the old nodes never changes, so each
// partition either keeps its owner or moves to the newcomer (and a leaving
// node's partitions go to their next node in order, nothing else moves).
// Balance improves with partitions per node; see Config.Partitions.
//
// With members in more than one zone, a preference list takes the nodes in
// rounds: first the best-scored node of every zone, then the second-best of
// every zone, and so on, each round in score order. So the first
// min(N, zones) nodes lie in distinct zones, the list's first node is the
// same as without zones (the best score overall is the best of its zone),
// and replicas beyond the zone count spread evenly over the zones. A join
// still moves keys only to the newcomer: an old node's round and its place
// in its round can only get worse when a node is added, so no old node
// enters a partition's first N, and the newcomer, if it enters, displaces
// exactly one (see zones.go for the arithmetic of balance).
//
// A ring is immutable once built.
type ring struct {
	partitions int
	members    []Member // sorted by ID
	index      map[string]int
	hashes     []uint64 // per member: hash of its ID
	// zoneOf gives each member's index in zones, the distinct zone names in
	// order. Both are nil when all members share one zone: placement is
	// then plain rendezvous order.
	zoneOf []uint16
	zones  []string
	keep   int      // length of each stored preference list
	prefs  []uint16 // partitions*keep member indices, best first
	// fingerprint identifies the member set, their zones and the
	// partitioning: two nodes with the same fingerprint compute the same
	// preference lists.
	fingerprint uint64
}

// newRing builds the ring for members (in any order; duplicates by ID keep
// the first) with the given number of partitions, storing the first keep
// nodes of each preference list (more are computed on demand).
func newRing(members []Member, partitions, keep int) *ring {
	r := ringShell(members, partitions, keep)
	r.fill()
	return r
}

// ringShell returns the ring for members with everything but its stored
// preference lists.
func ringShell(members []Member, partitions, keep int) *ring {
	ms := slices.Clone(members)
	slices.SortStableFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	ms = slices.CompactFunc(ms, func(a, b Member) bool { return a.ID == b.ID })
	r := &ring{partitions: partitions, members: ms, index: make(map[string]int, len(ms))}
	r.hashes = make([]uint64, len(ms))
	r.fingerprint = mix64(uint64(partitions))
	for i, m := range ms {
		r.index[m.ID] = i
		r.hashes[i] = hashString(m.ID)
		r.fingerprint = mix64(r.fingerprint ^ r.hashes[i])
		if m.Zone != "" { // a ring without zones keeps the fingerprint it always had
			r.fingerprint = mix64(r.fingerprint ^ mix64(hashString(m.Zone)^zoneSalt))
		}
	}
	r.setZones()
	r.keep = min(keep, len(ms))
	return r
}

// fill computes the stored preference lists of a ring shell: every member
// scored for every partition.
func (r *ring) fill() {
	if r.keep == 0 {
		return
	}
	r.prefs = make([]uint16, r.partitions*r.keep)
	if r.zones != nil {
		r.buildZoned()
		return
	}
	scores := make([]uint64, r.keep)
	for p := 0; p < r.partitions; p++ {
		top := r.prefs[p*r.keep : (p+1)*r.keep]
		ps := partitionSeed(p)
		n := 0
		for i, h := range r.hashes {
			n = topInsert(scores, top, n, mix64(h^ps), uint16(i))
		}
	}
}

// topInsert offers member i with score s to the descending top list
// (scores, idx) that holds n entries, and returns how many it holds after.
// Of equal scores the one offered first stays ahead.
func topInsert(scores []uint64, idx []uint16, n int, s uint64, i uint16) int {
	k := len(scores)
	if n == k && s <= scores[n-1] {
		return n
	}
	j := min(n, k-1)
	for j > 0 && scores[j-1] < s {
		scores[j], idx[j] = scores[j-1], idx[j-1]
		j--
	}
	scores[j], idx[j] = s, i
	return min(n+1, k)
}

// partition returns the partition that holds key (partitionOf).
func (r *ring) partition(key []byte) int { return partitionOf(key, r.partitions) }

// preference returns the first k distinct nodes of partition p's preference
// list (all nodes if k exceeds the ring's size), best first. The caller owns
// the slice.
func (r *ring) preference(p, k int) []Member {
	k = max(0, min(k, len(r.members)))
	out := make([]Member, 0, k)
	if k <= r.keep {
		for _, i := range r.prefs[p*r.keep : p*r.keep+k] {
			out = append(out, r.members[i])
		}
		return out
	}
	idx := make([]int, len(r.members))
	sc := make([]uint64, len(r.members))
	ps := partitionSeed(p)
	for i, h := range r.hashes {
		idx[i], sc[i] = i, mix64(h^ps)
	}
	slices.SortFunc(idx, func(a, b int) int { return byScore(sc[a], sc[b], a, b) })
	if r.zones != nil {
		r.inRounds(idx)
	}
	for _, i := range idx[:k] {
		out = append(out, r.members[i])
	}
	return out
}

// isPrimary reports whether the member with index i is among the first n
// nodes of partition p's preference list.
func (r *ring) isPrimary(p, i, n int) bool {
	if n <= r.keep {
		for _, j := range r.prefs[p*r.keep : p*r.keep+n] {
			if int(j) == i {
				return true
			}
		}
		return false
	}
	return slices.ContainsFunc(r.preference(p, n), func(m Member) bool { return m.ID == r.members[i].ID })
}

// owner returns the first node of partition p's preference list.
func (r *ring) owner(p int) Member { return r.members[r.prefs[p*r.keep]] }

// contains reports whether id is a member of the ring.
func (r *ring) contains(id string) bool {
	_, ok := r.index[id]
	return ok
}

// byScore orders members by descending score, then ascending index.
func byScore(sa, sb uint64, a, b int) int {
	switch {
	case sa > sb:
		return -1
	case sa < sb:
		return 1
	}
	return a - b
}

func partitionSeed(p int) uint64 { return mix64(uint64(p) + 0x9e3779b97f4a7c15) }

// mix64 is the splitmix64 finalizer: a fast bijective scrambler.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func hashString(s string) uint64 { return hashBytes([]byte(s)) }
