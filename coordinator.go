// coordinator.go: §4.5 the coordinator of a client's request: Get, Put and
// Delete, each placed once on one ring snapshot, then fanned out to the
// replicas (quorum.go), and forwarding a write a non-replica cannot mint.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dynamo-kv/dynamo/storage"
)

// request is one client request's placement: the ring snapshot it uses
// from start to end, and its key's partition, computed once.
type request struct {
	r   *ring
	p   int
	key []byte
}

func (s *Store) place(key []byte) request {
	return request{r: s.ring.Load(), p: partitionOf(key, s.cfg.Partitions), key: key}
}

// PreferenceList returns the first n nodes of key's preference list, best
// first: the first N are its replicas, the rest its fallbacks. The caller owns
// the slice.
func (s *Store) PreferenceList(key []byte, n int) []Member {
	q := s.place(key)
	return q.r.preference(q.p, n)
}

func (s *Store) checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > s.cfg.Limits.MaxKeySize:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrKeyTooLarge, len(key), s.cfg.Limits.MaxKeySize)
	}
	return nil
}

// Get reads key from R of its N replicas (WithR overrides R) and returns its
// live siblings and the context that covers them. A missing or deleted key
// returns no siblings, no error, and a context (which, after a delete, covers
// the tombstone). With a Resolver configured, at most one sibling is returned.
// The returned values are owned by the caller. Failing to reach R replicas
// returns a *QuorumError matching ErrReadQuorum.
func (s *Store) Get(ctx context.Context, key []byte, opts ...Option) ([]Sibling, CausalContext, error) {
	st, c, err := s.getState(ctx, key, opts)
	if err != nil {
		return nil, CausalContext{}, err
	}
	live := st.live()
	sibs := make([]Sibling, len(live))
	var newest int64
	for i, sb := range live {
		sibs[i] = Sibling{Value: sb.Value, Timestamp: time.Unix(0, sb.Time)}
		newest = max(newest, sb.Time)
	}
	if s.cfg.Resolver != nil && len(sibs) > 1 {
		v, err := s.cfg.Resolver(key, sibs)
		if err != nil {
			return nil, CausalContext{}, fmt.Errorf("%w: key %q: %w", ErrResolve, key, err)
		}
		sibs = []Sibling{{Value: v, Timestamp: time.Unix(0, newest)}}
	}
	return sibs, c, nil
}

// getState is Get's quorum read: the merged state of R replicas, tombstones
// and dots included, and the context that covers it. It is counted as a Get
// in Metrics, with its live siblings and their bytes.
func (s *Store) getState(ctx context.Context, key []byte, opts []Option) (state, CausalContext, error) {
	start := time.Now()
	st, c, err := s.readState(ctx, key, opts)
	s.metrics.done(opGet, start, err)
	if err == nil {
		s.metrics.observeRead(st)
	}
	return st, c, err
}

func (s *Store) readState(ctx context.Context, key []byte, opts []Option) (state, CausalContext, error) {
	if !s.beginOp() {
		return state{}, CausalContext{}, ErrClosed
	}
	defer s.ops.Done()
	if err := s.checkKey(key); err != nil {
		return state{}, CausalContext{}, err
	}
	o, err := s.options(opts)
	if err != nil {
		return state{}, CausalContext{}, err
	}
	q := s.place(slices.Clone(key)) // read repair may outlive the call
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	s.hot.record(key, false)
	var st state
	var shared bool
	if s.cfg.NoGetCoalescing {
		st, err = s.quorumRead(ctx, q, o)
	} else {
		st, shared, err = s.coalescedRead(ctx, q, o)
	}
	if err != nil {
		return state{}, CausalContext{}, err
	}
	if shared { // other callers got the same state: each owns its copy
		st = st.clone()
	}
	return st, s.issueContext(st.VV), nil
}

// Put writes value under key, superseding the siblings that c covers (pass
// the context from Get; the zero CausalContext supersedes nothing). It
// returns once W replicas (WithW overrides W) hold the write durably, or a
// *QuorumError matching ErrWriteQuorum. A failed Put may still have been
// stored by some replicas. Put only reads key and value; the caller may
// reuse them afterwards.
//
// Put returns no new context: to write the key again, Get it first (Modify
// does both), or use PutReturning, whose returned context covers what c
// covered plus the new version and no sibling the caller did not see. A
// second Put with c itself becomes a sibling of the first.
func (s *Store) Put(ctx context.Context, key, value []byte, c CausalContext, opts ...Option) error {
	if value == nil {
		value = []byte{}
	}
	_, err := s.write(ctx, write{op: "put", value: value}, key, c, opts)
	return err
}

// Delete removes key by writing a tombstone that supersedes the siblings c
// covers. Siblings c does not cover survive (they were written concurrently).
// It returns like Put.
func (s *Store) Delete(ctx context.Context, key []byte, c CausalContext, opts ...Option) error {
	_, err := s.write(ctx, write{op: "delete", tombstone: true}, key, c, opts)
	return err
}

// write is what a Put or Delete asks: op names it in errors.
type write struct {
	op        string
	value     []byte // nil for a tombstone
	tombstone bool
	cvv       versionVector // the caller's context
	cdot      dot           // the caller's context's dot, if dotted (DESIGN §2.1)
}

// write runs a Put or Delete, counted in Metrics, and returns the dot of the
// version it created (zero when a forwarded write's coordinator did not
// report it).
func (s *Store) write(ctx context.Context, w write, key []byte, c CausalContext, opts []Option) (dot, error) {
	start := time.Now()
	op := opPut
	if w.tombstone {
		op = opDelete
	} else {
		s.metrics.putSize.observe(int64(len(w.value)))
	}
	d, err := s.runWrite(ctx, w, key, c, opts)
	s.metrics.done(op, start, err)
	return d, err
}

func (s *Store) runWrite(ctx context.Context, w write, key []byte, c CausalContext, opts []Option) (dot, error) {
	if len(w.value) > s.cfg.Limits.MaxValueSize {
		return dot{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrValueTooLarge, len(w.value), s.cfg.Limits.MaxValueSize)
	}
	if e := s.fatal.Load(); e != nil {
		return dot{}, *e
	}
	if !s.beginOp() {
		return dot{}, ErrClosed
	}
	defer s.ops.Done()
	if err := s.checkKey(key); err != nil {
		return dot{}, err
	}
	if err := s.checkContext(c); err != nil {
		return dot{}, err
	}
	o, err := s.options(opts)
	if err != nil {
		return dot{}, err
	}
	s.hot.record(key, true)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	q := s.place(slices.Clone(key)) // replica writes may outlive the call
	w.value, w.cvv, w.cdot = slices.Clone(w.value), c.vv, c.dot
	primaries, _ := s.placement(q, true)
	if len(primaries) == 0 {
		return dot{}, ErrNoReplica
	}
	if slices.ContainsFunc(primaries, func(m Member) bool { return m.ID == s.cfg.NodeID }) {
		return s.coordinate(ctx, q, w, min(o.w, len(primaries)), o.primariesOnly)
	}
	start := time.Now()
	d, err := s.forward(ctx, q, w, o, primaries)
	s.metrics.done(opForward, start, err)
	return d, err
}

// placement returns the request's N primaries and, unless primariesOnly,
// its reachable fallbacks in preference-list order, those in zones without
// a reachable primary first (zoneFallbacks).
func (s *Store) placement(q request, primariesOnly bool) (primaries, fallbacks []Member) {
	if primariesOnly {
		return q.r.preference(q.p, s.cfg.N), nil
	}
	pref := q.r.preference(q.p, q.r.keep)
	primaries = pref[:min(s.cfg.N, len(pref))]
	for _, m := range pref[len(primaries):] {
		if s.reachable(m.ID) {
			fallbacks = append(fallbacks, m)
		}
	}
	return primaries, s.zoneFallbacks(q.r, primaries, fallbacks)
}

// readTargets is the first N reachable nodes of the preference list (§4.6):
// during an outage a read reaches the fallbacks that took its writes. When
// fewer than N are believed up, the primaries that only this node's own
// failure detector suspects (peers.go) make up the number, and when nobody
// is believed up at all, the primaries are tried anyway: a read is never
// failed without asking.
func (s *Store) readTargets(primaries, fallbacks []Member) []Member {
	out := make([]Member, 0, len(primaries))
	for _, m := range primaries {
		if s.reachable(m.ID) {
			out = append(out, m)
		}
	}
	for _, m := range fallbacks {
		if len(out) == len(primaries) {
			break
		}
		out = append(out, m)
	}
	for _, m := range primaries {
		if len(out) < len(primaries) && !slices.Contains(out, m) && s.members.Reachable(m.ID) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return primaries
	}
	return out
}

// coordinate runs a write on this node, a replica of the key: it mints the
// new version in its replica and replicates the key's new state to the
// other primaries (mintAndReplicate), and waits for w durable
// acknowledgements, its own included. A primary that is unreachable, or whose write fails, is replaced
// by the next reachable fallback, which keeps the state as a hint (§4.6
// sloppy quorum). With primariesOnly there are no fallbacks, and a write
// that cannot reach w primaries by the failure detector's account fails
// before writing anything.
//
// It returns the new version's dot.
func (s *Store) coordinate(ctx context.Context, q request, w write, need int, primariesOnly bool) (dot, error) {
	primaries, fallbacks := s.placement(q, primariesOnly)
	if primariesOnly {
		up, down := 0, map[string]error{}
		for _, m := range primaries {
			if s.reachable(m.ID) {
				up++
			} else {
				down[m.ID] = errors.New("unreachable (primaries only)")
			}
		}
		if up < need {
			return dot{}, &QuorumError{Op: w.op, Need: need, Got: 0, PerReplica: down, unreachable: true}
		}
	}
	var pool *fallbackPool
	if !primariesOnly {
		pool = &fallbackPool{list: fallbacks}
	}
	others := slices.DeleteFunc(slices.Clone(primaries), func(m Member) bool { return m.ID == s.cfg.NodeID })
	round, d, err := s.mintAndReplicate(q, w, others, pool)
	if err != nil {
		if ferr := s.checkStorage(); ferr != nil {
			return dot{}, ferr
		}
		if errors.Is(err, ErrTooManySiblings) || errors.Is(err, ErrValueTooLarge) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBadContext) {
			return dot{}, err
		}
		return dot{}, &QuorumError{Op: w.op, Need: need, PerReplica: map[string]error{s.cfg.NodeID: err}}
	}
	if err := round.wait(ctx, w.op, need, 1); err != nil {
		return dot{}, err
	}
	return d, nil
}

// mintAndReplicate mints w in this node's replica and sends the new state
// to the other replicas: as soon as this node's Storage has settled it
// (storage.Stager; storage/bolt), so the others write it while this node's
// commit is fsynced, or else once it is durable here. It returns once it
// is durable here, with the sends under way; their acknowledgements are
// the round's. A mint that fails returns its error; the sends a settled
// state started go on in the background (a failed write may be stored on
// the replicas that took it, as Put says).
func (s *Store) mintAndReplicate(q request, w write, others []Member, pool *fallbackPool) (*writeRound, dot, error) {
	type minted struct {
		next state
		enc  []byte
		d    dot
		err  error
	}
	type settled struct {
		next state
		enc  []byte
	}
	now := s.cfg.Clock().UnixNano()
	if _, ok := s.rep.store.(storage.Stager); !ok {
		next, enc, d, err := s.rep.mint(q.p, q.key, w.value, w.tombstone, w.cvv, w.cdot, now)
		if err != nil {
			return nil, dot{}, err
		}
		return s.startWrites(q, next, enc, others, pool), d, nil
	}
	staged := make(chan settled, 1)
	done := make(chan minted, 1)
	s.goBackground(func(context.Context) {
		next, enc, d, err := s.rep.mintStaged(q.p, q.key, w.value, w.tombstone, w.cvv, w.cdot, now, func(next state, enc []byte) {
			staged <- settled{next, enc}
		})
		done <- minted{next, enc, d, err}
	})
	var round *writeRound
	var m minted
	select {
	case st := <-staged:
		round = s.startWrites(q, st.next, st.enc, others, pool)
		m = <-done
	case m = <-done:
	}
	if m.err != nil {
		return nil, dot{}, m.err
	}
	if round == nil {
		round = s.startWrites(q, m.next, m.enc, others, pool)
	}
	return round, m.d, nil
}

// forward hands a write to a replica of the key, which coordinates it (only
// a replica may mint the write's dot). It tries the replicas in preference
// order, skipping those believed down, and pings each first with the replica
// timeout: a silent replica is replaced by the next before it is handed the
// write, so the write is never coordinated twice (two coordinators would mint
// two dots: one write, two siblings). A replica that answered the ping gets
// the write with the time that is left, and a write that then goes
// unanswered is not tried elsewhere: it may have been applied.
//
// When no replica could be handed the write, the error matches both
// ErrNoReplica and ErrWriteQuorum (it wraps a *QuorumError with Got 0).
func (s *Store) forward(ctx context.Context, q request, w write, o options, replicas []Member) (dot, error) {
	reqID := mix64(s.reqBase + s.reqSeq.Add(1))
	errs := map[string]error{}
	for _, m := range replicas {
		if !s.reachable(m.ID) {
			errs[m.ID] = errUnreachable
			continue
		}
		if err := s.ping(ctx, m); err != nil {
			errs[m.ID] = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		budget := o.timeout
		if dl, ok := ctx.Deadline(); ok {
			budget = time.Until(dl)
		}
		req := s.encode(&putReq{
			Key: q.key, Value: w.value, Tombstone: w.tombstone, Context: w.cvv, W: o.w,
			TimeoutMS: max(1, budget.Milliseconds()), PrimariesOnly: o.primariesOnly, ReqID: reqID,
			ContextDot: w.cdot,
		})
		resp, err := s.callObserved(ctx, ctx, m, req)
		if err == nil {
			ack, ok := resp.Body.(*ackReply)
			if !ok {
				return dot{}, fmt.Errorf("%w: %s answered a put with %v", ErrProtocol, m.ID, resp.Body.kind())
			}
			return ack.Dot, nil
		}
		var qe *QuorumError
		if errors.As(err, &qe) {
			qe.Op = w.op
			return dot{}, qe
		}
		if errors.Is(err, ErrTooManySiblings) || errors.Is(err, ErrValueTooLarge) || errors.Is(err, ErrBadContext) {
			return dot{}, err
		}
		errs[m.ID] = err
		if ctx.Err() != nil || !errors.Is(err, ErrNoReplica) && !errors.Is(err, ErrClosed) {
			// Out of time, or the replica took the write and failed it:
			// it may or may not have been applied.
			return dot{}, &QuorumError{Op: w.op, Need: o.w, PerReplica: errs, cause: ctx.Err()}
		}
		// It declined before minting (not a replica in its ring, or
		// closing): the next one may take it.
	}
	return dot{}, fmt.Errorf("%w: %w", ErrNoReplica, &QuorumError{Op: w.op, Need: o.w, PerReplica: errs})
}

// ping asks m whether it is up, with the replica timeout. A peer that answers
// with a protocol error (an older release) is up too.
func (s *Store) ping(ctx context.Context, m Member) error {
	_, err := s.call(ctx, m, s.pingReq)
	if err != nil && !errors.Is(err, ErrProtocol) {
		return err
	}
	return nil
}

// localRead returns this node's state of the key (replica.read) and, unless
// local, reads through to the previous owners of a partition it is still
// pulling (transfer.go).
func (s *Store) localRead(ctx context.Context, q request, local bool) (state, error) {
	st, err := s.rep.read(q.p, q.key)
	if err != nil || local {
		return st, err
	}
	return s.readThrough(ctx, q, st), nil
}
