// ringdelta.go: §4.2, §4.9 the ring after one node joins or leaves, derived
// from the ring before in O(Q·keep) instead of rebuilt in O(Q·nodes).
package dynamo

// nextRing returns the ring for members, the same as newRing(members,
// partitions, keep) returns, derived from old where it can be.
//
// Building a ring scores every member for every partition: Q·n hashes, 0.2 s
// of CPU at 100 nodes and Q = 2^17, paid by every node at every membership
// change. But rendezvous order only ever changes by the member that came or
// went (ring), so when members differ from old's by one node joining or one
// leaving, each stored list follows from the old one:
//
//   - a join scores the newcomer against the list's last entry, and only
//     where it beats it, against the others: one or two hashes per partition;
//   - a leave drops the leaver from the lists that hold it (keep/n of them)
//     and rescans all members only there, for the node that moves up into
//     the last stored place.
//
// Member indices are positions in the ID-sorted list, so every stored index
// past the changed position shifts by one. With zones, or with fewer members
// than the stored lists hold, or with any other difference (several nodes,
// another Q), the ring is built afresh; a member whose address alone changed
// keeps old's lists as they are.
func nextRing(old *ring, members []Member, partitions, keep int) *ring {
	r := ringShell(members, partitions, keep)
	if old == nil || old.partitions != r.partitions || old.zones != nil || r.zones != nil ||
		r.keep == 0 || old.keep != r.keep || r.keep != keep {
		r.fill()
		return r
	}
	switch d := len(r.members) - len(old.members); {
	case d == 0 && sameIDs(old.members, r.members, -1, -1):
		r.prefs = old.prefs // rings are immutable: the lists can be shared
	case d == 1 && sameIDs(old.members, r.members, -1, changedAt(old.members, r.members)):
		r.joined(old, changedAt(old.members, r.members))
	case d == -1 && sameIDs(old.members, r.members, changedAt(r.members, old.members), -1):
		r.left(old, changedAt(r.members, old.members))
	default:
		r.fill()
	}
	return r
}

// changedAt returns the index in long (one member longer than short, both
// sorted by ID) of the member short lacks, or -1 if the lists differ
// otherwise at that place.
func changedAt(short, long []Member) int {
	for i := range short {
		if short[i].ID != long[i].ID {
			return i
		}
	}
	return len(short)
}

// sameIDs reports whether a and b hold the same IDs in the same order once
// a's index skipA and b's index skipB (-1: none) are left out.
func sameIDs(a, b []Member, skipA, skipB int) bool {
	i, j := 0, 0
	for {
		if i == skipA {
			i++
		}
		if j == skipB {
			j++
		}
		if i >= len(a) || j >= len(b) {
			return i >= len(a) && j >= len(b)
		}
		if a[i].ID != b[j].ID {
			return false
		}
		i++
		j++
	}
}

// beats reports whether member a with score sa ranks before member b with
// score sb (byScore's order: higher score, then lower index).
func beats(sa uint64, a int, sb uint64, b int) bool {
	return sa > sb || sa == sb && a < b
}

// joined fills r's lists from old's, r having the one extra member at index
// j. old has at least keep members, so every old list is full.
func (r *ring) joined(old *ring, j int) {
	keep := r.keep
	r.prefs = make([]uint16, len(old.prefs))
	remap := func(i uint16) uint16 {
		if int(i) >= j {
			return i + 1
		}
		return i
	}
	hx := r.hashes[j]
	for p := 0; p < r.partitions; p++ {
		src := old.prefs[p*keep : (p+1)*keep]
		dst := r.prefs[p*keep : (p+1)*keep]
		ps := partitionSeed(p)
		sx := mix64(hx ^ ps)
		pos := keep
		for pos > 0 {
			prev := src[pos-1]
			if !beats(sx, j, mix64(old.hashes[prev]^ps), int(remap(prev))) {
				break
			}
			pos--
		}
		for k := range pos {
			dst[k] = remap(src[k])
		}
		if pos < keep {
			dst[pos] = uint16(j)
			for k := pos + 1; k < keep; k++ {
				dst[k] = remap(src[k-1])
			}
		}
	}
}

// left fills r's lists from old's, old having had the one extra member at
// index j. r has at least keep members, so every new list is full.
func (r *ring) left(old *ring, j int) {
	keep := r.keep
	r.prefs = make([]uint16, len(old.prefs))
	remap := func(i uint16) uint16 {
		if int(i) > j {
			return i - 1
		}
		return i
	}
	for p := 0; p < r.partitions; p++ {
		src := old.prefs[p*keep : (p+1)*keep]
		dst := r.prefs[p*keep : (p+1)*keep]
		n := 0
		for _, i := range src {
			if int(i) != j {
				dst[n] = remap(i)
				n++
			}
		}
		if n == keep {
			continue
		}
		// The leaver held a place: the best member not yet listed moves up.
		ps := partitionSeed(p)
		best, bestScore := -1, uint64(0)
		for i, h := range r.hashes {
			s := mix64(h ^ ps)
			if best >= 0 && !beats(s, i, bestScore, best) {
				continue
			}
			listed := false
			for _, x := range dst[:n] {
				if int(x) == i {
					listed = true
					break
				}
			}
			if !listed {
				best, bestScore = i, s
			}
		}
		dst[n] = uint16(best)
	}
}
