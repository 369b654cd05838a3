// Store: storage.Storage over one bbolt file; Open, Get, ForEach and Close (DESIGN §4).
package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/dynamo-kv/dynamo/storage"
)

var _ storage.Storage = (*Store)(nil)

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

	// mu makes "not yet closed, so enqueue" atomic with respect to Close:
	// Update holds it shared while it sends, Close exclusively to set closed.
	mu       sync.RWMutex
	closed   bool
	isClosed atomic.Bool // set with closed; read without mu by Get and ForEach

	reqs    chan *request // queued Updates; capacity maxBatch
	quit    chan struct{} // closed by Close to stop the committer
	stopped chan struct{} // closed by the committer when it returns

	closeOnce sync.Once
	closeErr  error

	commits atomic.Uint64
	updates atomic.Uint64

	// Test hooks, set through export_test.go before the Store is used;
	// always nil in production.
	onEnqueue    func()       // called by Update once its request is queued
	beforeCommit func() error // called in the batch transaction after every fn
	onQuit       func()       // called by Close once the committer is told to stop
}

// Stats counts a Store's work since Open. Updates/Commits is the mean
// number of Updates that shared one commit and its fsyncs.
type Stats struct {
	// Commits is how many read-write transactions committed. bbolt fsyncs
	// each commit twice: its data pages, then its meta page. A batch whose
	// every fn failed rolls back and is not counted.
	Commits uint64
	// Updates is how many Update calls returned nil.
	Updates uint64
}

// Open opens the bbolt file at path, creating it (but not its directory) if
// it does not exist, and starts the Store's committer goroutine; Close stops
// it. A nil opts selects every default. Errors match ErrInvalidOptions,
// ErrLocked, storage.ErrCorrupt (path is not a bbolt database, or a damaged
// one) or the underlying *fs.PathError.
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
	if err := ensureBucket(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	s := &Store{
		db:       db,
		path:     path,
		maxBatch: o.MaxBatch,
		reqs:     make(chan *request, o.MaxBatch),
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// openDB opens the bbolt file, turning a lock timeout into ErrLocked and
// bad meta pages, or a bbolt panic while reading them, into
// storage.ErrCorrupt.
//
// A panic inside bbolt.Open leaves its memory map of the file behind, as
// there is no handle to unmap it with; the lock is released and the file
// closed, so the damaged file can be moved aside or repaired.
func openDB(path string, o Options) (db *bbolt.DB, err error) {
	var file *os.File // captured so the lock can be released after a panic
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if file != nil {
				unlock(file)
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("bolt: open %s: %w: bbolt panicked: %v", path, storage.ErrCorrupt, p)
		}
	}()
	db, err = bbolt.Open(path, o.FileMode, &bbolt.Options{
		Timeout:      o.Timeout,
		FreelistType: bbolt.FreelistMapType,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("bolt: open %s: %w by another Store or process (gave up after %s): %w",
			path, ErrLocked, o.Timeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("bolt: open %s: %w: %w", path, storage.ErrCorrupt, err)
	default:
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
}

// ensureBucket creates the Store's bucket in a new file, committing only if
// it is missing.
func ensureBucket(db *bbolt.DB) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: bbolt panicked: %v", storage.ErrCorrupt, p)
		}
	}()
	var found bool
	if err := db.View(func(tx *bbolt.Tx) error {
		found = tx.Bucket(bucketName) != nil
		return nil
	}); err != nil {
		return err
	}
	if found {
		return nil
	}
	return db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	})
}

// Path returns the path of the Store's file, as given to Open.
func (s *Store) Path() string { return s.path }

// Stats returns the Store's counters. It may be called after Close.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Updates: s.updates.Load()}
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
	var value []byte
	err := s.view(func(b *bbolt.Bucket) error {
		if v := b.Get(key); v != nil {
			value = append(make([]byte, 0, len(v)), v...) // non-nil even when empty
		}
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("bolt: get: %w", err)
	}
	return value, nil
}

// ForEach visits, in byte order, every key that starts with prefix, all in
// one read transaction, so it sees one consistent state. It stops at the
// first error fn returns and returns that error unwrapped. key and value
// are copies into buffers that ForEach reuses: they are valid only until fn
// returns. fn must not call Update (see the package doc). prefix is only
// read during the call. A panic in fn propagates after the transaction is
// released.
func (s *Store) ForEach(prefix []byte, fn func(key, value []byte) error) error {
	if s.isClosed.Load() {
		return storage.ErrClosed
	}
	var (
		inFn  bool
		fnErr error
	)
	err := s.view(func(b *bbolt.Bucket) error {
		kb := make([]byte, 0, 64)
		vb := make([]byte, 0, 256) // non-nil, so an empty value is never nil
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if v == nil {
				continue // a nested bucket; this package never makes one
			}
			kb = append(kb[:0], k...)
			vb = append(vb[:0], v...)
			inFn = true
			fnErr = fn(kb, vb)
			inFn = false
			if fnErr != nil {
				return fnErr
			}
		}
		return nil
	}, &inFn)
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("bolt: for each: %w", err)
	}
	return nil
}

// view runs fn on the bucket in a read-only transaction. A panic raised by
// bbolt on a damaged page, or a memory fault from following a damaged
// offset out of the memory map, becomes an error matching
// storage.ErrCorrupt; a panic raised while *inFn is true came from the
// caller's code and is raised again. A closed database yields
// storage.ErrClosed.
func (s *Store) view(fn func(b *bbolt.Bucket) error, inFn *bool) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if inFn != nil && *inFn {
				panic(p)
			}
			err = fmt.Errorf("%w: bbolt panicked: %v", storage.ErrCorrupt, p)
		}
	}()
	err = s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return errNoBucket
		}
		return fn(b)
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return storage.ErrClosed
	}
	return err
}

// Close fails every queued Update with storage.ErrClosed, waits for the
// batch being committed (if any) to finish, stops the committer and closes
// the file. Get and ForEach calls in flight finish first. Later calls of
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
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("bolt: close %s: %w", s.path, err)
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}
