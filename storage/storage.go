// Package storage defines one node's durable key/value space (DESIGN §1, §4).
// Values are opaque bytes: the root package owns their encoding, and storage
// knows nothing of clocks or siblings.
//
// Implementations live in sub-packages: bolt (bbolt with group commit),
// memory (a map, for tests and caches) and faulty (an error-injecting
// wrapper). The conformance suite in storagetest tells whether a custom
// implementation is right.
package storage

import "errors"

var (
	// ErrClosed is returned by every method once the Storage is closed.
	ErrClosed = errors.New("storage: closed")
	// ErrEmptyKey is returned when a key is empty.
	ErrEmptyKey = errors.New("storage: empty key")
	// ErrCorrupt is returned when stored bytes cannot be read back.
	ErrCorrupt = errors.New("storage: corrupt")
)

// Storage is one node's durable key/value space.
// All methods are safe for concurrent use.
type Storage interface {
	// Get returns key's value, or nil and no error when the key is absent. A
	// stored empty value comes back as a non-nil empty slice. key is only read
	// during the call; the returned slice is owned by the caller, who may keep
	// and modify it. Errors: ErrEmptyKey, ErrClosed, ErrCorrupt, or I/O errors.
	Get(key []byte) ([]byte, error)
	// Update atomically replaces key's value with fn(current). current is nil
	// when the key is absent and is valid only while fn runs; fn must neither
	// retain nor modify it. A nil result with a nil error deletes the key (a
	// non-nil empty result stores an empty value); a non-nil error leaves the
	// key unchanged and is returned by Update. The result is owned by the
	// Storage once fn returns. fn may be called more than once and must be
	// free of side effects beyond its result; it must not call the Storage.
	// key is only read during the call and stays owned by the caller.
	//
	// Update returns nil only once the change is durable (for a disk-backed
	// Storage: committed and fsynced). Concurrent calls may share one commit.
	// Any error (fn's, ErrEmptyKey, ErrClosed, ErrCorrupt, I/O) means the
	// change is not acknowledged and must not be reported as stored; after an
	// I/O error it may or may not have reached the disk.
	Update(key []byte, fn func(current []byte) ([]byte, error)) error
	// ForEach visits, in byte order, every key that starts with prefix (all keys
	// for an empty prefix) until fn returns an error, which ForEach returns.
	// key and value are valid only while fn runs; fn must neither retain nor
	// modify them (copy what it keeps) and must not call Update. prefix is only
	// read during the call.
	ForEach(prefix []byte, fn func(key, value []byte) error) error
	// Close releases the storage. Get, Update and ForEach called after Close
	// return ErrClosed; Updates still queued when Close is called fail with
	// ErrClosed and are not applied. Close is idempotent: later calls return
	// nil.
	Close() error
}
