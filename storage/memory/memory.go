// Package memory implements storage.Storage with a map, for tests and caches (DESIGN §1).
//
// Nothing survives Close or the process: Update returns as soon as the map
// holds the new value. Every byte slice is copied on the way in and on the
// way out, so callers never alias the Store's buffers, even when they break
// the storage.Storage contract by keeping or modifying a slice. Values
// live in memory and are not checksummed: the Store never reports
// storage.ErrCorrupt, and is neither a storage.Discarder nor a
// storage.Lossy.
package memory

import (
	"bytes"
	"slices"
	"strings"
	"sync"

	"github.com/dynamo-kv/dynamo/storage"
)

var (
	_ storage.Storage       = (*Store)(nil)
	_ storage.Batcher       = (*Store)(nil)
	_ storage.PrefixDeleter = (*Store)(nil)
	_ storage.Stager        = (*Store)(nil)
)

// Store is a map-backed storage.Storage. Its zero value is not usable; call
// New. All methods are safe for concurrent use.
type Store struct {
	mu     sync.RWMutex
	closed bool
	data   map[string][]byte // values are never nil and never modified in place
	bytes  int               // sum of len(key)+len(value) over data
	// sorted holds data's keys in order when !dirty. Inserts and deletes
	// only mark it dirty; ForEach re-sorts once, so a run of prefix scans
	// between writes costs O(log n + k) each instead of O(n).
	sorted []string
	dirty  bool
}

// New returns an empty, open Store.
func New() *Store {
	return &Store{data: make(map[string][]byte)}
}

// Get returns a copy of key's value, owned by the caller, or nil and no error
// when the key is absent. key is only read during the call.
func (s *Store) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, storage.ErrEmptyKey
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, storage.ErrClosed
	}
	v, ok := s.data[string(key)]
	if !ok {
		return nil, nil
	}
	return bytes.Clone(v), nil // non-nil even for an empty value
}

// Update replaces key's value with fn(current) under the Store's write lock,
// so Updates are serialised and fn runs exactly once per call. current is a
// private copy that fn may read (and, harmlessly, modify); the result is
// copied before it is stored, so the caller keeps ownership of its buffer.
// key is copied. A nil result deletes the key. fn must not call the Store.
func (s *Store) Update(key []byte, fn func(current []byte) ([]byte, error)) error {
	return s.UpdateStaged(key, fn, nil)
}

// UpdateStaged is Update, and calls staged (if not nil) once fn's result
// is settled, just before it is stored (storage.Stager). A memory Store's
// commit cannot fail, so a staged result is always stored; the Stager is
// here so that in-memory clusters (tests, the simulation) take the path a
// durable Storage's coordinator takes.
func (s *Store) UpdateStaged(key []byte, fn func(current []byte) ([]byte, error), staged func()) error {
	if len(key) == 0 {
		return storage.ErrEmptyKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	return s.update(key, fn, staged)
}

// UpdateBatch applies ops in order under one hold of the write lock, each
// as Update would, and returns one error per Op (see storage.Batcher).
func (s *Store) UpdateBatch(ops []storage.Op) []error {
	errs := make([]error, len(ops))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, op := range ops {
		switch {
		case s.closed:
			errs[i] = storage.ErrClosed
		case len(op.Key) == 0:
			errs[i] = storage.ErrEmptyKey
		default:
			errs[i] = s.update(op.Key, op.Fn, nil)
		}
	}
	return errs
}

// DeletePrefix deletes every key that starts with prefix under one hold of
// the write lock and returns how many it deleted (see
// storage.PrefixDeleter).
func (s *Store) DeletePrefix(prefix []byte) (int, error) {
	if len(prefix) == 0 {
		return 0, storage.ErrEmptyKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, storage.ErrClosed
	}
	n := 0
	for k, v := range s.data {
		if strings.HasPrefix(k, string(prefix)) {
			s.bytes -= len(k) + len(v)
			delete(s.data, k)
			n++
		}
	}
	if n > 0 {
		s.dirty = true
	}
	return n, nil
}

// update runs one Update's fn; the caller holds the write lock.
func (s *Store) update(key []byte, fn func(current []byte) ([]byte, error), staged func()) error {
	old, ok := s.data[string(key)]
	var current []byte
	if ok {
		current = bytes.Clone(old)
	}
	next, err := fn(current)
	if err != nil {
		return err
	}
	if staged != nil && (ok || next != nil) {
		staged()
	}
	if ok {
		s.bytes -= len(key) + len(old)
	}
	if next == nil {
		if ok {
			delete(s.data, string(key))
			s.dirty = true
		}
		return nil
	}
	if !ok {
		s.dirty = true
	}
	if len(next) == 0 {
		next = []byte{} // keep a non-nil empty value distinct from absence
	} else {
		next = bytes.Clone(next)
	}
	s.data[string(key)] = next
	s.bytes += len(key) + len(next)
	return nil
}

// ForEach visits, in byte order, every key that starts with prefix until fn
// returns an error, which ForEach returns unwrapped. It works on a snapshot
// taken when it starts: Updates made meanwhile (including from fn, which the
// Store tolerates though the interface forbids it) are not seen. key and
// value are fresh copies for each call of fn.
func (s *Store) ForEach(prefix []byte, fn func(key, value []byte) error) error {
	type entry struct {
		key   string
		value []byte
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return storage.ErrClosed
	}
	if s.dirty || s.sorted == nil {
		s.sorted = s.sorted[:0]
		for k := range s.data {
			s.sorted = append(s.sorted, k)
		}
		slices.Sort(s.sorted)
		s.dirty = false
	}
	p := string(prefix)
	var entries []entry
	i, _ := slices.BinarySearch(s.sorted, p)
	for ; i < len(s.sorted) && strings.HasPrefix(s.sorted[i], p); i++ {
		k := s.sorted[i]
		entries = append(entries, entry{k, s.data[k]}) // values are never modified in place
	}
	s.mu.Unlock()

	for _, e := range entries {
		if err := fn([]byte(e.key), bytes.Clone(e.value)); err != nil {
			return err
		}
	}
	return nil
}

// Close drops the data. Later calls of Get, Update and ForEach return
// storage.ErrClosed; Close itself is idempotent and always returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.data = nil
	s.bytes = 0
	return nil
}

// Len returns how many keys the Store holds (0 once closed).
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.data)
}

// Bytes returns the total length of every key and value the Store holds
// (0 once closed).
func (s *Store) Bytes() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
}
