// hashes.go: §4.7 the hash tree at start-up: read from a Storage that keeps
// it with its data (storage.Summer) instead of rebuilt by scanning every
// key, the tombstone and fold indexes filled in the background, and
// VerifyHashes, which rebuilds the tree from the data and compares.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dynamo-kv/dynamo/storage"
)

// ErrHashMismatch is returned (wrapped) by VerifyHashes when a partition's
// hash in the tree differs from the one its stored data gives.
var ErrHashMismatch = errors.New("dynamo: hash tree differs from the data")

// sumSpec is the hash tree as a Storage keeps it: a partition's hash is
// the XOR of storage.Digest over its data keys ('d' | partition | key).
func (r *replica) sumSpec() storage.SumSpec {
	return storage.SumSpec{Prefix: []byte{spaceData}, Buckets: r.q}
}

// loadKept fills the hash tree from the sums the Storage keeps, if it keeps
// them, and reports whether it did; the tombstone and fold indexes are
// then still empty (see indexInBackground). A Storage whose sums cannot be
// had is scanned instead.
func (r *replica) loadKept() bool {
	sm, ok := r.store.(storage.Summer)
	if !ok {
		return false
	}
	start := time.Now()
	sums, err := sm.Sums(r.sumSpec())
	if err == nil && len(sums) != r.q {
		err = fmt.Errorf("%d sums for %d partitions", len(sums), r.q)
	}
	if err != nil {
		r.log.Warn("the storage's kept hashes cannot be read; scanning the data instead", "err", err)
		return false
	}
	for p, h := range sums {
		r.tree.parts[p].Store(h)
	}
	r.log.Debug("hash tree read from the storage", "partitions", len(sums), "took", time.Since(start))
	return true
}

// indexInBackground fills the tombstone and fold indexes from the data,
// 256 partitions at a time (each one short storage read, and a few
// hundred in all however many partitions there are), after a start-up
// that read the hash tree instead of scanning; then it closes r.indexed.
// Writes go on meanwhile and keep the indexes themselves; the scan only
// adds keys, so a key it reads before a write changed it is at worst a
// stale candidate, which the tombstone purge and the fold protocol re-read
// and skip.
func (r *replica) indexInBackground(ctx context.Context) {
	defer close(r.indexed)
	for p := 0; p < r.q; p += 256 {
		if ctx.Err() != nil {
			return
		}
		group := partitionPrefix(p)[:4] // partitions p to p+255
		err := r.forEach(group, func(k, v []byte) error {
			if len(k) < 6 {
				return nil
			}
			st, err := decodeState(v)
			if err != nil {
				return nil
			}
			if onlyTombstones(st) {
				r.tombs.set(k[5:], true)
			}
			if mayFold(st, r.n) {
				r.folds.note(k[5:], st, r.n)
			}
			return nil
		})
		if err != nil {
			r.log.Warn("indexing tombstones and folds stopped", "partition", p, "err", err)
			return
		}
		r.rehashMarked()
	}
}

// awaitIndexes waits until the tombstone and fold indexes hold every stored
// key (at once unless a background scan is filling them), and reports
// whether they do before ctx ends.
func (r *replica) awaitIndexes(ctx context.Context) bool {
	select {
	case <-r.indexed:
		return true
	case <-ctx.Done():
		return false
	}
}

// VerifyHashes rebuilds the hash of every partition from the data this node
// stores and compares it with the hash anti-entropy uses, which is kept
// up to date by each write and, with a Storage that keeps it
// (storage.Summer, as storage/bolt does), read from the storage at
// start-up instead of rebuilt. It returns nil when they all agree, an
// error matching ErrHashMismatch naming the partitions that differ, or
// the storage's error (one matching ErrCorrupt when stored records are
// damaged: they are not counted, and the mismatch they cause is expected
// until they are replaced). Each partition is read while writes to it
// wait; the others go on. It reads every key: an operator's check, not
// something to run often.
func (s *Store) VerifyHashes(ctx context.Context) error {
	if !s.beginOp() {
		return ErrClosed
	}
	defer s.ops.Done()
	return s.rep.verifyHashes(ctx)
}

// verifyHashes is VerifyHashes on the replica.
func (r *replica) verifyHashes(ctx context.Context) error {
	r.rehashMarked()
	var bad []int
	var damaged error
	for p := range r.q {
		if err := ctx.Err(); err != nil {
			return err
		}
		mu := &r.stripes[p%lockStripes]
		mu.Lock()
		sum, err := r.scanHash(p)
		got := r.tree.get(p)
		mu.Unlock()
		var ce *storage.CorruptError
		switch {
		case errors.As(err, &ce):
			damaged = errors.Join(damaged, fmt.Errorf("partition %d: %w", p, err))
		case err != nil:
			return fmt.Errorf("dynamo: verify hashes: partition %d: %w", p, err)
		}
		if sum != got {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("dynamo: verify hashes: %w: %d of %d partitions (the first: %d)", ErrHashMismatch, len(bad), r.q, bad[0])
	}
	if damaged != nil {
		return fmt.Errorf("dynamo: verify hashes: %w", damaged)
	}
	return nil
}

// markRehash asks for partition p's hash to be rebuilt from its data: a
// damaged record of p was discarded, and the digest it had when it was
// written (which a hash read from the storage holds) cannot be taken out.
// The caller may hold p's stripe; rehashMarked does the work later.
func (r *replica) markRehash(p int) {
	if p < 0 || p >= r.q {
		return
	}
	r.rehashMu.Lock()
	if r.rehash == nil {
		r.rehash = map[int]struct{}{}
	}
	r.rehash[p] = struct{}{}
	r.rehashMu.Unlock()
	r.rehashPending.Store(true)
}

// rehashMarked rebuilds the hash of every partition markRehash named, each
// while writes to it wait. The caller holds no stripe.
func (r *replica) rehashMarked() {
	if !r.rehashPending.Load() {
		return
	}
	r.rehashMu.Lock()
	marked := r.rehash
	r.rehash = nil
	r.rehashPending.Store(false)
	r.rehashMu.Unlock()
	for p := range marked {
		mu := &r.stripes[p%lockStripes]
		mu.Lock()
		sum, err := r.scanHash(p)
		if err == nil || errors.As(err, new(*storage.CorruptError)) {
			r.tree.parts[p].Store(sum)
		}
		mu.Unlock()
		if err != nil && !errors.As(err, new(*storage.CorruptError)) {
			r.log.Warn("rebuilding a partition's hash failed", "partition", p, "err", err)
			r.markRehash(p)
		}
	}
}

// scanHash computes partition p's hash from its stored data; damaged
// records are left out, and reported in a *storage.CorruptError. The
// caller holds p's stripe exclusively.
func (r *replica) scanHash(p int) (uint64, error) {
	var sum uint64
	err := r.store.ForEach(partitionPrefix(p), func(k, v []byte) error {
		if len(k) >= 6 {
			sum ^= digest(k[5:], v)
		}
		return nil
	})
	return sum, err
}
