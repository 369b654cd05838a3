// Store: storage.Storage over one bbolt file; Open, Get, ForEach and Close (DESIGN §4).
package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/dynamo-kv/dynamo/storage"
)

var (
	_ storage.Storage   = (*Store)(nil)
	_ storage.Lossy     = (*Store)(nil)
	_ storage.Discarder = (*Store)(nil)
)

// ErrLocked is returned by Open when another Store, in this process or
// another, holds the file's lock for longer than Options.Timeout.
var ErrLocked = errors.New("bolt: database file is locked")

// bucketName is the one bucket that holds every key.
var bucketName = []byte("dynamo")

// errNoBucket means a transaction found no bucket, which Open always creates.
var errNoBucket = fmt.Errorf("bolt: bucket %q missing: %w", bucketName, storage.ErrCorrupt)

// Store is a storage.Storage kept in one bbolt file, with group commit for
// Update. Create it with Open. All methods are safe for concurrent use.
// No byte slice it hands out points into bbolt's memory map: each is a copy.
type Store struct {
	db       *bbolt.DB
	path     string
	maxBatch int
	logSize  int64

	// mu makes "not yet closed, so enqueue" atomic with respect to Close:
	// Update holds it shared while it sends, Close exclusively to set closed.
	mu       sync.RWMutex
	closed   bool
	isClosed atomic.Bool // set with closed; read without mu by Get and ForEach

	reqs    chan *request // queued Updates; capacity maxBatch
	quit    chan struct{} // closed by Close to stop the committer
	stopped chan struct{} // closed by the committer when it returns

	// Owned by the committer goroutine (and by Open and Close while it is
	// not running).
	logs    [2]file           // the log segments
	seed    uint32            // the log's checksum seed (see wal.go)
	cur     int               // index in logs of the segment being appended to
	off     int64             // where the next record goes in logs[cur]
	nextLSN uint64            // LSN of the next record
	rec     []byte            // the record being built, reused
	zero    zeroer            // extends segments with zeros ahead of the records
	ring    *uring            // syncs the log without holding a P; nil: sync directly
	overlay map[string][]byte // the batch's results so far, by key; nil value: deleted

	// memMu guards active's contents and the active and imm fields. Only
	// the committer writes active; imm, once frozen, is only read.
	memMu  sync.RWMutex
	active *memtable // durable changes since the last rotation
	imm    *memtable // the frozen table being checkpointed, or nil

	ckpt        chan ckptJob  // to the checkpointer
	ckptIdle    chan struct{} // holds a token while no checkpoint runs
	ckptStopped chan struct{} // closed when the checkpointer returns
	hurry       atomic.Bool   // the checkpoint in progress must stop pacing
	closing     atomic.Bool   // Close has begun: no more pacing at all
	hurryCh     chan struct{} // wakes a pacing checkpointer; capacity 1
	fill        atomic.Int64  // off, for the checkpointer's pacing

	failure atomic.Pointer[error] // the first write failure; see ErrFailed

	closeOnce sync.Once
	closeErr  error

	lostWrites atomic.Bool // see LostWrites
	lostNew    bool        // set by Open when it salvages

	commits      atomic.Uint64
	updates      atomic.Uint64
	checkpoints  atomic.Uint64
	corruptReads atomic.Uint64
	syncs        atomic.Uint64
	syncNanos    atomic.Int64
	ckptBytes    atomic.Int64 // bytes of the segment being checkpointed; 0: none

	// Test hooks, set through export_test.go before the Store is used (hook
	// through Options); always nil in production.
	hook         func(step) error
	onEnqueue    func()       // called by Update once its request is queued
	beforeCommit func() error // called before a batch's log write, after every fn
	onQuit       func()       // called by Close once the committer is told to stop
	abandon      bool         // Close skips its checkpoint, as a crash would
}

// Stats counts a Store's work since Open. Updates/Commits is the mean
// number of Updates that shared one log write and its fdatasync.
type Stats struct {
	// Commits is how many batches were appended to the log and fsynced. A
	// batch whose every fn failed writes nothing and is not counted.
	Commits uint64
	// Updates is how many Update calls returned nil.
	Updates uint64
	// Checkpoints is how many times a log segment's changes were copied
	// into bbolt (one bbolt transaction, fsynced twice, each).
	Checkpoints uint64
	// CorruptReads is how many times a read (Get, ForEach, the read an
	// Update's fn starts from, DiscardCorrupt) found a stored value that
	// fails its checksum; each such key is skipped or refused, never served.
	CorruptReads uint64
}

// Open opens the bbolt file at path, creating it (but not its directory) if
// it does not exist, and starts the Store's committer goroutine; Close stops
// it. A nil opts selects every default. Errors match ErrInvalidOptions,
// ErrLocked, storage.ErrCorrupt (path is not a bbolt database, or a damaged
// one; a damaged, truncated or missing log segment is a *CorruptLogError,
// see Options.Salvage) or the underlying *fs.PathError.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	o = o.withDefaults()

	db, err := openDB(path, o)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:          db,
		path:        path,
		maxBatch:    o.MaxBatch,
		logSize:     o.LogSize,
		overlay:     make(map[string][]byte),
		active:      newMemtable(),
		reqs:        make(chan *request, o.MaxBatch),
		quit:        make(chan struct{}),
		stopped:     make(chan struct{}),
		ckpt:        make(chan ckptJob, 1),
		ckptIdle:    make(chan struct{}, 1),
		ckptStopped: make(chan struct{}),
		zero:        zeroer{jobs: make(chan zeroJob, 1), done: make(chan struct{})},
		hurryCh:     make(chan struct{}, 1),
		hook:        o.hook,
	}
	if err := s.recover(o); err != nil {
		for _, f := range s.logs {
			if f != nil {
				_ = f.Close()
			}
		}
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	if !o.DirectSync {
		if u, err := newURing(); err == nil {
			s.ring = u
		}
	}
	s.ckptIdle <- struct{}{}
	go s.run()
	go s.checkpointer()
	go s.runZeroer()
	return s, nil
}

// Path returns the path of the Store's file, as given to Open.
func (s *Store) Path() string { return s.path }

// Stats returns the Store's counters. It may be called after Close.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:      s.commits.Load(),
		Updates:      s.updates.Load(),
		Checkpoints:  s.checkpoints.Load(),
		CorruptReads: s.corruptReads.Load(),
	}
}

// StorageStats returns the Store's figures for metrics
// (storage.StatsReporter). It may be called after Close.
func (s *Store) StorageStats() storage.Stats {
	return storage.Stats{
		Commits:            s.commits.Load(),
		Updates:            s.updates.Load(),
		Syncs:              s.syncs.Load(),
		SyncSeconds:        float64(s.syncNanos.Load()) / 1e9,
		Checkpoints:        s.checkpoints.Load(),
		LogBytes:           s.fill.Load(),
		CheckpointLagBytes: s.ckptBytes.Load(),
		CorruptReads:       s.corruptReads.Load(),
	}
}

// Failed returns the first write, sync or checkpoint failure, matching
// ErrFailed, after which every Update fails; nil while the Store is sound
// (storage.Failer).
func (s *Store) Failed() error { return s.failed() }

// LostWrites reports whether Updates acknowledged before this Open may be
// missing: Options.Salvage opened a damaged or missing log, now or at an
// earlier Open, and ClearLostWrites has not been called since.
func (s *Store) LostWrites() bool { return s.lostWrites.Load() }

// ClearLostWrites records durably that the writes LostWrites reports have
// been made up for, so that LostWrites returns false from now on, after a
// reopen too.
func (s *Store) ClearLostWrites() error {
	if s.isClosed.Load() {
		return storage.ErrClosed
	}
	err := s.writeMeta(func(mb *bbolt.Bucket) error { return mb.Delete(lostKey) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return storage.ErrClosed
	}
	if err != nil {
		return fmt.Errorf("bolt: clear lost writes: %w", err)
	}
	s.lostWrites.Store(false)
	return nil
}

// at runs the test hook, if any, at step st of a checkpoint or of Open.
func (s *Store) at(st step) error {
	if s.hook == nil {
		return nil
	}
	if err := s.hook(st); err != nil {
		return fmt.Errorf("bolt: %s: %w", st, err)
	}
	return nil
}

// Get returns a copy of key's value, owned by the caller, or nil and no
// error when the key is absent. It reads the last committed state and never
// waits for a writer. key is only read during the call.
func (s *Store) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, storage.ErrEmptyKey
	}
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	s.memMu.RLock()
	v, ok := s.memGet(key)
	s.memMu.RUnlock()
	if ok {
		if v == nil {
			return nil, nil // deleted since the last checkpoint
		}
		return append(make([]byte, 0, len(v)), v...), nil
	}
	var value []byte
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return errNoBucket
		}
		stored := b.Get(key)
		if stored == nil {
			return nil
		}
		v, err := openValue(key, stored)
		if err != nil {
			s.corruptReads.Add(1)
			return corruptKey(key)
		}
		value = append(make([]byte, 0, len(v)), v...) // non-nil even when empty
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("bolt: get: %w", err)
	}
	return value, nil
}

// memGet returns key's latest value in the memtables (nil: deleted) and
// whether either holds a change of key. The caller holds memMu; the value's
// bytes stay valid after it is released.
func (s *Store) memGet(key []byte) ([]byte, bool) {
	if n := s.active.get(key); n != nil {
		return n.value, true
	}
	if s.imm != nil {
		if n := s.imm.get(key); n != nil {
			return n.value, true
		}
	}
	return nil, false
}

// ForEach visits, in byte order, every key that starts with prefix, in one
// consistent state: the memtables and a bbolt read transaction taken
// together. It stops at the first error fn returns and returns that error
// unwrapped. A key whose stored value fails its checksum is skipped, and
// once every other key is visited ForEach returns a *storage.CorruptError
// listing the skipped ones (wrapped; see storage.Storage).
// key and value are copies into buffers that ForEach reuses:
// they are valid only until fn returns. fn must not call Update (see the
// package doc). prefix is only read during the call. A panic in fn
// propagates after the transaction is released.
func (s *Store) ForEach(prefix []byte, fn func(key, value []byte) error) error {
	if s.isClosed.Load() {
		return storage.ErrClosed
	}
	var (
		inFn    bool
		fnErr   error
		corrupt storage.CorruptError
	)
	// The memtables are read and the transaction begun under memMu, so no
	// checkpoint can move changes from the one to the other in between.
	s.memMu.RLock()
	if s.active.needsMerge() || (s.imm != nil && s.imm.needsMerge()) {
		s.memMu.RUnlock()
		s.memMu.Lock()
		s.active.merge()
		if s.imm != nil {
			s.imm.merge()
		}
		s.memMu.Unlock()
		s.memMu.RLock()
	}
	locked := true
	defer func() {
		if locked {
			s.memMu.RUnlock()
		}
	}()
	err := s.view(func(tx *bbolt.Tx) error {
		mem := s.memPrefix(prefix)
		s.memMu.RUnlock()
		locked = false
		b := tx.Bucket(bucketName)
		if b == nil {
			return errNoBucket
		}
		kb := make([]byte, 0, 64)
		vb := make([]byte, 0, 256) // non-nil, so an empty value is never nil
		emit := func(k, v []byte) error {
			kb = append(kb[:0], k...)
			vb = append(vb[:0], v...)
			inFn = true
			fnErr = fn(kb, vb)
			inFn = false
			return fnErr
		}
		c := b.Cursor()
		next := func(k, v []byte) ([]byte, []byte) {
			for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				if v != nil { // nil: a nested bucket; this package never makes one
					return k, v
				}
			}
			return nil, nil
		}
		k, v := next(c.Seek(prefix))
		for k != nil || len(mem) > 0 {
			if len(mem) > 0 && (k == nil || bytes.Compare(mem[0].key, k) <= 0) {
				n := mem[0]
				mem = mem[1:]
				if k != nil && bytes.Equal(n.key, k) {
					k, v = next(c.Next()) // the memtable's change is newer
				}
				if n.value == nil {
					continue // deleted
				}
				if err := emit(n.key, n.value); err != nil {
					return err
				}
				continue
			}
			value, err := openValue(k, v)
			if err != nil {
				s.corruptReads.Add(1)
				if corrupt.Count++; len(corrupt.Keys) < storage.MaxCorruptKeys {
					corrupt.Keys = append(corrupt.Keys, bytes.Clone(k))
				}
			} else if err := emit(k, value); err != nil {
				return err
			}
			k, v = next(c.Next())
		}
		return nil
	}, &inFn)
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("bolt: for each: %w", err)
	}
	if corrupt.Count > 0 {
		return fmt.Errorf("bolt: for each: %w", &corrupt)
	}
	return nil
}

// memPrefix returns, in key order, the latest change of every key with
// prefix in the memtables: active's where both hold one. The caller holds
// memMu; the entries stay valid after it is released.
func (s *Store) memPrefix(prefix []byte) []memEntry {
	a := s.active.collect(nil, prefix)
	if s.imm == nil {
		return a
	}
	b := s.imm.collect(nil, prefix)
	if len(b) == 0 {
		return a
	}
	out := make([]memEntry, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch c := bytes.Compare(a[0].key, b[0].key); {
		case c < 0:
			out, a = append(out, a[0]), a[1:]
		case c > 0:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// view runs fn in a read-only transaction. A panic raised by bbolt on a
// damaged page, or a memory fault from following a damaged offset out of
// the memory map, becomes an error matching storage.ErrCorrupt; a panic
// raised while *inFn is true came from the caller's code and is raised
// again. A closed database yields storage.ErrClosed.
func (s *Store) view(fn func(tx *bbolt.Tx) error, inFn *bool) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if inFn != nil && *inFn {
				panic(p)
			}
			err = fmt.Errorf("%w: bbolt panicked: %v", storage.ErrCorrupt, p)
		}
	}()
	err = s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return storage.ErrClosed
	}
	return err
}

// Close fails every queued Update with storage.ErrClosed, waits for the
// batch being committed (if any) and the checkpoint in progress (if any) to
// finish, stops the committer, checkpoints the rest of the log into bbolt
// and closes the files. Get and ForEach calls in flight finish first. Later calls of
// Get, Update and ForEach return storage.ErrClosed; Close itself is
// idempotent, and later calls return nil.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.isClosed.Store(true)
		// Wait for Updates that are enqueueing (the committer keeps draining
		// meanwhile); none can start after this.
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()

		close(s.quit)
		if s.onQuit != nil {
			s.onQuit()
		}
		<-s.stopped
		s.failQueued(storage.ErrClosed)
		s.closing.Store(true)
		s.hurryUp()
		close(s.ckpt)
		<-s.ckptStopped
		close(s.zero.jobs)
		<-s.zero.done
		if s.ring != nil {
			s.ring.close()
		}
		var errs []error
		// Leave bbolt complete, so the next Open has nothing to replay. The
		// log still holds everything should this fail.
		if s.failed() == nil && s.imm == nil && !s.abandon {
			pos := logPos{lsn: s.nextLSN - 1, seg: s.cur, seed: s.seed}
			if err := s.checkpoint(s.active, putPos(pos), false); err != nil {
				errs = append(errs, err)
			}
		}
		for _, f := range s.logs {
			if err := f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			s.closeErr = fmt.Errorf("bolt: close %s: %w", s.path, errors.Join(errs...))
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}

// update runs fn in a read-write transaction and commits it, unless fn
// fails. A panic here is bbolt's, on a damaged page (or a memory fault, see
// run), and becomes an error matching storage.ErrCorrupt; bbolt rolls the
// transaction back.
func (s *Store) update(fn func(tx *bbolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: bbolt panicked: %v", storage.ErrCorrupt, p)
		}
	}()
	return s.db.Update(fn)
}
