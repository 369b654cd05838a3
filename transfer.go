// transfer.go: §4.9 adding and removing nodes: a node that becomes a primary
// of a partition pulls it from the previous primaries (answering reads for it
// by reading through to them until then); a node that holds data of a
// partition it no longer owns pushes it to the owners and drops it once they
// have it; a node that leaves pushes everything first.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// transferState tracks the partitions this node must still pull.
type transferState struct {
	mu   sync.Mutex
	pull map[uint32][]string // partition -> previous primaries not yet pulled from
	// pulling is len(pull), kept under mu and read without it: a read checks
	// it on every call, and it is zero but during catch-up and transfers.
	pulling atomic.Int64
	wake    chan struct{}
	// drops counts partitions dropped after their owners took them.
	drops, pulls int64
	// wire counts what pulls and pushes moved.
	wire SyncResult
	// round serializes TransferRound: a manual call waits for the background
	// loop's round instead of repeating its pulls at the same time. (A
	// channel, not a mutex: waiting on it is a durable block in a synctest
	// bubble, so simulated time goes on while one round waits for another.)
	round chan struct{}
	// ready is closed once the pulls planned at start-up are done.
	ready     chan struct{}
	readyOnce sync.Once
}

func newTransferState() *transferState {
	return &transferState{pull: map[uint32][]string{}, wake: make(chan struct{}, 1), ready: make(chan struct{}), round: make(chan struct{}, 1)}
}

// markReadyIfDone closes ready when nothing is left to pull. Callers hold mu.
func (t *transferState) markReadyIfDone() {
	if len(t.pull) == 0 {
		t.readyOnce.Do(func() { close(t.ready) })
	}
}

// Ready returns a channel that is closed once the node has pulled every
// partition it owned at start-up from the nodes that held them meanwhile
// (or, for a new node, before it joined); until then, reads it serves for
// those partitions read through to the previous owners. A node whose
// sources stay unreachable stays not ready; PendingTransfers says how many
// partitions are left. Ownership changes after start-up do not reopen it.
func (s *Store) Ready() <-chan struct{} { return s.transfer.ready }

// WaitReady blocks until Ready is closed or ctx ends, and returns ctx's error
// in the latter case.
func (s *Store) WaitReady(ctx context.Context) error {
	select {
	case <-s.transfer.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dynamo: waiting for the start-up pulls (%d partitions left): %w", s.PendingTransfers(), ctx.Err())
	}
}

// planPulls records, for every partition this node is a primary of in next
// but was not in prev, the previous primaries to pull it from. With prev nil
// (start-up) the previous ring is next without this node, so a node that
// joins, or restarts after missing writes, catches up on every partition it
// owns; between identical replicas that costs one round trip per peer.
func (s *Store) planPulls(prev, next *ring) {
	me, ok := next.index[s.cfg.NodeID]
	if !ok {
		return
	}
	if prev == nil {
		prev = nextRing(next, slices.DeleteFunc(slices.Clone(next.members), func(m Member) bool { return m.ID == s.cfg.NodeID }), next.partitions, next.keep)
	}
	if len(prev.members) == 0 {
		s.transfer.mu.Lock()
		s.transfer.markReadyIfDone()
		s.transfer.mu.Unlock()
		return
	}
	oldMe, wasMember := prev.index[s.cfg.NodeID]
	t := s.transfer
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := 0; p < next.partitions; p++ {
		if !next.isPrimary(p, me, s.cfg.N) || (wasMember && prev.isPrimary(p, oldMe, s.cfg.N)) {
			continue
		}
		var sources []string
		for _, m := range prev.preference(p, s.cfg.N) {
			if m.ID != s.cfg.NodeID {
				sources = append(sources, m.ID)
			}
		}
		if len(sources) > 0 {
			t.pull[uint32(p)] = mergeIDs(t.pull[uint32(p)], sources)
			t.pulling.Store(int64(len(t.pull)))
		}
	}
	t.markReadyIfDone()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func mergeIDs(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// pulling reports whether this node still has partition p to pull, so a
// read of it reads through to the previous owners.
func (s *Store) pulling(p int) bool {
	t := s.transfer
	if t.pulling.Load() == 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pull[uint32(p)]) > 0
}

// pullSources returns the previous primaries of partition p this node has
// not pulled from yet.
func (s *Store) pullSources(p int) []string {
	t := s.transfer
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.pull[uint32(p)])
}

// PendingTransfers reports how many partitions this node still has to pull.
func (s *Store) PendingTransfers() int {
	s.transfer.mu.Lock()
	defer s.transfer.mu.Unlock()
	return len(s.transfer.pull)
}

// readThrough merges into st the states of key held by the previous
// primaries of its partition, while this node has not pulled it yet, so a
// read that counts this node's answer does not miss an acknowledged write
// the pull would bring. The merged state is kept: the read pulls that one key
// early.
//
// The sources are asked in parallel, and for at most half the time left to
// the caller (and half the replica timeout), so that this node's own answer
// still arrives in time when a source is silent; a source that does not
// answer is left out (the coordinator's other replicas cover for it).
func (s *Store) readThrough(ctx context.Context, q request, st state) state {
	sources := s.pullSources(q.p)
	if len(sources) == 0 {
		return st
	}
	budget := s.cfg.ReplicaTimeout / 2
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)/2)
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	req := s.encode(&getReq{Key: q.key, Flags: flagNoReadThrough})
	replies := make(chan state, len(sources))
	var wg sync.WaitGroup
	for _, id := range sources {
		i, ok := q.r.index[id]
		if !ok || !s.reachable(id) {
			continue
		}
		wg.Go(func() {
			if theirs, err := s.readReplica(ctx, q.r.members[i], q, req); err == nil {
				replies <- theirs
			}
		})
	}
	wg.Wait()
	close(replies)
	local := st
	for theirs := range replies {
		st = syncStates(st, theirs)
	}
	if !sameVersion(local, st) {
		if err := s.rep.merge(q.p, q.key, st); err != nil {
			s.log.Debug("keeping a read-through state failed", "partition", q.p, keyAttr(q.key), "err", err)
		}
	}
	return st
}

func (s *Store) transferLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Handoff.Interval)
	defer t.Stop()
	for {
		if err := s.TransferRound(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("transfer round incomplete", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.transfer.wake:
		}
	}
}

// TransferRound runs one round of ownership transfer now: it pulls the
// partitions this node newly owns from their previous primaries, and pushes
// the partitions it holds data for but no longer owns to their primaries,
// dropping each once all of them have it. Transfers are diff-based
// anti-entropy exchanges, throttled like them, and idempotent: a round
// interrupted by a crash is simply run again. The background loop calls it
// every Handoff.Interval and after membership changes; tests may too.
func (s *Store) TransferRound(ctx context.Context) error {
	select {
	case s.transfer.round <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.transfer.round }()
	return errors.Join(s.pullRound(ctx), s.pushRound(ctx))
}

func (s *Store) pullRound(ctx context.Context) error {
	r := s.ring.Load()
	t := s.transfer
	t.mu.Lock()
	bySource := map[string][]uint32{}
	for p, srcs := range t.pull {
		for _, id := range srcs {
			bySource[id] = append(bySource[id], p)
		}
	}
	t.mu.Unlock()
	var errs []error
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range bySource {
			if !yield(id) {
				return
			}
		}
	}) {
		parts := bySource[id]
		slices.Sort(parts)
		i, inRing := r.index[id]
		if !inRing {
			s.donePulling(id, parts) // it left: whatever it had, it pushed to the owners
			continue
		}
		if !s.reachable(id) {
			continue
		}
		res, err := s.syncWith(ctx, r.members[i], parts, r.fingerprint, true, syncPull)
		s.countTransfer(res)
		if err != nil {
			errs = append(errs, fmt.Errorf("pull from %s: %w", id, err))
			continue
		}
		s.donePulling(id, parts)
	}
	return errors.Join(errs...)
}

// countTransfer adds what one transfer exchange moved to the Stats.
func (s *Store) countTransfer(res SyncResult) {
	s.transfer.mu.Lock()
	s.transfer.wire.add(res)
	s.transfer.mu.Unlock()
}

func (s *Store) donePulling(id string, parts []uint32) {
	t := s.transfer
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range parts {
		left := slices.DeleteFunc(t.pull[p], func(x string) bool { return x == id })
		if len(left) == 0 {
			delete(t.pull, p)
			t.pulling.Store(int64(len(t.pull)))
			t.pulls++
		} else {
			t.pull[p] = left
		}
	}
	t.markReadyIfDone()
}

// pushRound hands every partition this node holds data for, but is not a
// primary of in ring r, to its primaries, and drops it once all of them have
// it. owners, if non-nil, replaces the current ring (for Decommission).
func (s *Store) pushRound(ctx context.Context) error { return s.pushTo(ctx, s.ring.Load(), true) }

func (s *Store) pushTo(ctx context.Context, r *ring, drop bool) error {
	if drop {
		s.pruneHandover(r)
	}
	me, inRing := r.index[s.cfg.NodeID]
	byOwner := map[string][]uint32{}
	var foreign []uint32
	pushed := map[uint32]uint64{} // each foreign partition's hash as pushed
	for p := 0; p < r.partitions; p++ {
		h := s.rep.tree.get(p)
		if h == 0 || (inRing && r.isPrimary(p, me, s.cfg.N)) || (drop && s.heldForHandover(r, p)) {
			continue
		}
		foreign = append(foreign, uint32(p))
		pushed[uint32(p)] = h
		for _, m := range r.preference(p, s.cfg.N) {
			byOwner[m.ID] = append(byOwner[m.ID], uint32(p))
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	failed := map[uint32]bool{}
	var errs []error
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range byOwner {
			if !yield(id) {
				return
			}
		}
	}) {
		parts := byOwner[id]
		i := r.index[id]
		var err error
		if !s.reachable(id) {
			err = errUnreachable
		} else {
			var res SyncResult
			res, err = s.syncWith(ctx, r.members[i], parts, r.fingerprint, true, syncPush)
			s.countTransfer(res)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("push to %s: %w", id, err))
			for _, p := range parts {
				failed[p] = true
			}
		}
	}
	if !drop {
		return errors.Join(errs...)
	}
	for _, p := range foreign {
		if failed[p] || ctx.Err() != nil {
			continue
		}
		// A write that landed since the push keeps the partition (its hash
		// moved) for the next round.
		dropped, err := s.rep.dropPartition(int(p), pushed[p])
		if err != nil {
			errs = append(errs, err)
		}
		if dropped {
			s.transfer.mu.Lock()
			s.transfer.drops++
			s.transfer.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// Decommission prepares this node to leave the ring for good: it pushes every
// partition it holds to its primaries in the ring without this node. Data is
// kept (the node still serves until it leaves); call it before announcing
// the leave (Node.Leave does).
func (s *Store) Decommission(ctx context.Context) error {
	cur := s.ring.Load()
	without := nextRing(cur, slices.DeleteFunc(slices.Clone(cur.members), func(m Member) bool { return m.ID == s.cfg.NodeID }), cur.partitions, cur.keep)
	if len(without.members) == 0 {
		return fmt.Errorf("%w: this is the last node", ErrNoReplica)
	}
	return s.pushTo(ctx, without, false)
}
