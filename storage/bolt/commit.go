// Group commit: one goroutine applies queued Updates in batches, one log append and one fdatasync per batch (DESIGN §4).
package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/dynamo-kv/dynamo/storage"
)

// request is one Update waiting for, or in, a batch. The committer writes
// err, panicVal and result, then closes done; the caller reads err and
// panicVal after done.
type request struct {
	key       []byte // the Store's own copy
	fn        func(current []byte) ([]byte, error)
	discard   bool   // a DiscardCorrupt, not an Update: fn is nil
	result    []byte // the Store's copy of fn's result; nil deletes
	staged    bool
	discarded bool // a DiscardCorrupt found key damaged and staged its delete
	err       error
	panicked  bool
	panicVal  any
	done      chan struct{}
	onStaged  func() // UpdateStaged's: called once result is staged

	// A request of many keys (batch.go) commits as one: group holds its
	// parts, each a request of one key without done. prefix, if set, asks
	// for every key under it to be deleted; the committer fills group then.
	group   []*request
	prefix  []byte
	deleted int // keys the prefix delete found present
}

// Update replaces key's value with fn(current) and returns once the batch
// holding the change is durable: appended to the write-ahead log and
// fdatasynced. fn runs exactly once, on the Store's committer goroutine:
// current is a private copy of the value that the Updates before it left
// (nil when absent), and the result is copied before the Store keeps it, so
// the caller keeps ownership of both. key is copied. A nil result deletes
// the key. fn's error is returned unwrapped and skips only this Update's
// write. If the log write fails, Update returns that error (wrapped) and
// the change is not acknowledged; the Store then fails every later Update
// too (see the package doc). If fn panics, its write is skipped and Update
// panics with the same value. fn must not call the Store. If key's value in
// bbolt fails its checksum, fn is not called and Update returns a
// *storage.CorruptError (wrapped) naming key; see DiscardCorrupt.
func (s *Store) Update(key []byte, fn func(current []byte) ([]byte, error)) error {
	return s.UpdateStaged(key, fn, nil)
}

// UpdateStaged is Update, and calls staged (if not nil) on the committer
// goroutine once fn's result is staged in the batch whose log record the
// committer is about to append and fdatasync (storage.Stager). If that
// write fails, UpdateStaged returns its error and the Store fails every
// later Update.
func (s *Store) UpdateStaged(key []byte, fn func(current []byte) ([]byte, error), staged func()) error {
	r := &request{fn: fn, onStaged: staged}
	if err := s.do(key, r); err != nil {
		return err
	}
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// DiscardCorrupt deletes key if its value in bbolt fails its checksum, and
// reports whether it did; the key is then absent and takes Updates again.
// It goes through the log like an Update and returns once the delete is
// durable. An intact or absent key is left alone. key is only read during
// the call.
func (s *Store) DiscardCorrupt(key []byte) (bool, error) {
	r := &request{discard: true}
	if err := s.do(key, r); err != nil {
		return false, err
	}
	return r.discarded && r.err == nil, r.err
}

// do queues r for key (copied) and waits until the committer is done with
// it.
func (s *Store) do(key []byte, r *request) error {
	if err := checkKey(key); err != nil {
		return err
	}
	r.key = bytes.Clone(key)
	return s.enqueue(r)
}

// enqueue hands r to the committer and waits until it is done with it; the
// outcome is in r. It fails only when the Store is closed.
func (s *Store) enqueue(r *request) error {
	r.done = make(chan struct{})
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
	return nil
}

// run is the committer: it takes the first queued request, everything else
// already queued up to maxBatch without waiting for more, and commits them
// together, until Close closes quit.
func (s *Store) run() {
	defer close(s.stopped)
	// A damaged offset read from the file may point outside the memory
	// map: turn the fault into a panic that lookup can recover.
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
		batch = s.drain(batch)
		// Under load, let Updates that are about to arrive join: yield the
		// processor so runnable goroutines (a replica's handler decoding its
		// write, a coordinator minting) run first, then take what they
		// queued; again while that finds more. One fdatasync costs about as
		// much CPU as a put's network work here, so fewer, larger batches
		// are what make durable writes scale. With nothing else runnable the
		// yield returns at once, so a lone writer does not wait, and no
		// timer is involved (a sub-millisecond timer sleeps a millisecond on
		// an idle runtime).
		gather := time.Now()
		for range maxYields {
			if len(batch) >= s.maxBatch || time.Since(gather) > maxGather {
				break
			}
			runtime.Gosched()
			n := len(batch)
			if batch = s.drain(batch); len(batch) == n {
				break
			}
		}
		for rest := batch; len(rest) > 0; {
			rest = rest[s.commit(rest):]
		}
		clear(batch) // let the finished requests be collected
	}
}

// drain appends to batch what is queued, up to maxBatch, without waiting.
func (s *Store) drain(batch []*request) []*request {
	for len(batch) < s.maxBatch {
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit runs the fns of a prefix of batch, appends their changes to the
// log as one record, fdatasyncs it, publishes the changes to the active
// memtable and completes the prefix's requests. It returns the length of
// the prefix: all of batch unless the record grows past splitRecord.
func (s *Store) commit(batch []*request) int {
	if err := s.failed(); err != nil {
		for _, r := range batch {
			r.err = err
			close(r.done)
		}
		return len(batch)
	}
	rd := s.newBatchReader()
	clear(s.overlay)
	rec := append(s.rec[:0], make([]byte, recHeader)...) // header space; sealRecord fills it
	n, staged := 0, 0
	for _, r := range batch {
		if staged > 0 && len(rec) > splitRecord {
			break // the rest goes into the next record
		}
		n++
		if r.prefix != nil {
			r.expand(s, rd)
		}
		for _, p := range r.parts() {
			p.apply(s, rd)
			if !p.staged {
				continue
			}
			s.overlay[string(p.key)] = p.result
			rec = appendEntry(rec, p.key, p.result)
			staged++
			if p.onStaged != nil {
				p.onStaged()
			}
		}
	}
	// Before anything that waits: a checkpoint growing the file waits for
	// read transactions, and publish may wait for a ForEach that waits for
	// that checkpoint.
	rd.close()
	if cap(rec) <= 4<<20 {
		s.rec = rec // reused by the next batch; an outsized one is let go
	}
	batch = batch[:n]

	var err error
	if s.beforeCommit != nil {
		err = s.beforeCommit()
	}
	if err == nil && staged > 0 {
		sealRecord(rec, s.nextLSN, s.seed)
		if err = s.appendLog(rec); err != nil {
			s.fail(err)
		}
	}
	var applied uint64
	for _, r := range batch {
		for _, p := range r.parts() {
			switch {
			case !p.staged:
				// Its write was skipped; its own outcome says why.
			case err != nil:
				p.err = err
				p.staged = false
			case !p.discard:
				applied++
			}
		}
	}
	if err == nil && staged > 0 {
		s.publish(batch)
		s.commits.Add(1)
		s.updates.Add(applied)
	}
	for _, r := range batch {
		close(r.done)
	}
	if err == nil && s.off >= s.logSize {
		s.rotate()
	} else if err == nil {
		s.zeroAhead()
	}
	return n
}

// appendLog writes a sealed record at the end of the current segment and
// fdatasyncs it.
func (s *Store) appendLog(rec []byte) error {
	f := s.logs[s.cur]
	if err := s.allocate(s.off + int64(len(rec)) + recHeader); err != nil {
		return fmt.Errorf("bolt: log extend %s: %w", f.Name(), err)
	}
	if err := writeFull(f, rec, s.off); err != nil {
		return fmt.Errorf("bolt: log write %s: %w", f.Name(), err)
	}
	if err := s.datasync(f); err != nil {
		return fmt.Errorf("bolt: log sync %s: %w", f.Name(), err)
	}
	s.off += int64(len(rec))
	s.fill.Store(s.off)
	s.nextLSN++
	return nil
}

// publish makes the staged changes of a durable batch visible, in batch
// order, so the last change of a key wins.
func (s *Store) publish(batch []*request) {
	s.memMu.Lock()
	for _, r := range batch {
		for _, p := range r.parts() {
			if p.staged {
				s.active.put(p.key, p.result)
			}
		}
	}
	s.memMu.Unlock()
}

// batchReader reads the values a batch's fns start from: the batch's own
// earlier results, then the memtables, then bbolt, in one consistent view.
// imm is captured when the batch starts; the read transaction, opened on
// the first miss, sees bbolt either before imm's checkpoint (so imm has
// what it lacks) or after (so it has imm's changes too).
type batchReader struct {
	s   *Store
	imm *memtable
	tx  *bbolt.Tx
}

func (s *Store) newBatchReader() *batchReader {
	s.memMu.RLock()
	rd := &batchReader{s: s, imm: s.imm}
	s.memMu.RUnlock()
	return rd
}

// get returns key's current value, which the caller must not modify.
// Only the committer calls it, and only the committer writes active, so
// active needs no lock here.
func (rd *batchReader) get(key []byte) ([]byte, error) {
	if v, ok := rd.s.overlay[string(key)]; ok {
		return v, nil
	}
	if n := rd.s.active.get(key); n != nil {
		return n.value, nil
	}
	if rd.imm != nil {
		if n := rd.imm.get(key); n != nil {
			return n.value, nil
		}
	}
	return rd.dbGet(key)
}

// dbGet reads key from bbolt, turning a bbolt panic on a damaged page into
// an error matching storage.ErrCorrupt.
func (rd *batchReader) dbGet(key []byte) (v []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, fmt.Errorf("bolt: read %s: %w: bbolt panicked: %v", rd.s.path, storage.ErrCorrupt, p)
		}
	}()
	if rd.tx == nil {
		if rd.tx, err = rd.s.db.Begin(false); err != nil {
			return nil, fmt.Errorf("bolt: read: %w", err)
		}
	}
	b := rd.tx.Bucket(bucketName)
	if b == nil {
		return nil, errNoBucket
	}
	stored := b.Get(key)
	if stored == nil {
		return nil, nil
	}
	if v, err = openValue(key, stored); err != nil {
		rd.s.corruptReads.Add(1)
		return nil, fmt.Errorf("bolt: update: %w", corruptKey(key))
	}
	return v, nil
}

func (rd *batchReader) close() {
	if rd.tx != nil {
		_ = rd.tx.Rollback()
	}
}

// apply runs r's fn on the value key holds for the batch and, unless fn
// fails, records r's result for staging. It records in r why it did not.
func (r *request) apply(s *Store, rd *batchReader) {
	cur, err := rd.get(r.key)
	if r.discard {
		var ce *storage.CorruptError
		switch {
		case errors.As(err, &ce):
			r.result, r.staged, r.discarded = nil, true, true
		case err != nil:
			r.err = err
		}
		return
	}
	if err != nil {
		r.err = err
		return
	}
	var current []byte
	if cur != nil {
		current = append(make([]byte, 0, len(cur)), cur...) // non-nil even when empty
	}
	next, err := r.call(current)
	if r.panicked || err != nil {
		r.err = err
		return
	}
	if next != nil {
		if len(next) > bbolt.MaxValueSize {
			r.err = fmt.Errorf("bolt: update: value of %d bytes is over the limit of %d: %w",
				len(next), bbolt.MaxValueSize, berrors.ErrValueTooLarge)
			return
		}
		next = append(make([]byte, 0, len(next)), next...)
	}
	r.result, r.staged = next, true
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

// ErrFailed is returned (wrapped, with the first failure) by every Update
// after a log write, log sync or checkpoint failed. After a failed fsync
// the file's state is unknown (the kernel may have dropped the dirty
// pages), so the Store stops writing rather than build on it; reopen it to
// recover from what is durable.
var ErrFailed = errors.New("bolt: store failed; reopen it")

// fail records the Store's first write failure.
func (s *Store) fail(err error) {
	e := fmt.Errorf("%w: %w", ErrFailed, err)
	s.failure.CompareAndSwap(nil, &e)
}

// failed returns the recorded write failure, or nil.
func (s *Store) failed() error {
	if e := s.failure.Load(); e != nil {
		return *e
	}
	return nil
}

// maxYields and maxGather bound how long the committer yields to gather a
// batch: when busy goroutines hold every processor, one yield can take a
// whole scheduling round.
const (
	maxYields = 4
	maxGather = 100 * time.Microsecond
)
