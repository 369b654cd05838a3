// Group commit: one goroutine applies queued Updates in batches, one transaction and one fsync per batch (DESIGN §4).
package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/dynamo-kv/dynamo/storage"
)

// request is one Update waiting for, or in, a batch. The committer writes
// err and panicVal, then closes done; the caller reads them after done.
type request struct {
	key      []byte // the Store's own copy
	fn       func(current []byte) ([]byte, error)
	err      error
	panicked bool
	panicVal any
	done     chan struct{}
}

// Update replaces key's value with fn(current) and returns once the batch
// holding the change is committed and fsynced. fn runs exactly once, on the
// Store's committer goroutine, in the transaction of its batch: current is a
// private copy of the value that the Updates before it in the batch left
// (nil when absent), and the result is copied before bbolt sees it, so the
// caller keeps ownership of both. key is copied. A nil result deletes the
// key. fn's error is returned unwrapped and skips only this Update's write.
// If the commit fails, Update returns the commit error (wrapped) and the
// change is not acknowledged. If fn panics, its write is skipped and Update
// panics with the same value. fn must not call the Store.
func (s *Store) Update(key []byte, fn func(current []byte) ([]byte, error)) error {
	if len(key) == 0 {
		return storage.ErrEmptyKey
	}
	if len(key) > bbolt.MaxKeySize {
		return fmt.Errorf("bolt: update: key of %d bytes is over the limit of %d: %w",
			len(key), bbolt.MaxKeySize, berrors.ErrKeyTooLarge)
	}
	r := &request{key: bytes.Clone(key), fn: fn, done: make(chan struct{})}

	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return storage.ErrClosed
	}
	s.reqs <- r // waits for room when MaxBatch requests are queued
	s.mu.RUnlock()
	if s.onEnqueue != nil {
		s.onEnqueue()
	}

	<-r.done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// run is the committer: it takes the first queued request, everything else
// already queued up to maxBatch without waiting for more, and commits them
// together, until Close closes quit.
func (s *Store) run() {
	defer close(s.stopped)
	// A damaged offset read from the file may point outside the memory
	// map: turn the fault into a panic that update can recover.
	debug.SetPanicOnFault(true)
	batch := make([]*request, 0, s.maxBatch)
	for {
		select {
		case <-s.quit: // checked first so Close is not kept waiting by a busy queue
			return
		default:
		}
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.quit:
			return
		}
	drain:
		for len(batch) < s.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch) // let the finished requests be collected
	}
}

// commit applies batch in one read-write transaction and completes every
// request in it.
func (s *Store) commit(batch []*request) {
	err := s.update(func(b *bbolt.Bucket) error {
		staged := 0
		for _, r := range batch {
			if r.apply(b) {
				staged++
			}
		}
		if s.beforeCommit != nil {
			if err := s.beforeCommit(); err != nil {
				return err
			}
		}
		if staged == 0 {
			return errNothingStaged // roll back: no write, no fsync
		}
		return nil
	})
	committed := err == nil
	if errors.Is(err, errNothingStaged) {
		err = nil
	}
	var applied uint64
	for _, r := range batch {
		switch {
		case r.panicked || r.err != nil:
			// Its write was skipped; its own outcome says more than err.
		case err != nil:
			r.err = err
		default:
			applied++
		}
	}
	// Count before completing, so Stats covers every Update that returned.
	if committed {
		s.commits.Add(1)
	}
	s.updates.Add(applied)
	for _, r := range batch {
		close(r.done)
	}
}

// errNothingStaged makes a batch whose every fn failed roll back instead
// of committing an empty transaction.
var errNothingStaged = errors.New("bolt: nothing staged")

// update runs fn on the bucket in a read-write transaction and commits it,
// unless fn fails. fn never panics on the caller's behalf (apply recovers
// those), so a panic here is bbolt's, on a damaged page (or a memory fault,
// see run), and becomes an error matching storage.ErrCorrupt; bbolt rolls
// the transaction back.
func (s *Store) update(fn func(b *bbolt.Bucket) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bolt: commit: %w: bbolt panicked: %v", storage.ErrCorrupt, p)
		}
	}()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return errNoBucket
		}
		return fn(b)
	})
	if err != nil {
		return fmt.Errorf("bolt: commit: %w", err)
	}
	return nil
}

// apply runs r's fn on the value that the transaction holds for r.key and
// stages the result. It reports whether it staged a write, and records in r
// why it did not.
func (r *request) apply(b *bbolt.Bucket) bool {
	var current []byte
	if v := b.Get(r.key); v != nil {
		current = append(make([]byte, 0, len(v)), v...) // non-nil even when empty
	}
	next, err := r.call(current)
	if r.panicked || err != nil {
		r.err = err
		return false
	}
	if next == nil {
		err = b.Delete(r.key)
	} else {
		err = b.Put(r.key, append(make([]byte, 0, len(next)), next...))
	}
	if err != nil {
		r.err = fmt.Errorf("bolt: update: %w", err)
		return false
	}
	return true
}

// call runs r.fn, recording a panic in r instead of letting it kill the
// committer.
func (r *request) call(current []byte) (next []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.panicked, r.panicVal = true, p
		}
	}()
	return r.fn(current)
}

// failQueued completes every request still queued with err. Only Close
// calls it, after the committer has stopped and no Update can enqueue.
func (s *Store) failQueued(err error) {
	for {
		select {
		case r := <-s.reqs:
			r.err = err
			close(r.done)
		default:
			return
		}
	}
}
