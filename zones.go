// zones.go: replicas spread across failure domains (§4.6 "the preference list
// ... spread across multiple data centers"): the zoned preference list and the
// sloppy quorum's preference for fallbacks in zones without a live replica.
package dynamo

import "slices"

// Zones and load (why there is no "1.10 of the mean" with unequal zones).
//
// Every key has a replica in each of min(N, zones) zones. With N=3 and three
// zones, each zone therefore holds exactly a third of all replicas, whatever
// its size, and a node's share is 1/3 divided by its zone's node count. With
// zones of 50, 30 and 20 nodes the mean node holds 3/100 of the replicas, a
// node of the 20-node zone 1/60: 1.67 times the mean, and a node of the
// 50-node zone 0.67 times. No placement that keeps one replica per zone can
// do better; equal load would need the 20-node zone to hold 0.6 replicas of
// a key, so 40% of the keys would have no replica there. What rendezvous
// ranking within zones does achieve (ring_zones_test.go measures it):
//
//   - within each zone, nodes hold equal shares: the busiest node of a zone
//     of z nodes holds about 1 + 2.5/sqrt(Q*share/z) times its zone's mean;
//   - the first node of each preference list, which coordinates the key's
//     writes, is the same as without zones, so coordination stays balanced
//     over all nodes (1.06 of the mean at 100 nodes, Q = 2^17);
//   - with zones of equal size, replicas are balanced over all nodes as well
//     as without zones.
//
// Zones should therefore be of equal size, as in the paper's data centers,
// or at least sized by what they must store: a zone's nodes hold its share
// of replicas between them.
//
// For the same reason the first node of a new zone takes more than one
// node's share: while zones are fewer than N it must hold a replica of every
// key, and beside zones already N or more it competes for round one with
// whole zones' best nodes (36% of the partitions beside three zones of four,
// ring_zones_test.go).

// zoneSalt separates zone hashes from ID hashes in the ring's fingerprint.
const zoneSalt = 0x7a6f6e6573a5a5a5

// setZones indexes the members' zones. With fewer than two distinct zones it
// leaves r.zones nil: the preference lists are then exactly those of a ring
// without zones.
func (r *ring) setZones() {
	names := make([]string, len(r.members))
	for i, m := range r.members {
		names[i] = m.Zone
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) < 2 {
		return
	}
	r.zones = names
	r.zoneOf = make([]uint16, len(r.members))
	for i, m := range r.members {
		z, _ := slices.BinarySearch(names, m.Zone)
		r.zoneOf[i] = uint16(z)
	}
}

// buildZoned stores each partition's first r.keep nodes in zone rounds (see
// ring): it keeps the best-scored nodes of each zone, as many as the rounds
// the stored list reaches, then takes the round-k nodes of all zones, best
// score first, for k = 0, 1, ... until the stored list is full. That is the
// same order preference computes on demand.
func (r *ring) buildZoned() {
	nz, keep := len(r.zones), r.keep
	size := make([]int, nz)
	for _, z := range r.zoneOf {
		size[z]++
	}
	// depth: the rounds that fill keep places, so the nodes of each zone
	// the stored lists can reach.
	depth, filled := 0, 0
	for filled < keep {
		for _, n := range size {
			if n > depth {
				filled++
			}
		}
		depth++
	}
	zsc := make([]uint64, nz*depth) // per zone: its top depth scores, descending
	zidx := make([]uint16, nz*depth)
	cnt := make([]int, nz)
	round := make([]int, 0, nz) // positions in zsc of one round's nodes
	for p := 0; p < r.partitions; p++ {
		clear(cnt)
		ps := partitionSeed(p)
		for i, h := range r.hashes {
			z := int(r.zoneOf[i])
			lo, hi := z*depth, (z+1)*depth
			cnt[z] = topInsert(zsc[lo:hi], zidx[lo:hi], cnt[z], mix64(h^ps), uint16(i))
		}
		out := r.prefs[p*keep : (p+1)*keep]
		n := 0
		for k := 0; n < keep; k++ {
			round = round[:0]
			for z := range nz {
				if cnt[z] > k {
					round = append(round, z*depth+k)
				}
			}
			slices.SortFunc(round, func(a, b int) int { return byScore(zsc[a], zsc[b], int(zidx[a]), int(zidx[b])) })
			for _, c := range round[:min(len(round), keep-n)] {
				out[n] = zidx[c]
				n++
			}
		}
	}
}

// inRounds reorders idx, member indices in score order, into zone rounds:
// each member's round is how many members of its zone come before it.
func (r *ring) inRounds(idx []int) {
	seen := make([]int, len(r.zones))
	rounds := make([]int, len(r.members))
	for _, i := range idx {
		z := r.zoneOf[i]
		rounds[i] = seen[z]
		seen[z]++
	}
	slices.SortStableFunc(idx, func(a, b int) int { return rounds[a] - rounds[b] })
}

// zoneFallbacks orders a key's reachable fallbacks for the sloppy quorum
// (§4.6): first those in a zone where none of the key's primaries is
// reachable, then the rest, each group in preference-list order. A write
// that loses a primary thus keeps its replicas in as many zones as it can:
// the stand-in comes from the lost primary's zone when that zone is still up,
// else from a zone holding no replica. In a ring without zones the order is
// the list's. Reads pick fallbacks in the same order, so they reach the
// nodes that took the writes. The caller owns the result.
func (s *Store) zoneFallbacks(r *ring, primaries, fallbacks []Member) []Member {
	if r.zones == nil || len(fallbacks) < 2 {
		return fallbacks
	}
	held := make([]string, 0, len(primaries))
	for _, m := range primaries {
		if s.reachable(m.ID) {
			held = append(held, m.Zone)
		}
	}
	out := make([]Member, 0, len(fallbacks))
	for _, m := range fallbacks {
		if !slices.Contains(held, m.Zone) {
			out = append(out, m)
		}
	}
	for _, m := range fallbacks {
		if slices.Contains(held, m.Zone) {
			out = append(out, m)
		}
	}
	return out
}
