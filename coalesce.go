// coalesce.go: §4.5 hot keys at the coordinator: concurrent Gets of one key
// share quorum reads, one in flight and one queued behind it.
package dynamo

import (
	"context"
	"sync"
	"time"
)

// Concurrent Gets of one key through one node coalesce, so a hot key costs
// its replicas one quorum read at a time however many callers want it.
//
// Sharing a read must not weaken what a Get promises: with R+W > N, a Get
// that begins after a Put was acknowledged sees that Put. A read whose
// fan-out has already started may have asked its replicas before that Put
// landed, so a caller may only share a read that starts after the caller
// called. Hence the scheme, per key and read options:
//
//   - No read in flight: the caller runs its own, at once, in its own
//     goroutine (the common, uncontended case costs one map insert and
//     delete).
//   - A read in flight: the caller joins the queued read, creating it if
//     there is none, and waits. The queued read starts when the one in
//     flight finishes, so it starts after every caller that joined it
//     called, and it serves them all. Callers arriving while it runs queue
//     behind it in turn.
//
// So at most one read per key is in flight and one queued, a caller waits at
// most for the end of the read in flight plus its own, and each caller gets
// a read that began after it called: exactly the guarantee of its own read.
// A caller whose context ends stops waiting; the read it joined still runs
// for the others. Read repair runs once per shared read.
type readCoalescer struct {
	shards [coalesceShards]coalesceShard
}

const coalesceShards = 64

type coalesceShard struct {
	mu     sync.Mutex
	groups map[flightKey]*readGroup
}

// flightKey identifies the Gets that may share a read: same key, same R,
// same replica set rule and same time budget.
type flightKey struct {
	key           string
	r             int
	primariesOnly bool
	timeout       time.Duration
}

// readGroup is a key's reads: one is in flight while the group exists, and
// queued, if not nil, waits for it to finish.
type readGroup struct {
	queued *sharedRead
}

// sharedRead is a queued read and, once done is closed, its outcome, which
// its callers only read.
type sharedRead struct {
	done chan struct{}
	st   state
	err  error
}

// coalescedRead returns key's state read from a quorum as o says, by a read
// that began after this call did. shared reports that other callers got the
// same state, so its values must be copied before they are handed out.
func (s *Store) coalescedRead(ctx context.Context, q request, o options) (st state, shared bool, err error) {
	k := flightKey{key: string(q.key), r: o.r, primariesOnly: o.primariesOnly, timeout: o.timeout}
	sh := &s.reads.shards[hashString(k.key)%coalesceShards]
	sh.mu.Lock()
	g := sh.groups[k]
	if g == nil {
		g = &readGroup{}
		if sh.groups == nil {
			sh.groups = map[flightKey]*readGroup{}
		}
		sh.groups[k] = g
		sh.mu.Unlock()
		st, err = s.quorumRead(ctx, q, o)
		s.nextRead(sh, k, g, q, o)
		return st, false, err
	}
	f := g.queued
	if f == nil {
		f = &sharedRead{done: make(chan struct{})}
		g.queued = f
	}
	sh.mu.Unlock()
	s.stats.coalesced.Add(1)
	select {
	case <-f.done:
		return f.st, true, f.err
	case <-ctx.Done():
		return state{}, false, quorumError("get", min(o.r, s.cfg.N), nil, ctx.Err())
	}
}

// nextRead is called when group g's read in flight has finished: it starts
// the queued read, if any, in the background (its callers are waiting), or
// else retires the group.
func (s *Store) nextRead(sh *coalesceShard, k flightKey, g *readGroup, q request, o options) {
	sh.mu.Lock()
	f := g.queued
	if f == nil {
		delete(sh.groups, k)
		sh.mu.Unlock()
		return
	}
	g.queued = nil // it starts now: later callers queue behind it
	sh.mu.Unlock()
	s.goBackground(func(bg context.Context) {
		ctx, cancel := context.WithTimeout(bg, o.timeout)
		f.st, f.err = s.quorumRead(ctx, s.place(q.key), o) // the ring as of now
		cancel()
		close(f.done)
		s.nextRead(sh, k, g, q, o)
	})
}

// quorumRead reads key from the first N reachable nodes of its preference
// list and returns once R answered (readAll).
func (s *Store) quorumRead(ctx context.Context, q request, o options) (state, error) {
	primaries, fallbacks := s.placement(q, o.primariesOnly)
	if len(primaries) == 0 {
		return state{}, ErrNoReplica
	}
	targets := s.readTargets(primaries, fallbacks)
	return s.readAll(ctx, q, targets, primaries, min(o.r, len(primaries)))
}
