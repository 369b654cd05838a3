// mint.go: §4.4 minting a write's version at its coordinator: per-key actor
// epochs, which of them a node trusts after losing data (issue 20, kv679),
// and deduplication of forwarded writes.
package dynamo

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// mintDurably applies a write coordinated by this node to its own replica of
// key, inside one storage update: the new version's dot is minted from the
// stored state and is durable here before any other replica sees it. So a
// crash can never leave a dot on other replicas that this node might issue
// again in the same run; and a restart starts a new run, whose epochs are
// new (see ownActor).
// It returns the new state and its encoding, which the caller replicates.
func (s *Store) mintDurably(key, value []byte, tombstone bool, cvv versionVector, now int64) (state, []byte, error) {
	var (
		next     state
		stored   []byte
		lost     bool // the stored state was damaged and is replaced
		evidence bool // the context shows this node's actor beyond its record
	)
	err := s.updateData(key, func(cur []byte) ([]byte, bool, error) {
		base, damaged := decodeLocal(cur)
		lost, evidence = damaged, false
		if err := s.checkMint(key, base, cvv); err != nil {
			return nil, false, err
		}
		actor := s.ownActor(key, base)
		if actor != "" && (cvv.get(actor) > base.VV.get(actor) || base.VV.get(actor) >= maxCounter) {
			// Issue 20: the context shows a counter of this node's own actor
			// beyond the local record, so the record lost dots this node
			// issued: they must not be issued again.
			evidence = cvv.get(actor) > base.VV.get(actor)
			actor = ""
		}
		if actor == "" {
			actor = s.freshActor()
		}
		if err := mintable(base, cvv, actor); err != nil {
			return nil, false, err
		}
		next, _ = mint(base, cvv, actor, value, tombstone, now)
		stored = encodeState(next)
		if len(stored) > s.cfg.Limits.MaxStateSize {
			return nil, false, errStateTooLarge(key, len(stored), s.cfg.Limits.MaxStateSize)
		}
		return stored, onlyTombstones(next), nil
	})
	if err == nil {
		s.afterUpdate(key, next, lost, evidence, "a write's context")
	}
	return next, stored, err
}

// afterUpdate follows a durable update that stored st for key: it indexes
// the key for folding, and accounts for the loss of this node's record of
// the key when the update replaced a damaged state (lost), or when what it
// merged (from) showed this node's actor beyond the record (evidence).
func (s *Store) afterUpdate(key []byte, st state, lost, evidence bool, from string) {
	s.folds.note(key, st, s.cfg.N)
	if lost {
		s.recordLost(key)
	}
	if evidence {
		s.log.Info(from+" shows versions of a key this node issued beyond its record: it writes the key with a new epoch from now on", "key", key)
		s.distrustKey(key)
	}
}

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

// freshActor returns this node's actor with a fresh epoch.
func (s *Store) freshActor() string {
	return s.actor + "." + strconv.FormatUint(s.epochs.fresh(), 36)
}

// distrustKey records that this node's record of the dots it issued for key
// may be incomplete: its next write of key takes a fresh epoch.
func (s *Store) distrustKey(key []byte) { s.epochs.distrust(key) }

// ownActor returns the actor this node mints key's next version with: its
// entry in the key's vector with the newest epoch this run trusts for key
// (see runEpochs), or "" when there is none and the caller must take a fresh
// epoch.
func (s *Store) ownActor(key []byte, st state) string {
	prefix := s.actor + "."
	best, bestSeq := "", uint64(0)
	for _, e := range st.VV {
		ep, ok := strings.CutPrefix(e.Actor, prefix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(ep, 36, 64)
		if err != nil {
			continue
		}
		if seq, ok := s.epochs.trusted(key, n); ok && (best == "" || seq > bestSeq) {
			best, bestSeq = e.Actor, seq
		}
	}
	return best
}

// lostEvidence reports whether in, a peer's state of key, shows a counter of
// one of this node's trusted actors beyond old, this node's record: then the
// record lost dots this node issued (issue 20). This node writes its own
// dots to its record before any peer sees them, so nothing else explains it.
func (s *Store) lostEvidence(key []byte, old, in state) bool {
	prefix := s.actor + "."
	for _, e := range in.VV {
		if !strings.HasPrefix(e.Actor, prefix) || e.Counter <= old.VV.get(e.Actor) {
			continue
		}
		if n, err := strconv.ParseUint(e.Actor[len(prefix):], 36, 64); err == nil {
			if _, ok := s.epochs.trusted(key, n); ok {
				return true
			}
		}
	}
	return false
}

// dedupe remembers recently coordinated forwarded writes by request ID, so a
// request the network delivers twice is applied once: a second delivery
// waits for the first and gets its reply.
type dedupe struct {
	mu     sync.Mutex
	flight map[uint64]*flight
	order  []dedupeEntry
}

type flight struct {
	done  chan struct{}
	reply []byte
}

type dedupeEntry struct {
	id      uint64
	expires time.Time
}

const dedupeMax = 1 << 16

// begin returns the flight for id and whether the caller is the first to
// run it. The first caller must call end.
func (d *dedupe) begin(id uint64, ttl time.Duration) (*flight, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for len(d.order) > 0 && (now.After(d.order[0].expires) || len(d.order) > dedupeMax) {
		delete(d.flight, d.order[0].id)
		d.order = d.order[1:]
	}
	if f, ok := d.flight[id]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	if d.flight == nil {
		d.flight = map[uint64]*flight{}
	}
	d.flight[id] = f
	d.order = append(d.order, dedupeEntry{id, now.Add(ttl)})
	return f, true
}

func (d *dedupe) end(f *flight, reply []byte) {
	f.reply = reply
	close(f.done)
}
