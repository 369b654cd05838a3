// sharedcache.go: §4.7 the partitions this node shares with each peer, the
// scope of their anti-entropy exchanges, computed once per ring.
package dynamo

import "sync"

// sharedCache holds, for the latest ring it was asked about, the partitions
// this node shares with each peer (both among the N primaries), in order.
// An anti-entropy round asks for every peer and a peer's requests ask again
// and again; scanning all Q partitions for each costs Q·peers per round
// (about 26 million checks at 100 nodes and Q = 2^17), where one pass over
// the ring's lists finds every peer's share at once.
type sharedCache struct {
	mu     sync.Mutex
	ring   *ring
	byPeer map[string][]uint32
}

// of returns the shared partitions by peer ID for ring r; the map and its
// slices are shared and must not be modified.
func (c *sharedCache) of(s *Store, r *ring) map[string][]uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ring != r {
		c.ring, c.byPeer = r, sharedByPeer(r, s.cfg.NodeID, s.cfg.N)
	}
	return c.byPeer
}

// sharedByPeer scans r's preference lists once for the partitions where
// node id and another node are both among the first n.
func sharedByPeer(r *ring, id string, n int) map[string][]uint32 {
	out := map[string][]uint32{}
	me, ok := r.index[id]
	if !ok {
		return out
	}
	var primaries []int
	for p := 0; p < r.partitions; p++ {
		primaries = primaries[:0]
		if n <= r.keep {
			for _, i := range r.prefs[p*r.keep : p*r.keep+n] {
				primaries = append(primaries, int(i))
			}
		} else { // fewer members than N: the whole ring
			for _, m := range r.preference(p, n) {
				primaries = append(primaries, r.index[m.ID])
			}
		}
		mine := false
		for _, i := range primaries {
			mine = mine || i == me
		}
		if !mine {
			continue
		}
		for _, i := range primaries {
			if i != me {
				id := r.members[i].ID
				out[id] = append(out[id], uint32(p))
			}
		}
	}
	return out
}
