// hints.go: §4.6 the replica's hint store: states this node keeps, as a
// fallback, for owners that did not take them, durable in their own key
// space and indexed in memory so bounds, reads and delivery need no scans.
package dynamo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/dynamo-kv/dynamo/storage"
)

// spaceHint holds hints: 'h' | len(target) u8 | target | partition u32 | key.
// Putting the target first makes one target's hints a contiguous range.
const spaceHint = 'h'

// errStopIteration ends a ForEach early.
var errStopIteration = errors.New("stop iteration")

// hintBatch is how many hints one delivery round takes for one target.
const hintBatch = 256

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

// parseHintKey splits a hint key into its target and its partition and
// key (the data key without its space byte); ok is false for malformed keys.
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

// hintStore keeps this node's durable hints, with an in-memory index of
// what it holds for whom.
type hintStore struct {
	store    Storage
	log      *slog.Logger
	maxHints int
	maxBytes int64

	mu        sync.Mutex
	records   map[string]int             // hint key -> encoded size
	byData    map[string]map[string]bool // partition+key -> targets
	perTarget map[string]int
	bytes     int64
	reserved  int

	stored, refused atomic.Int64
}

func newHintStore(st Storage, log *slog.Logger, h HandoffConfig) *hintStore {
	return &hintStore{
		store: st, log: log, maxHints: h.MaxHints, maxBytes: h.MaxHintBytes,
		records:   map[string]int{},
		byData:    map[string]map[string]bool{},
		perTarget: map[string]int{},
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

// forEach walks the hints under prefix; a damaged hint a checking Storage
// reports is dropped (its owner gets the key from the other replicas).
func (h *hintStore) forEach(prefix []byte, fn func(k, v []byte) error) error {
	return forEach(h.store, h.log, prefix, fn, func(k []byte) {
		h.log.Warn("discarded a damaged stored record", storedKeyAttrs(k)...)
		h.mu.Lock()
		h.track(k, 0)
		h.mu.Unlock()
	})
}

// targets returns the nodes this node holds hints for.
func (h *hintStore) targets() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.perTarget))
	for t := range h.perTarget {
		out = append(out, t)
	}
	return out
}

// load indexes the hints already in storage (after a restart).
func (h *hintStore) load() error {
	type record struct {
		hk   []byte
		size int
	}
	var records []record
	err := h.forEach([]byte{spaceHint}, func(k, v []byte) error {
		records = append(records, record{bytes.Clone(k), len(v)})
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, rec := range records {
		h.track(rec.hk, rec.size)
	}
	return err
}

// put merges st into the hint this node keeps for target, durably. It
// declines a new hint with ErrHintsFull at the configured bounds.
func (h *hintStore) put(target string, p int, key []byte, st state) error {
	hk := hintKey(target, p, key)
	enc := encodeState(st)
	h.mu.Lock()
	_, exists := h.records[string(hk)]
	if !exists && (len(h.records)+h.reserved >= h.maxHints || h.bytes+int64(len(enc)) > h.maxBytes) {
		h.mu.Unlock()
		h.refused.Add(1)
		return fmt.Errorf("%w: %d hints of %d bytes held, the limits are %d and %d", ErrHintsFull,
			len(h.records), h.bytes, h.maxHints, h.maxBytes)
	}
	if !exists {
		h.reserved++
	}
	h.mu.Unlock()
	size := 0
	err := h.store.Update(hk, func(cur []byte) ([]byte, error) {
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

// stateOf returns the merge of every hint this node holds for key, for
// reads that reach a fallback during an outage.
func (h *hintStore) stateOf(p int, key []byte) (state, error) {
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
		raw, err := h.store.Get(hintKey(t, p, key))
		if err != nil && !isCorrupt(err) {
			return state{}, err
		}
		st, derr := decodeState(raw)
		if err != nil || derr != nil {
			h.log.Warn("skipping a damaged hint", "peer", t, "partition", p, keyAttr(key), "err", errors.Join(err, derr))
			continue // never served; its owner gets the key from the other replicas
		}
		out = syncStates(out, st)
	}
	return out, nil
}

// hintRecord is one stored hint: its storage key, the key it is for (and
// that key's partition), and its encoded state.
type hintRecord struct {
	hk, key, val []byte
	p            int
}

// batch returns up to a batch of target's hints, bounded in count
// (hintBatch) and in bytes (maxBytes, at least one hint). full reports
// whether more may be waiting.
func (h *hintStore) batch(target string, maxBytes int) (batch []hintRecord, full bool, err error) {
	size := 0
	err = h.forEach(hintTargetPrefix(target), func(k, v []byte) error {
		_, dk, ok := parseHintKey(k)
		if !ok {
			return nil
		}
		if len(batch) >= hintBatch || (len(batch) > 0 && size+len(v) > maxBytes) {
			full = true
			return errStopIteration
		}
		p := int(binary.BigEndian.Uint32(dk[:4]))
		batch = append(batch, hintRecord{bytes.Clone(k), bytes.Clone(dk[4:]), bytes.Clone(v), p})
		size += len(v)
		return nil
	})
	if err != nil && !errors.Is(err, errStopIteration) {
		return nil, false, err
	}
	return batch, full, nil
}

// remove deletes each of hints unless it changed since it was read
// (a write merged into it meanwhile), in one storage commit where the
// Storage can, and returns the errors joined.
func (h *hintStore) remove(hints []hintRecord) error {
	if len(hints) == 0 {
		return nil
	}
	sizes := make([]int, len(hints))
	ops := make([]storage.Op, len(hints))
	for i, rec := range hints {
		ops[i] = storage.Op{Key: rec.hk, Fn: func(cur []byte) ([]byte, error) {
			if cur == nil || bytes.Equal(cur, rec.val) {
				sizes[i] = 0
				return nil, nil
			}
			sizes[i] = len(cur)
			return bytes.Clone(cur), nil
		}}
	}
	errs := storage.UpdateBatch(h.store, ops)
	h.mu.Lock()
	for i, rec := range hints {
		if errs[i] == nil {
			h.track(rec.hk, sizes[i])
		}
	}
	h.mu.Unlock()
	return errors.Join(errs...)
}
