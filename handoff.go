// handoff.go: §4.6 sloppy quorum and hinted handoff: fallback nodes keep
// durable hints for unreachable owners and deliver them when they return.
package dynamo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// spaceHint holds hints: 'h' | len(target) u8 | target | partition u32 | key.
// Putting the target first makes one target's hints a contiguous range.
const spaceHint = 'h'

// hintBatch is how many hints one delivery round takes for one target.
const hintBatch = 256

var errUnreachable = errors.New("unreachable (failure detector)")

func hintKey(target string, partition int, key []byte) []byte {
	k := make([]byte, 0, 2+len(target)+4+len(key))
	k = append(k, spaceHint, byte(len(target)))
	k = append(k, target...)
	k = binary.BigEndian.AppendUint32(k, uint32(partition))
	return append(k, key...)
}

func hintTargetPrefix(target string) []byte {
	return append([]byte{spaceHint, byte(len(target))}, target...)
}

// parseHintKey splits a hint key; ok is false for malformed keys.
func parseHintKey(k []byte) (target string, dataKey []byte, ok bool) {
	if len(k) < 2 || k[0] != spaceHint {
		return "", nil, false
	}
	n := int(k[1])
	if len(k) < 2+n+4+1 {
		return "", nil, false
	}
	return string(k[2 : 2+n]), k[2+n:], true
}

// hintStore is the in-memory index of this node's durable hints: what it
// holds for whom, kept so bounds, reads and delivery need no scans.
type hintStore struct {
	mu        sync.Mutex
	records   map[string]int             // hint key -> encoded size
	byData    map[string]map[string]bool // partition+key -> targets
	perTarget map[string]int
	bytes     int64
	reserved  int
	backoff   map[string]backoffState

	delivered, refused, stored, rehomed atomic.Int64
	inFlight, maxInFlight               atomic.Int64

	wake chan struct{}
	pace pacer // delivery rate limit
}

type backoffState struct {
	until time.Time
	delay time.Duration
}

func newHintStore() *hintStore {
	return &hintStore{
		records:   map[string]int{},
		byData:    map[string]map[string]bool{},
		perTarget: map[string]int{},
		backoff:   map[string]backoffState{},
		wake:      make(chan struct{}, 1),
	}
}

// track records that hint key hk now has size n (0: deleted). Callers hold mu.
func (h *hintStore) track(hk []byte, n int) {
	target, dk, ok := parseHintKey(hk)
	if !ok {
		return
	}
	old, had := h.records[string(hk)]
	switch {
	case n > 0 && !had:
		h.records[string(hk)] = n
		h.perTarget[target]++
		ts := h.byData[string(dk)]
		if ts == nil {
			ts = map[string]bool{}
			h.byData[string(dk)] = ts
		}
		ts[target] = true
	case n > 0:
		h.records[string(hk)] = n
	case had:
		delete(h.records, string(hk))
		if h.perTarget[target]--; h.perTarget[target] <= 0 {
			delete(h.perTarget, target)
		}
		if ts := h.byData[string(dk)]; ts != nil {
			delete(ts, target)
			if len(ts) == 0 {
				delete(h.byData, string(dk))
			}
		}
	}
	h.bytes += int64(n - old)
}

// loadHints indexes the hints already in storage (after a restart).
func (s *Store) loadHints() error {
	h := s.hints
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.forEach([]byte{spaceHint}, func(k, v []byte) error {
		h.track(k, len(v))
		return nil
	})
}

// storeHint merges st into the hint this node keeps for target, durably. It
// declines a new hint with ErrHintsFull at the configured bounds.
func (s *Store) storeHint(target string, key []byte, st state) error {
	h := s.hints
	hk := hintKey(target, s.ring.Load().partition(key), key)
	enc := encodeState(st)
	h.mu.Lock()
	_, exists := h.records[string(hk)]
	if !exists && (len(h.records)+h.reserved >= s.cfg.Handoff.MaxHints || h.bytes+int64(len(enc)) > s.cfg.Handoff.MaxHintBytes) {
		h.mu.Unlock()
		h.refused.Add(1)
		return fmt.Errorf("%w: %d hints of %d bytes held, the limits are %d and %d", ErrHintsFull,
			len(h.records), h.bytes, s.cfg.Handoff.MaxHints, s.cfg.Handoff.MaxHintBytes)
	}
	if !exists {
		h.reserved++
	}
	h.mu.Unlock()
	size := 0
	err := s.cfg.Storage.Update(hk, func(cur []byte) ([]byte, error) {
		old, _ := decodeLocal(cur) // a damaged hint is replaced
		merged := syncStates(old, st)
		if err := decodable(merged); err != nil {
			return nil, fmt.Errorf("hint for key %q: %w", key, err)
		}
		out := encodeState(merged)
		size = len(out)
		return out, nil
	})
	h.mu.Lock()
	if !exists {
		h.reserved--
	}
	if err == nil {
		h.track(hk, size)
	}
	h.mu.Unlock()
	if err != nil {
		return err
	}
	h.stored.Add(1)
	return nil
}

// hintedState returns the merge of every hint this node holds for key, for
// reads that reach a fallback during an outage.
func (s *Store) hintedState(key []byte) (state, error) {
	h := s.hints
	p := s.ring.Load().partition(key)
	dk := make([]byte, 4, 4+len(key))
	binary.BigEndian.PutUint32(dk, uint32(p))
	dk = append(dk, key...)
	h.mu.Lock()
	var targets []string
	for t := range h.byData[string(dk)] {
		targets = append(targets, t)
	}
	h.mu.Unlock()
	out := state{}
	for _, t := range targets {
		raw, err := s.cfg.Storage.Get(hintKey(t, p, key))
		if err != nil && !isCorrupt(err) {
			return state{}, err
		}
		st, derr := decodeState(raw)
		if err != nil || derr != nil {
			s.log.Warn("skipping a damaged hint", "target", t, "key", key, "err", errors.Join(err, derr))
			continue // never served; its owner gets the key from the other replicas
		}
		out = syncStates(out, st)
	}
	return out, nil
}

// wakeHandoff starts a delivery round soon, without blocking.
func (s *Store) wakeHandoff() {
	select {
	case s.hints.wake <- struct{}{}:
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
		case <-s.hints.wake:
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
	h := s.hints
	h.mu.Lock()
	targets := make([]string, 0, len(h.perTarget))
	for t := range h.perTarget {
		targets = append(targets, t)
	}
	h.mu.Unlock()
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
			b.until = time.Now().Add(jitter(target, b.delay))
			h.backoff[target] = b
			time.AfterFunc(b.delay, s.wakeHandoff)
			s.log.Debug("hint delivery failed", "target", target, "retry_in", b.delay, "err", err)
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
	batch, full, err := s.readHints(target)
	if err != nil {
		return 0, false, err
	}
	var errs []error
	for _, chunk := range s.chunks(batch) {
		if err := s.hints.pace.wait(ctx, len(chunk), s.cfg.Handoff.Rate); err != nil {
			return n, false, err
		}
		need := make([]int, len(chunk))
		acks := make([]int, len(chunk))
		byOwner := map[string][]int{}
		for i, rec := range chunk {
			_, dk, _ := parseHintKey(rec.hk)
			for _, m := range r.preference(int(binary.BigEndian.Uint32(dk[:4])), s.cfg.N) {
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
		for i, rec := range chunk {
			if acks[i] < need[i] {
				continue
			}
			if err := s.deleteHint(rec.hk, rec.val); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
			s.hints.rehomed.Add(1)
		}
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
			if err := s.localMerge(chunk[i].key, st); err != nil {
				return err
			}
		}
		return nil
	}
	if !s.reachable(id) {
		return errUnreachable
	}
	m := &message{Version: protocolVersion, Kind: kindAEExchange, Cluster: s.wireCluster, Hint: s.cfg.NodeID, Flags: flagPushOnly}
	for _, i := range idx {
		m.Keys = append(m.Keys, chunk[i].key)
		m.States = append(m.States, chunk[i].val)
	}
	resp, err := s.call(ctx, r.members[r.index[id]], encodeMessage(m))
	if err != nil {
		return err
	}
	if resp.Kind != kindAEStates {
		return fmt.Errorf("%w: %s answered a hint push with %v", ErrProtocol, id, resp.Kind)
	}
	return nil
}

// resetBackoff lets delivery to nodes that became reachable start at once.
func (s *Store) resetBackoff() {
	h := s.hints
	h.mu.Lock()
	for t := range h.backoff {
		if s.reachable(t) {
			delete(h.backoff, t)
		}
	}
	pending := len(h.perTarget) > 0
	h.mu.Unlock()
	if pending {
		s.wakeHandoff()
	}
}

type hintRecord struct{ hk, key, val []byte }

// readHints returns up to a batch of target's hints, bounded in count
// (hintBatch) and in bytes (a few delivery messages' worth). full reports
// whether more may be waiting.
func (s *Store) readHints(target string) (batch []hintRecord, full bool, err error) {
	size := 0
	err = s.forEach(hintTargetPrefix(target), func(k, v []byte) error {
		_, dk, ok := parseHintKey(k)
		if !ok {
			return nil
		}
		if len(batch) >= hintBatch || (len(batch) > 0 && size+len(v) > hintBatchChunks*s.batchBytes) {
			full = true
			return errStopIteration
		}
		batch = append(batch, hintRecord{bytes.Clone(k), bytes.Clone(dk[4:]), bytes.Clone(v)})
		size += len(v)
		return nil
	})
	if err != nil && !errors.Is(err, errStopIteration) {
		return nil, false, err
	}
	return batch, full, nil
}

// hintBatchChunks is how many delivery messages' worth of bytes one batch
// reads at most.
const hintBatchChunks = 4

// chunks splits hints into delivery messages of at most hintChunk hints,
// bounded in bytes by the batch budget (at least one hint each), and by
// max(1, rate/10) hints so the throttle shapes the traffic.
func (s *Store) chunks(hints []hintRecord) [][]hintRecord {
	limit := min(hintChunk, max(1, s.cfg.Handoff.Rate/10))
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

// deliverTo sends one batch of target's hints. It stops at the first failure.
// full reports whether the batch was full, so more may be waiting.
func (s *Store) deliverTo(ctx context.Context, target Member) (n int, full bool, err error) {
	batch, full, err := s.readHints(target.ID)
	if err != nil {
		return 0, false, err
	}
	sem := make(chan struct{}, s.cfg.Handoff.Concurrency)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		firstErr  error
		delivered int
	)
	for _, chunk := range s.chunks(batch) {
		// A chunk takes at least a tenth of a second at the configured
		// rate, so the throttle shapes the traffic rather than letting a
		// burst through.
		if err := s.hints.pace.wait(ctx, len(chunk), s.cfg.Handoff.Rate); err != nil {
			break
		}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n := s.hints.inFlight.Add(1)
			for {
				m := s.hints.maxInFlight.Load()
				if n <= m || s.hints.maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			done, err := s.deliverChunk(ctx, target, chunk)
			s.hints.inFlight.Add(-1)
			mu.Lock()
			defer mu.Unlock()
			delivered += done
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return delivered, full, firstErr
}

// hintChunk is how many hints one delivery message carries.
const hintChunk = 32

// deliverChunk sends hints to their owner in one message; the owner merges
// them durably (its group commit shares the fsyncs), and each hint is then
// deleted unless it changed meanwhile.
func (s *Store) deliverChunk(ctx context.Context, target Member, chunk []hintRecord) (int, error) {
	m := &message{Version: protocolVersion, Kind: kindAEExchange, Cluster: s.wireCluster, Hint: s.cfg.NodeID, Flags: flagPushOnly}
	var sent []hintRecord
	for _, rec := range chunk {
		if _, err := decodeState(rec.val); err != nil {
			s.log.Error("dropping undecodable hint", "target", target.ID, "err", err)
			_ = s.deleteHint(rec.hk, rec.val)
			continue
		}
		m.Keys = append(m.Keys, rec.key)
		m.States = append(m.States, rec.val)
		sent = append(sent, rec)
	}
	if len(sent) == 0 {
		return 0, nil
	}
	resp, err := s.call(ctx, target, encodeMessage(m))
	if err != nil {
		return 0, err
	}
	if resp.Kind != kindAEStates {
		return 0, fmt.Errorf("%w: %s answered a hint delivery with %v", ErrProtocol, target.ID, resp.Kind)
	}
	s.hints.delivered.Add(int64(len(sent)))
	errs := make([]error, len(sent))
	var wg sync.WaitGroup
	for i, rec := range sent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.deleteHint(rec.hk, rec.val)
		}()
	}
	wg.Wait()
	return len(sent), errors.Join(errs...)
}

var errStopIteration = errors.New("stop iteration")

func (s *Store) deleteHint(hk, sent []byte) error {
	size := 0
	err := s.cfg.Storage.Update(hk, func(cur []byte) ([]byte, error) {
		if cur == nil || bytes.Equal(cur, sent) {
			size = 0
			return nil, nil
		}
		size = len(cur)
		return bytes.Clone(cur), nil
	})
	if err != nil {
		return err
	}
	s.hints.mu.Lock()
	s.hints.track(hk, size)
	s.hints.mu.Unlock()
	return nil
}

// HintStats describes the hints a node holds for others.
type HintStats struct {
	Pending   map[string]int `json:"pending"`   // hints held, per intended owner
	Bytes     int64          `json:"bytes"`     // bytes of hints held
	Stored    int64          `json:"stored"`    // hints accepted (merges into an existing hint count too)
	Delivered int64          `json:"delivered"` // hints acknowledged by their owner
	Refused   int64          `json:"refused"`   // hints declined because the hint store was full
	// Rehomed counts hints for nodes that left the ring, handed to the
	// current primaries of their keys instead.
	Rehomed int64 `json:"rehomed"`
}

func (s *Store) hintStats() HintStats {
	h := s.hints
	h.mu.Lock()
	defer h.mu.Unlock()
	pending := make(map[string]int, len(h.perTarget))
	for t, n := range h.perTarget {
		pending[t] = n
	}
	return HintStats{Pending: pending, Bytes: h.bytes, Stored: h.stored.Load(), Delivered: h.delivered.Load(), Refused: h.refused.Load(), Rehomed: h.rehomed.Load()}
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
