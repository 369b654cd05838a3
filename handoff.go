// handoff.go: §4.6 sloppy quorum and hinted handoff: fallback nodes keep
// durable hints for unreachable owners and deliver them when they return.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// handoffState is the delivery side of hinted handoff: per-target backoff,
// the wake-up channel and the delivery rate limit.
type handoffState struct {
	mu      sync.Mutex
	backoff map[string]backoffState

	delivered, rehomed atomic.Int64

	wake chan struct{}
	pace *pacer
}

type backoffState struct {
	until time.Time
	delay time.Duration
}

func newHandoffState(rate int) *handoffState {
	return &handoffState{backoff: map[string]backoffState{}, wake: make(chan struct{}, 1), pace: newPacer(rate, hintChunk)}
}

// wakeHandoff starts a delivery round soon, without blocking.
func (s *Store) wakeHandoff() {
	select {
	case s.handoff.wake <- struct{}{}:
	default:
	}
}

// handoffLoop delivers hints every Handoff.Interval and whenever membership
// changes, until the Store closes.
func (s *Store) handoffLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Handoff.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.handoff.wake:
		}
		_, _ = s.DeliverHints(ctx) // failures back off per target and are logged
	}
}

// DeliverHints runs one delivery round now: for every reachable node this
// node holds hints for, and whose backoff has passed, it sends up to a batch
// of hints, throttled by Handoff.Rate and Handoff.Concurrency, and deletes
// each hint once the owner has durably merged it. Hints held for a node that
// is no longer in the ring go to the current primaries of their keys instead,
// and are deleted once every one of them holds them. It returns how many
// hints were delivered, and the delivery failures joined. The background
// loop calls it; tests and operators may too.
func (s *Store) DeliverHints(ctx context.Context) (int, error) {
	h := s.handoff
	targets := s.rep.hints.targets()
	slices.Sort(targets)
	r := s.ring.Load()
	delivered := 0
	var errs []error
	for _, target := range targets {
		if ctx.Err() != nil {
			break
		}
		i, inRing := r.index[target]
		if inRing && !s.reachable(target) {
			continue
		}
		h.mu.Lock()
		b := h.backoff[target]
		h.mu.Unlock()
		if time.Now().Before(b.until) {
			continue
		}
		// Batch after batch while full batches go through; the pacer keeps
		// the rate, and one failure ends this target's turn.
		var err error
		for {
			var n int
			var full bool
			if inRing {
				n, full, err = s.deliverTo(ctx, r.members[i])
			} else {
				n, full, err = s.rehomeHints(ctx, r, target)
			}
			delivered += n
			if err != nil || !full || ctx.Err() != nil {
				break
			}
		}
		h.mu.Lock()
		if err != nil {
			// The first retry comes soon (an owner seen alive by gossip may not
			// serve yet), then the delay doubles up to MaxBackoff.
			b.delay = min(max(2*b.delay, s.cfg.Handoff.Interval/8), s.cfg.Handoff.MaxBackoff)
			wait := jitter(target, b.delay)
			b.until = time.Now().Add(wait)
			h.backoff[target] = b
			time.AfterFunc(wait, s.wakeHandoff)
			s.log.Debug("hint delivery failed", "peer", target, "retry_in", b.delay, "err", err)
			errs = append(errs, fmt.Errorf("hints for %s: %w", target, err))
		} else {
			delete(h.backoff, target)
		}
		h.mu.Unlock()
	}
	return delivered, errors.Join(errs...)
}

// rehomeHints hands a batch of the hints this node holds for target, a node
// no longer in ring r, to the current primaries of their keys (this node
// merges its own share), and deletes each hint once every one of them has
// merged it durably. full reports whether more hints may be waiting.
func (s *Store) rehomeHints(ctx context.Context, r *ring, target string) (n int, full bool, err error) {
	batch, full, err := s.rep.hints.batch(target, hintBatchChunks*s.batchBytes)
	if err != nil {
		return 0, false, err
	}
	var errs []error
	for _, chunk := range s.chunks(batch) {
		if err := s.handoff.pace.wait(ctx, len(chunk)); err != nil {
			return n, false, err
		}
		need := make([]int, len(chunk))
		acks := make([]int, len(chunk))
		byOwner := map[string][]int{}
		for i, rec := range chunk {
			for _, m := range r.preference(rec.p, s.cfg.N) {
				byOwner[m.ID] = append(byOwner[m.ID], i)
				need[i]++
			}
		}
		for _, id := range slices.Sorted(maps.Keys(byOwner)) {
			idx := byOwner[id]
			if err := s.pushHints(ctx, r, id, chunk, idx); err != nil {
				errs = append(errs, fmt.Errorf("to %s: %w", id, err))
				continue
			}
			for _, i := range idx {
				acks[i]++
			}
		}
		var done []hintRecord
		for i, rec := range chunk {
			if acks[i] >= need[i] {
				done = append(done, rec)
			}
		}
		if err := s.rep.hints.remove(done); err != nil {
			errs = append(errs, err)
			continue
		}
		n += len(done)
		s.handoff.rehomed.Add(int64(len(done)))
	}
	return n, full && len(errs) == 0, errors.Join(errs...)
}

// pushHints merges the hints chunk[idx] into the replica held by the member
// id of ring r, durably (this node merges its own).
func (s *Store) pushHints(ctx context.Context, r *ring, id string, chunk []hintRecord, idx []int) error {
	if id == s.cfg.NodeID {
		for _, i := range idx {
			st, err := decodeState(chunk[i].val)
			if err != nil {
				return err
			}
			if err := s.rep.merge(chunk[i].p, chunk[i].key, st); err != nil {
				return err
			}
		}
		return nil
	}
	if !s.reachable(id) {
		return errUnreachable
	}
	m := &exchangeReq{PushOnly: true}
	for _, i := range idx {
		m.Keys = append(m.Keys, chunk[i].key)
		m.States = append(m.States, chunk[i].val)
	}
	resp, err := s.call(ctx, r.members[r.index[id]], s.encode(m))
	if err != nil {
		return err
	}
	if resp.Body.kind() != kindAEStates {
		return fmt.Errorf("%w: %s answered a hint push with %v", ErrProtocol, id, resp.Body.kind())
	}
	return nil
}

// resetBackoff lets delivery to nodes that became reachable start at once.
func (s *Store) resetBackoff() {
	h := s.handoff
	h.mu.Lock()
	for t := range h.backoff {
		if s.reachable(t) {
			delete(h.backoff, t)
		}
	}
	h.mu.Unlock()
	if len(s.rep.hints.targets()) > 0 {
		s.wakeHandoff()
	}
}

// hintBatchChunks is how many delivery messages' worth of bytes one batch
// reads at most.
const hintBatchChunks = 4

// chunks splits hints into delivery messages of at most hintChunk hints,
// bounded in bytes by the batch budget (at least one hint each), and by
// max(1, rate/10) hints so the throttle shapes the traffic.
func (s *Store) chunks(hints []hintRecord) [][]hintRecord {
	limit := batchFor(s.cfg.Handoff.Rate, hintChunk)
	var out [][]hintRecord
	for len(hints) > 0 {
		n, size := 0, 0
		for n < len(hints) && n < limit && (n == 0 || size+len(hints[n].key)+len(hints[n].val)+16 <= s.batchBytes) {
			size += len(hints[n].key) + len(hints[n].val) + 16
			n++
		}
		out = append(out, hints[:n])
		hints = hints[n:]
	}
	return out
}

// deliverTo sends one batch of target's hints, in chunks, at most
// Handoff.Concurrency of them in flight. It stops at the first failure.
// full reports whether the batch was full, so more may be waiting.
func (s *Store) deliverTo(ctx context.Context, target Member) (n int, full bool, err error) {
	batch, full, err := s.rep.hints.batch(target.ID, hintBatchChunks*s.batchBytes)
	if err != nil {
		return 0, false, err
	}
	chunks := s.chunks(batch)
	var (
		next      atomic.Int64 // the next chunk to send
		failed    atomic.Bool
		mu        sync.Mutex
		firstErr  error
		delivered int
		wg        sync.WaitGroup
	)
	for range min(s.cfg.Handoff.Concurrency, len(chunks)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(chunks) || failed.Load() {
					return
				}
				// A chunk takes at least a tenth of a second at the configured
				// rate, so the throttle shapes the traffic rather than letting
				// a burst through.
				err := s.handoff.pace.wait(ctx, len(chunks[i]))
				done := 0
				if err == nil {
					done, err = s.deliverChunk(ctx, target, chunks[i])
				}
				mu.Lock()
				delivered += done
				if err != nil && firstErr == nil {
					firstErr = err
					failed.Store(true)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if errors.Is(firstErr, ctx.Err()) && ctx.Err() != nil {
		firstErr = nil // the round ends with the Store; nothing failed
	}
	return delivered, full, firstErr
}

// hintChunk is how many hints one delivery message carries.
const hintChunk = 32

// deliverChunk sends hints to their owner in one message; the owner merges
// them durably in one commit, and the hints are then deleted in one commit,
// each unless it changed meanwhile.
func (s *Store) deliverChunk(ctx context.Context, target Member, chunk []hintRecord) (int, error) {
	m := &exchangeReq{PushOnly: true}
	var sent, bad []hintRecord
	for _, rec := range chunk {
		if _, err := decodeState(rec.val); err != nil {
			s.log.Error("dropping undecodable hint", "peer", target.ID, "err", err)
			bad = append(bad, rec)
			continue
		}
		m.Keys = append(m.Keys, rec.key)
		m.States = append(m.States, rec.val)
		sent = append(sent, rec)
	}
	_ = s.rep.hints.remove(bad)
	if len(sent) == 0 {
		return 0, nil
	}
	resp, err := s.call(ctx, target, s.encode(m))
	if err != nil {
		return 0, err
	}
	if resp.Body.kind() != kindAEStates {
		return 0, fmt.Errorf("%w: %s answered a hint delivery with %v", ErrProtocol, target.ID, resp.Body.kind())
	}
	s.handoff.delivered.Add(int64(len(sent)))
	return len(sent), s.rep.hints.remove(sent)
}
