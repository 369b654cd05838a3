// quorum.go: §4.5 the coordinator: parallel fan-out to replicas, the quorum
// tally, and read repair with late replies.
package dynamo

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// vote is the state of a quorum tally.
type vote int

const (
	votePending vote = iota // not enough answers yet either way
	voteMet                 // need successes reached
	voteFailed              // too many failures for need to be reachable
)

// tally counts replica answers against a quorum. It is a plain value: the
// rule "is the quorum met" is tested without any network.
type tally struct {
	need, total int
	ok, failed  int
}

func (t *tally) record(ok bool) {
	if ok {
		t.ok++
	} else {
		t.failed++
	}
}

func (t tally) result() vote {
	switch {
	case t.ok >= t.need:
		return voteMet
	case t.total-t.failed < t.need:
		return voteFailed
	}
	return votePending
}

// readReply is one replica's answer to a read.
type readReply struct {
	m   Member
	st  state
	err error
}

// readAll reads key from replicas in parallel and returns once r have
// answered (or the quorum cannot be met, or ctx ends). It asks r of them
// first (readOrder), and one more for each that fails and each time
// ReadHedge passes without r answers; with ReadAllReplicas it asks all at
// once. Once every replica asked has answered or timed out, it repairs the
// stale primaries among them in the background.
func (s *Store) readAll(ctx context.Context, q request, replicas, primaries []Member, r int) (state, error) {
	order := s.readOrder(replicas, primaries)
	ch := make(chan readReply, len(order))
	req := s.encode(&getReq{Key: q.key})
	asked := 0
	var self *Member
	ask := func() {
		m := order[asked]
		asked++
		if m.ID == s.cfg.NodeID && !s.pulling(q.p) {
			self = &m // read on this goroutine once the others are asked
			return
		}
		s.goBackground(func(bg context.Context) {
			st, err := s.readReplica(bg, m, q, req)
			ch <- readReply{m, st, err}
		})
	}
	// readSelf reads this node's replica, if asked, on the caller's
	// goroutine: no hand-off to a worker, and the read overlaps the other
	// replicas' round trips. Only a replica that is not pulling the key's
	// partition reads this way: one that is reads through to the previous
	// owners (network calls, up to half the replica timeout), which must
	// not hold up the caller's deadline or a quorum the others meet, so it
	// reads on a worker like the rest. Like every reader it sends its
	// reply on ch exactly once (ch holds one per replica), under the
	// Store's context, as a worker would.
	readSelf := func() {
		if self != nil {
			m := *self
			self = nil
			st, err := s.readReplica(s.bg, m, q, req)
			ch <- readReply{m, st, err}
		}
	}
	first := min(r, len(order))
	if s.cfg.ReadAllReplicas {
		first = len(order)
	}
	for asked < first {
		ask()
	}
	var hedge <-chan time.Time
	if asked < len(order) && s.cfg.ReadHedge > 0 {
		tm := time.NewTimer(s.cfg.ReadHedge)
		defer tm.Stop()
		hedge = tm.C
	}
	readSelf()
	t := tally{need: r, total: len(order)}
	replies := make([]readReply, 0, len(order))
	var ctxErr error
	for t.result() == votePending && ctxErr == nil {
		select {
		case rep := <-ch:
			replies = append(replies, rep)
			t.record(rep.err == nil)
			if rep.err != nil && asked < len(order) {
				ask()
				readSelf()
			}
		case <-hedge:
			if asked < len(order) {
				ask()
				readSelf()
			}
			if asked < len(order) {
				hedge = time.After(s.cfg.ReadHedge)
			}
		case <-ctx.Done():
			ctxErr = ctx.Err()
		}
	}
	merged := state{}
	for _, rep := range replies {
		if rep.err == nil {
			merged = syncStates(merged, rep.st)
		}
	}
	if t.result() == voteMet && len(replies) == asked && agree(replies, merged) {
		// Every replica asked has answered, alike: read repair would
		// find nothing to do, and merged shares its values with no one.
		return merged, nil
	}
	early := replies
	n := asked
	s.goBackground(func(bg context.Context) { s.readRepair(bg, q, n, primaries, early, ch) })
	if t.result() == voteMet {
		// merged shares its values with the replies read repair goes on
		// merging and sending: the caller gets its own copy.
		return merged.clone(), nil
	}
	return state{}, quorumError("get", r, replies, ctxErr)
}

// agree reports whether every reply is a state of merged's version: none
// failed (a damaged replica answers with an error, and read repair replaces
// its state) and none is stale.
func agree(replies []readReply, merged state) bool {
	for _, rep := range replies {
		if rep.err != nil || !sameVersion(rep.st, merged) {
			return false
		}
	}
	return true
}

// readOrder is the order in which a read asks replicas: this node first if
// it is a primary (its read costs no network), then the other primaries starting
// at a point that turns with each read, so the reads of a key spread over
// its replicas, and the fallbacks last, in preference order. A fallback
// holds only the hints it took, so it is asked only when a primary fails
// or is slow: with every primary up, the R asked are primaries and meet
// every write that W primaries acknowledged. A rotation rather than a
// random pick keeps simulations replayable.
func (s *Store) readOrder(replicas, primaries []Member) []Member {
	out := make([]Member, 0, len(replicas))
	others := make([]Member, 0, len(replicas))
	var fallbacks []Member
	for _, m := range replicas {
		primary := slices.ContainsFunc(primaries, func(p Member) bool { return p.ID == m.ID })
		switch {
		case !primary:
			fallbacks = append(fallbacks, m)
		case m.ID == s.cfg.NodeID:
			out = append(out, m)
		default:
			others = append(others, m)
		}
	}
	if len(others) > 0 {
		k := int(s.readTurn.Add(1) % uint64(len(others)))
		out = append(out, others[k:]...)
		out = append(out, others[:k]...)
	}
	return append(out, fallbacks...)
}

// readRepair waits for the replies still outstanding of the asked replicas
// (each bounded by the replica timeout), merges every state it has, and
// sends the merged state to each primary that answered with a stale one
// (§4.7 read repair). Replicas that failed to answer, or were not asked,
// are left to hinted handoff and anti-entropy, and fallbacks are never
// repaired: they hold hints, not replicas.
func (s *Store) readRepair(ctx context.Context, q request, asked int, primaries []Member, replies []readReply, ch <-chan readReply) {
	all := replies
	for len(all) < asked {
		all = append(all, <-ch) // every reader sends exactly once
	}
	merged := state{}
	answered := 0
	for _, rep := range all {
		if rep.err == nil {
			merged = syncStates(merged, rep.st)
			answered++
		}
	}
	if answered < 2 || merged.empty() {
		return
	}
	var req []byte
	for _, rep := range all {
		// A replica whose stored state is damaged answered with an error
		// matching ErrCorrupt: it takes the merged state in its place.
		stale := rep.err == nil && !sameVersion(rep.st, merged) || rep.err != nil && isCorrupt(rep.err)
		if !stale || !slices.Contains(primaries, rep.m) {
			continue
		}
		if req == nil {
			req = s.encode(&replicateReq{Key: q.key, State: encodeState(merged)})
		}
		if err := s.writeReplica(ctx, rep.m, q, merged, req); err != nil {
			s.log.Debug("read repair failed", "partition", q.p, keyAttr(q.key), "peer", rep.m.ID, "err", err)
		} else {
			s.stats.readRepairs.Add(1)
		}
	}
}

// writeAll replicates key's state st to replicas in parallel and returns once
// need of them (counting already, the acks the caller has) have acknowledged
// durably, or the quorum cannot be met. A replica that is unreachable or
// fails is replaced by a fallback from pool (nil: none), which stores st as a
// hint for it; the fallback's acknowledgement counts toward need (§4.6).
// enc is st encoded (the coordinator already encoded it to store it).
func (s *Store) writeAll(ctx context.Context, op string, q request, st state, enc []byte, replicas []Member, pool *fallbackPool, need, already int) error {
	return s.startWrites(q, st, enc, replicas, pool).wait(ctx, op, need, already)
}

// writeRound is a replication of one state in flight: startWrites sends it,
// wait tallies the acknowledgements.
type writeRound struct {
	acks     chan writeAck
	replicas int
}

type writeAck struct {
	m   Member
	err error
}

// startWrites sends key's state st (encoded as enc) to replicas in
// parallel, each replaced by a fallback from pool when unreachable or
// failing, as writeAll describes, and returns without waiting.
func (s *Store) startWrites(q request, st state, enc []byte, replicas []Member, pool *fallbackPool) *writeRound {
	w := &writeRound{acks: make(chan writeAck, len(replicas)), replicas: len(replicas)}
	if len(replicas) == 0 {
		return w
	}
	req := s.encode(&replicateReq{Key: q.key, State: enc})
	// Primaries believed down get their fallbacks now, in preference
	// order, so which fallback stands in for which primary does not depend
	// on goroutine order (simulations replay); the others take theirs from
	// the pool as their writes fail.
	first := make([]*Member, len(replicas))
	up := make([]bool, len(replicas))
	for i, m := range replicas {
		if up[i] = s.reachable(m.ID); !up[i] {
			if f, ok := pool.take(); ok {
				first[i] = &f
			}
		}
	}
	for i, m := range replicas {
		s.goBackground(func(bg context.Context) {
			err := errUnreachable
			tried := up[i]
			if tried {
				err = s.writeReplica(bg, m, q, st, req)
			}
			for err != nil {
				f, ok := Member{}, false
				if first[i] != nil {
					f, ok, first[i] = *first[i], true, nil
				} else {
					f, ok = pool.take()
				}
				if !ok {
					break
				}
				hint := s.encode(&replicateReq{Key: q.key, State: enc, HintFor: m.ID})
				if herr := s.writeReplica(bg, f, q, st, hint); herr == nil {
					err = nil
				} else {
					s.log.Debug("fallback declined a hint", "peer", f.ID, "owner", m.ID, "partition", q.p, "err", herr)
				}
			}
			if err != nil && !tried && s.members.Reachable(m.ID) {
				// No fallback took it, and only this node's own failure
				// detector suspects the primary: try it after all.
				err = s.writeReplica(bg, m, q, st, req)
			}
			w.acks <- writeAck{m, err}
		})
	}
	return w
}

// wait returns once need acknowledgements (already of them the caller's
// own) are in, or the quorum cannot be met, or ctx ends.
func (w *writeRound) wait(ctx context.Context, op string, need, already int) error {
	if w.replicas == 0 {
		if already >= need {
			return nil
		}
		return &QuorumError{Op: op, Need: need, Got: already}
	}
	t := tally{need: need, total: w.replicas + already, ok: already}
	var failed []readReply
	var ctxErr error
	for t.result() == votePending && ctxErr == nil {
		select {
		case a := <-w.acks:
			t.record(a.err == nil)
			if a.err != nil {
				failed = append(failed, readReply{m: a.m, err: a.err})
			}
		case <-ctx.Done():
			ctxErr = ctx.Err()
		}
	}
	if t.result() == voteMet {
		return nil
	}
	qe := quorumError(op, need, failed, ctxErr).(*QuorumError)
	qe.Got = t.ok
	return qe
}

func quorumError(op string, need int, replies []readReply, ctxErr error) error {
	qe := &QuorumError{Op: op, Need: need, PerReplica: map[string]error{}, cause: ctxErr}
	for _, rep := range replies {
		if rep.err == nil {
			qe.Got++
		} else {
			qe.PerReplica[rep.m.ID] = rep.err
		}
	}
	if ctxErr != nil && len(qe.PerReplica) == 0 {
		qe.PerReplica = nil
	}
	return qe
}

// readReplica reads the key's state from one replica: locally without a
// network hop when m is this node. req is the encoded getReq.
func (s *Store) readReplica(ctx context.Context, m Member, q request, req []byte) (state, error) {
	if m.ID == s.cfg.NodeID {
		return s.localRead(ctx, q, false)
	}
	resp, err := s.call(ctx, m, req)
	if err != nil {
		return state{}, err
	}
	rep, ok := resp.Body.(*getReply)
	if !ok {
		return state{}, fmt.Errorf("%w: %s answered a get with %v", ErrProtocol, m.ID, resp.Body.kind())
	}
	st, err := decodeOwnedState(rep.State) // a subslice of the reply, which is ours
	if err != nil {
		return state{}, fmt.Errorf("replica %s: %w", m.ID, err)
	}
	return st, nil
}

// writeReplica merges st into one replica durably. req is the encoded
// replicateReq for remote replicas.
func (s *Store) writeReplica(ctx context.Context, m Member, q request, st state, req []byte) error {
	if m.ID == s.cfg.NodeID {
		return s.rep.merge(q.p, q.key, st)
	}
	resp, err := s.call(ctx, m, req)
	if err != nil {
		return err
	}
	if resp.Body.kind() != kindAck {
		return fmt.Errorf("%w: %s answered a replicate with %v", ErrProtocol, m.ID, resp.Body.kind())
	}
	return nil
}

// fallbackPool hands out a key's reachable fallback nodes, each at most once,
// in preference-list order, to the replica writes whose primary failed.
type fallbackPool struct {
	mu   sync.Mutex
	list []Member
}

func (p *fallbackPool) take() (Member, bool) {
	if p == nil {
		return Member{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.list) == 0 {
		return Member{}, false
	}
	m := p.list[0]
	p.list = p.list[1:]
	return m, true
}
