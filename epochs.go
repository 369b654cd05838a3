// epochs.go: DESIGN §2 the actor epochs of one run of a node: which of
// them it still trusts to mint a key's next version with after losing data
// (issue 20, Riak kv679).
package dynamo

import (
	"sync"
	"sync/atomic"
)

// runEpochs hands out the key epochs of one run of a Store (from New to
// Close), and says which of them the Store still trusts to mint with.
//
// A node's actor for a key is NodeID/incarnation.epoch (DESIGN §2, Riak's
// per-key epochs). Counters are per actor and per key, so an actor may only
// mint the next counter if the node knows the highest counter it ever
// issued for the key: its stored state says so while the node has held the
// key's record continuously. Any loss breaks that: a wiped disk (a new
// incarnation), a disk rolled back to an earlier snapshot or a record lost
// while the node was down (issue 20: only a restart shows it), a damaged
// record, a record dropped and taken back from peers, or a peer's state or a
// context showing a counter of the node's actor beyond its record. So the
// node mints only with epochs handed out in this run, and only with those
// handed out since the last loss that concerns the key; on anything else it
// takes a fresh epoch, whose counter 1 no replica can have seen.
//
// Epochs of a run are base, base+1, ... where base is random (64 bits): a
// disk rolled back also rolls back anything a durable counter would keep,
// so only chance separates the epochs of two runs, and two runs collide
// with probability about 2^-40.
type runEpochs struct {
	base  uint64
	next  atomic.Uint64 // epochs handed out: base .. base+next-1
	floor atomic.Uint64 // no epoch below base+floor is trusted for any key

	mu      sync.Mutex
	suspect map[string]uint64 // key -> no epoch below base+mark is trusted for it
}

// maxSuspectKeys bounds the per-key distrust marks; beyond it, the Store
// distrusts every epoch handed out so far, for every key.
const maxSuspectKeys = 4096

func newRunEpochs(base uint64) *runEpochs {
	return &runEpochs{base: base, suspect: map[string]uint64{}}
}

// fresh hands out a new epoch.
func (r *runEpochs) fresh() uint64 { return r.base + r.next.Add(1) - 1 }

// trusted reports whether epoch e may mint for key: it was handed out in
// this run, after the last loss concerning key.
func (r *runEpochs) trusted(key []byte, e uint64) (seq uint64, ok bool) {
	seq = e - r.base // wraps around with base
	if seq >= r.next.Load() || seq < r.floor.Load() {
		return seq, false
	}
	r.mu.Lock()
	mark, marked := r.suspect[string(key)]
	r.mu.Unlock()
	return seq, !marked || seq >= mark
}

// distrust stops the epochs handed out so far from minting for key.
func (r *runEpochs) distrust(key []byte) {
	now := r.next.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.suspect) >= maxSuspectKeys {
		r.floor.Store(now)
		clear(r.suspect)
		return
	}
	r.suspect[string(key)] = now
}
