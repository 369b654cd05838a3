// handover.go: §4.9 removing a node: the partitions a leaving node pushed to
// their next owners stay there until it is gone.
package dynamo

import (
	"sync"
	"time"
)

// handoverHold bounds how long a node keeps partitions a decommissioned node
// pushed to it while that node stays in the ring (a Decommission that was
// never followed by the leave): then they are handed back and dropped, as
// any partition the node does not own.
const handoverHold = time.Hour

// A leaving node pushes each of its partitions to the node that will own it
// once it is gone (Decommission), and only then leaves. Until the leave
// reaches that node, it is not a primary of the partition in its own ring:
// its transfer round would push the data back to the primaries (the leaver
// among them) and drop it, and once the leave arrived, pull it all again. In
// a 100-node cluster that moved each leaver's replicas 1.7 times instead of
// once (scale_test.go). So a node remembers which partitions were pushed to
// it, and by whom, and keeps them while the pusher is still in the ring and
// a primary of the partition: the pusher is leaving, and this node is next.
// Pushes by old owners after a join come from nodes that are no longer
// primaries, and are not held.
type handover struct {
	mu   sync.Mutex
	from map[uint32]handedIn // partition -> the last push into it
}

type handedIn struct {
	by string
	at time.Time
}

// noteHandover records that node by pushed the states of keys here, for
// the partitions this node is not a primary of (the others it keeps anyway).
func (s *Store) noteHandover(by string, keys [][]byte) {
	r := s.ring.Load()
	me, inRing := r.index[s.cfg.NodeID]
	now := time.Now()
	h := &s.handover
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		p := r.partition(k)
		if inRing && r.isPrimary(p, me, s.cfg.N) {
			continue
		}
		if h.from == nil {
			h.from = map[uint32]handedIn{}
		}
		h.from[uint32(p)] = handedIn{by: by, at: now}
	}
}

// heldForHandover reports whether this node keeps partition p, which it is
// not a primary of in ring r, because a node that is still one of its
// primaries pushed it here, lately: that node is leaving.
func (s *Store) heldForHandover(r *ring, p int) bool {
	h := &s.handover
	h.mu.Lock()
	defer h.mu.Unlock()
	in, ok := h.from[uint32(p)]
	return ok && s.stillLeaving(r, p, in)
}

// stillLeaving reports whether the push in into partition p is still to be
// held in ring r: its pusher is still a primary there, and the hold has not
// run out.
func (s *Store) stillLeaving(r *ring, p int, in handedIn) bool {
	i, inRing := r.index[in.by]
	return inRing && r.isPrimary(p, i, s.cfg.N) && time.Since(in.at) <= handoverHold
}

// pruneHandover forgets the pushes whose pusher has left (this node owns
// those partitions now) or whose hold ran out. Transfer rounds call it, so
// the table holds only the partitions of nodes leaving now.
func (s *Store) pruneHandover(r *ring) {
	h := &s.handover
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, in := range h.from {
		if !s.stillLeaving(r, int(p), in) {
			delete(h.from, p)
		}
	}
}
