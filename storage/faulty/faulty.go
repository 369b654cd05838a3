// Package faulty implements a storage.Storage wrapper that injects disk errors, for testing that a replica whose disk fails never acknowledges a write (DESIGN §4.5).
//
// A wrapped Store passes every call through to the inner storage.Storage
// until a fault is armed. An armed fault fails the call before the inner
// Storage sees it, so a failed Update is never applied: exactly what a
// replica must assume after a failed fsync, since it must not acknowledge
// the write.
//
//	s := faulty.Wrap(memory.New())
//	s.FailUpdates(syscall.EIO)
//	err := s.Update(key, fn) // errors.Is(err, syscall.EIO) and errors.Is(err, faulty.ErrInjected)
//	s.Heal()
package faulty

import (
	"errors"
	"fmt"
	"sync"

	"github.com/dynamo-kv/dynamo/storage"
)

// ErrInjected is matched, through errors.Is, by every error the Store
// injects, alongside the error given to the Fail method.
var ErrInjected = errors.New("faulty: injected fault")

var _ storage.Storage = (*Store)(nil)

// Store wraps a storage.Storage and fails its calls on demand. All methods
// are safe for concurrent use, and faults may be armed and healed while
// other goroutines use the Store. Byte slices are passed to and from the
// inner Storage untouched, so its ownership rules apply.
type Store struct {
	inner storage.Storage

	mu         sync.Mutex
	updateErr  error // non-nil: Updates fail
	getErr     error // non-nil: Gets fail
	forEachErr error // non-nil: ForEach calls fail
	// Armed by FailUpdatesAfter: Updates still allowed to reach inner
	// before updateAfterErr replaces updateErr. -1 when not armed.
	updatesLeft    int
	updateAfterErr error
	updates        int // Updates that reached inner and returned nil
	injected       int // calls failed by an injected fault
}

// Wrap returns a Store that passes every call to inner until a fault is
// armed. Closing the Store closes inner.
func Wrap(inner storage.Storage) *Store {
	return &Store{inner: inner, updatesLeft: -1}
}

// inject returns the error a call fails with: it matches both ErrInjected
// and err, which may be nil.
func inject(op string, err error) error {
	if err == nil {
		return fmt.Errorf("faulty: %s: %w", op, ErrInjected)
	}
	return fmt.Errorf("faulty: %s: %w: %w", op, ErrInjected, err)
}

// FailUpdates makes every later Update fail with an error matching
// ErrInjected and err (err may be nil), without reaching the inner Storage.
func (s *Store) FailUpdates(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updateErr = inject("update", err)
	s.updatesLeft, s.updateAfterErr = -1, nil
}

// FailUpdatesAfter lets the next n Updates through (whatever they return)
// and makes every Update after them fail as FailUpdates(err) would. n = 0
// is FailUpdates(err). It replaces an armed Update fault.
func (s *Store) FailUpdatesAfter(n int, err error) {
	if n <= 0 {
		s.FailUpdates(err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updateErr = nil
	s.updatesLeft, s.updateAfterErr = n, inject("update", err)
}

// FailGets makes every later Get fail with an error matching ErrInjected and
// err (err may be nil).
func (s *Store) FailGets(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.getErr = inject("get", err)
}

// FailForEach makes every later ForEach fail, before fn is called, with an
// error matching ErrInjected and err (err may be nil).
func (s *Store) FailForEach(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forEachErr = inject("for each", err)
}

// Heal disarms every fault: later calls reach the inner Storage again.
func (s *Store) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updateErr, s.getErr, s.forEachErr = nil, nil, nil
	s.updatesLeft, s.updateAfterErr = -1, nil
}

// Stats reports how many Updates reached the inner Storage and succeeded,
// and how many calls an injected fault failed.
func (s *Store) Stats() (updates, injected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates, s.injected
}

// Inner returns the wrapped Storage, to inspect it behind the faults.
func (s *Store) Inner() storage.Storage { return s.inner }

// Get returns the inner Storage's answer, or the armed Get fault.
func (s *Store) Get(key []byte) ([]byte, error) {
	s.mu.Lock()
	err := s.getErr
	if err != nil {
		s.injected++
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.inner.Get(key)
}

// Update passes the call to the inner Storage, or fails with the armed
// Update fault without reaching it, so the change is never applied.
func (s *Store) Update(key []byte, fn func(current []byte) ([]byte, error)) error {
	s.mu.Lock()
	err := s.updateErr
	switch {
	case err != nil:
	case s.updatesLeft == 0:
		s.updateErr, s.updatesLeft, s.updateAfterErr = s.updateAfterErr, -1, nil
		err = s.updateErr
	case s.updatesLeft > 0:
		s.updatesLeft--
	}
	if err != nil {
		s.injected++
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.inner.Update(key, fn); err != nil {
		return err
	}
	s.mu.Lock()
	s.updates++
	s.mu.Unlock()
	return nil
}

// ForEach passes the call to the inner Storage, or fails with the armed
// ForEach fault before visiting anything.
func (s *Store) ForEach(prefix []byte, fn func(key, value []byte) error) error {
	s.mu.Lock()
	err := s.forEachErr
	if err != nil {
		s.injected++
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.inner.ForEach(prefix, fn)
}

// Close closes the inner Storage; faults do not apply to it.
func (s *Store) Close() error {
	return s.inner.Close()
}
