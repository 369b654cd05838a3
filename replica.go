// replica.go: DESIGN §4 the node's replica of its key space: the storage
// layout, the one write path (which keeps the hash tree and the tombstone
// and fold indexes in step with the data), partition listing and drops,
// purges and folds. Minting and merging (mint.go) go through it; the
// coordinator, the server, anti-entropy, handoff and transfers call it. It
// knows nothing of rings, peers or the network.
package dynamo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dynamo-kv/dynamo/storage"
)

// Storage key spaces. Data keys are 'd' | partition u32 | key, so that a
// partition is one contiguous range; hints are in hints.go; 'm' holds the
// node's identity (identity.go).
const (
	spaceData = 'd'
	spaceMeta = 'm'
)

// partitionOf returns the partition of key among q (DESIGN §3). It depends
// on the partition count alone, never on the members: a request computes it
// once and passes it on.
func partitionOf(key []byte, q int) int {
	hi, _ := bits.Mul64(mix64(hashBytes(key)), uint64(q))
	return int(hi)
}

// dataKey is key's storage key in partition p.
func dataKey(p int, key []byte) []byte {
	k := make([]byte, 5+len(key))
	k[0] = spaceData
	binary.BigEndian.PutUint32(k[1:5], uint32(p))
	copy(k[5:], key)
	return k
}

// partitionPrefix is the storage prefix of partition p's data keys.
func partitionPrefix(p int) []byte {
	return binary.BigEndian.AppendUint32([]byte{spaceData}, uint32(p))
}

// lockStripes is how many locks partition drops and writes share.
const lockStripes = 256

// replica is this node's local key space. Every change of a key's data goes
// through update (or updateBatch), which applies it to the Storage and then
// to the indexes kept beside it, so they never disagree with the data.
// Its methods take the key's partition, computed once by the caller.
type replica struct {
	store  Storage
	id     string // this node's NodeID, for errors and logs
	q, n   int    // partitions, replicas per key
	limits Limits
	log    *slog.Logger

	tree  *hashTree    // per-partition hashes (merkle.go)
	tombs tombstoneSet // tombstone-only keys (tombstone.go)
	folds *foldIndex   // keys whose vectors may hold dead entries (compact.go)
	hints *hintStore   // hints held for other nodes (hints.go)

	actor  string     // NodeID/incarnation
	epochs *runEpochs // the actor epochs of this run (mint.go)

	// stripes serialise a partition's drop with writes to it: writes hold
	// their partition's stripe shared, a drop holds it exclusively.
	stripes [lockStripes]sync.RWMutex

	// indexed is closed once the tombstone and fold indexes hold every
	// stored key (hashes.go).
	indexed chan struct{}

	// rehash holds the partitions whose hash must be rebuilt from their
	// data, because a damaged record was discarded (hashes.go).
	rehashMu      sync.Mutex
	rehash        map[int]struct{}
	rehashPending atomic.Bool

	corruptRecords, dotConflicts, entriesFolded atomic.Int64
}

func newReplica(cfg Config, log *slog.Logger, actor string, epochs *runEpochs) *replica {
	return &replica{
		store: cfg.Storage, id: cfg.NodeID, q: cfg.Partitions, n: cfg.N, limits: cfg.Limits, log: log,
		tree: newHashTree(cfg.Partitions), tombs: tombstoneSet{keys: map[string]struct{}{}},
		folds: newFoldIndex(), hints: newHintStore(cfg.Storage, log, cfg.Handoff), actor: actor, epochs: epochs,
		indexed: make(chan struct{}),
	}
}

// load indexes what the Storage holds (at start-up): the hints, and every
// data key into the hash tree and the tombstone and fold indexes (about a
// second per million keys of 1 KiB). From a Storage that keeps the hash
// tree (storage.Summer) it reads the tree instead, and reports that the
// indexes are still to be filled, by indexInBackground.
func (r *replica) load() (background bool, err error) {
	if err := r.hints.load(); err != nil {
		return false, fmt.Errorf("dynamo: load hints: %w", err)
	}
	if r.loadKept() {
		return true, nil
	}
	defer close(r.indexed)
	err = r.forEach([]byte{spaceData}, func(k, v []byte) error {
		if len(k) < 6 {
			return nil
		}
		p := int(binary.BigEndian.Uint32(k[1:5]))
		if p < r.q {
			r.tree.xor(p, digest(k[5:], v))
		}
		if st, err := decodeState(v); err == nil {
			if onlyTombstones(st) {
				r.tombs.set(k[5:], true)
			}
			r.folds.note(k[5:], st, r.n)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("dynamo: rebuild hash tree: %w", err)
	}
	return false, nil
}

// forEach walks the storage under prefix, discarding the damaged records a
// checking Storage reports (see forEach in integrity.go): a damaged state is
// counted and its key comes back from the peers.
func (r *replica) forEach(prefix []byte, fn func(k, v []byte) error) error {
	return forEach(r.store, r.log, prefix, fn, func(k []byte) {
		if len(k) > 5 && k[0] == spaceData {
			r.recordLost(k[5:])
			r.markRehash(int(binary.BigEndian.Uint32(k[1:5])))
		} else {
			r.log.Warn("discarded a damaged stored record", storedKeyAttrs(k)...)
		}
	})
}

// raw returns key's stored state as stored (nil: absent).
func (r *replica) raw(p int, key []byte) ([]byte, error) {
	return r.store.Get(dataKey(p, key))
}

// read returns this node's state of key, merged with the hints it holds
// for the key as a fallback. A damaged stored state is an error matching
// ErrCorrupt: it is never served, and read repair replaces it.
func (r *replica) read(p int, key []byte) (state, error) {
	st, _, err := r.readEncoded(p, key)
	return st, err
}

// readEncoded is read, and also returns the stored encoding of the state
// when the state is exactly that (no hints merged in) and in the current
// format (nil otherwise), so that a replica answering a get sends it as it
// is instead of encoding it again. The decode still checks it: a damaged
// state is never sent. A state stored in the first format, without a
// checksum, is encoded again, in the current one.
func (r *replica) readEncoded(p int, key []byte) (state, []byte, error) {
	raw, err := r.raw(p, key)
	if err != nil {
		if isCorrupt(err) {
			return state{}, nil, fmt.Errorf("%w: key %q on %s: %w", ErrCorrupt, key, r.id, err)
		}
		return state{}, nil, err
	}
	st, err := decodeOwnedState(raw) // Get's result is ours
	if err != nil {
		return state{}, nil, fmt.Errorf("key %q on %s: %w", key, r.id, err)
	}
	hinted, err := r.hints.stateOf(p, key)
	if err != nil {
		return state{}, nil, err
	}
	if hinted.empty() && currentFormat(raw) {
		return st, raw, nil
	}
	return syncStates(st, hinted), nil, nil
}

// change is one update of a key's data: fn returns the new encoded state
// and whether it holds only tombstones; after runs once the change is
// durable (it may be nil).
type change struct {
	p     int
	key   []byte
	fn    func(cur []byte) ([]byte, bool, error)
	after func()
	// staged, if set, is called once fn's result is settled but before it
	// is durable, where the Storage can tell (storage.Stager).
	staged func()

	delta uint64 // digest of the old state ^ digest of the new
	tombs bool
}

func (c *change) op() storage.Op {
	return storage.Op{Key: dataKey(c.p, c.key), Fn: func(cur []byte) ([]byte, error) {
		out, t, err := c.fn(cur)
		if err != nil {
			return nil, err
		}
		c.delta, c.tombs = digest(c.key, cur)^digest(c.key, out), t
		return out, nil
	}}
}

// update is the one path by which the key space changes: it runs c as a
// Storage update of its key's data and applies the change to the hash tree
// and the tombstone index.
func (r *replica) update(c *change) error {
	mu := &r.stripes[c.p%lockStripes]
	mu.RLock()
	op := c.op()
	discarded, err := r.updateStorage(op, c.staged)
	r.applied(c, discarded, err)
	mu.RUnlock()
	r.rehashMarked()
	return err
}

// updateBatch applies changes in one storage commit where the Storage can
// (storage.Batcher), and returns their errors joined.
func (r *replica) updateBatch(cs []*change) error {
	if len(cs) == 0 {
		return nil
	}
	var held []int // stripes, in order, each once
	for _, c := range cs {
		held = append(held, c.p%lockStripes)
	}
	slices.Sort(held)
	held = slices.Compact(held)
	for _, i := range held {
		r.stripes[i].RLock()
	}
	defer r.rehashMarked() // after the stripes are released
	defer func() {
		for _, i := range held {
			r.stripes[i].RUnlock()
		}
	}()
	ops := make([]storage.Op, len(cs))
	for i, c := range cs {
		ops[i] = c.op()
	}
	errs := storage.UpdateBatch(r.store, ops)
	for i, c := range cs {
		discarded := false
		if errors.Is(errs[i], storage.ErrCorrupt) {
			discarded, errs[i] = r.discardAndRetry(ops[i], errs[i])
		}
		r.applied(c, discarded, errs[i])
	}
	return errors.Join(errs...)
}

// applied follows a change's storage update: on success it moves the hash
// tree and the tombstone index, then runs the change's after.
func (r *replica) applied(c *change, discarded bool, err error) {
	if err != nil {
		return
	}
	if discarded {
		r.recordLost(c.key)
		r.markRehash(c.p)
	}
	r.tree.xor(c.p, c.delta)
	r.tombs.set(c.key, c.tombs)
	if c.after != nil {
		c.after()
	}
}

// listPartition visits, in order, the keys stored in partition p that sort
// after from (all of them for a nil from) with their digests, until fn
// returns false.
func (r *replica) listPartition(p int, from []byte, fn func(key []byte, d uint64) bool) error {
	err := r.forEach(partitionPrefix(p), func(k, v []byte) error {
		if from != nil && bytes.Compare(k[5:], from) <= 0 {
			return nil
		}
		if !fn(k[5:], digest(k[5:], v)) {
			return errStopIteration
		}
		return nil
	})
	if errors.Is(err, errStopIteration) {
		return nil
	}
	return err
}

// dropPartition deletes this node's data of partition p in one storage
// commit where the Storage can, if the partition's hash is still want (what
// its holders were sent): a write that landed since keeps the partition for
// a later round. It reports whether it dropped the partition.
func (r *replica) dropPartition(p int, want uint64) (bool, error) {
	mu := &r.stripes[p%lockStripes]
	mu.Lock()
	defer mu.Unlock()
	if r.tree.get(p) != want {
		return false, nil
	}
	var keys [][]byte
	if err := r.listPartition(p, nil, func(key []byte, _ uint64) bool {
		keys = append(keys, slices.Clone(key))
		return true
	}); err != nil {
		return false, err
	}
	if _, err := storage.DeletePrefix(r.store, partitionPrefix(p)); err != nil {
		return false, fmt.Errorf("drop partition %d: %w", p, err)
	}
	r.tree.xor(p, want)
	for _, k := range keys {
		r.tombs.set(k, false)
		r.folds.drop(k)
	}
	return true, nil
}

// purge deletes key if its stored state's digest is still d.
func (r *replica) purge(p int, key []byte, d uint64) error {
	err := r.update(&change{p: p, key: key, fn: func(cur []byte) ([]byte, bool, error) {
		if digest(key, cur) != d {
			st, err := decodeState(cur) // changed since: keep it for a later round
			return bytes.Clone(cur), err == nil && onlyTombstones(st), nil
		}
		return nil, false, nil
	}})
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	return nil
}

// fold drops from key's vector each entry of entries that it still holds
// at exactly that counter with no live sibling.
func (r *replica) fold(p int, key []byte, entries versionVector) error {
	var folded state
	changed, n := false, 0
	c := &change{p: p, key: key, fn: func(cur []byte) ([]byte, bool, error) {
		st, err := decodeState(cur)
		drop := agreed(entries, st)
		if err != nil || len(drop) == 0 {
			changed = false
			return slices.Clone(cur), err == nil && onlyTombstones(st), nil // damaged, gone or changed: nothing to fold
		}
		st.VV = slices.DeleteFunc(slices.Clone(st.VV), func(e vvEntry) bool { return drop.get(e.Actor) == e.Counter })
		folded, changed, n = st, true, len(drop)
		return encodeState(st), onlyTombstones(st), nil
	}}
	c.after = func() {
		if changed {
			r.folds.note(key, folded, r.n)
			r.entriesFolded.Add(int64(n))
		}
	}
	return r.update(c)
}

// recordLost accounts for a damaged stored state of key that an update has
// just replaced: it is counted and logged, and the key's actor epochs on
// this node are no longer trusted (the record of the dots this node issued
// for the key is gone).
func (r *replica) recordLost(key []byte) {
	r.corruptRecords.Add(1)
	r.epochs.distrust(key)
	r.log.Warn("discarded a damaged stored state; the key comes back from the other replicas", keyAttr(key))
}

// updateStorage runs one Storage.Update of op. When the Storage itself
// reports the stored value damaged (it then does not call the op's fn) and
// can discard it, the value is discarded and the update runs again on the
// absent key; discarded reports that.
func (r *replica) updateStorage(op storage.Op, staged func()) (discarded bool, err error) {
	wasStaged := false
	if st, ok := r.store.(storage.Stager); ok && staged != nil {
		err = st.UpdateStaged(op.Key, op.Fn, func() {
			wasStaged = true
			staged()
		})
	} else {
		err = r.store.Update(op.Key, op.Fn)
	}
	// A result already staged (and perhaps sent) is never computed again.
	if err == nil || wasStaged || !errors.Is(err, storage.ErrCorrupt) {
		return false, err
	}
	return r.discardAndRetry(op, err)
}

// discardAndRetry discards op's damaged stored value, if the Storage can,
// and runs op again; err is the update's error, returned when it cannot.
func (r *replica) discardAndRetry(op storage.Op, err error) (bool, error) {
	d, ok := r.store.(corruptDiscarder)
	if !ok {
		return false, err
	}
	if gone, derr := d.DiscardCorrupt(op.Key); derr != nil || !gone {
		return false, err
	}
	return true, r.store.Update(op.Key, op.Fn)
}
