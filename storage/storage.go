// Package storage defines one node's durable key/value space (DESIGN §1, §4).
// Values are opaque bytes: the root package owns their encoding, and storage
// knows nothing of clocks or siblings.
//
// Implementations live in sub-packages: bolt (bbolt with group commit,
// the default), memory (a map, for tests and caches) and faulty (an
// error-injecting wrapper); pebble (an LSM, for nodes that outgrow bbolt)
// is a module of its own, github.com/dynamo-kv/dynamo/storage/pebble. The conformance suite in storagetest tells whether a custom
// implementation is right.
package storage

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by every method once the Storage is closed.
	ErrClosed = errors.New("storage: closed")
	// ErrEmptyKey is returned when a key is empty.
	ErrEmptyKey = errors.New("storage: empty key")
	// ErrCorrupt is returned when stored bytes cannot be read back: a
	// value that fails its checksum (then as a *CorruptError), or damage
	// to the storage's own structure.
	ErrCorrupt = errors.New("storage: corrupt")
)

// CorruptError reports stored values that fail their checksum, by key.
// Each is that key's problem alone: the other keys read on. It matches
// ErrCorrupt through errors.Is. A Storage that checks its values returns
// it (wrapped) from Get and Update for a damaged key, and from ForEach
// once it has visited every intact key. Keys are the caller's.
type CorruptError struct {
	// Keys are the damaged keys, in byte order: all of them, or the first
	// MaxCorruptKeys when Count is larger.
	Keys [][]byte
	// Count is how many keys were damaged.
	Count int
}

// MaxCorruptKeys is how many keys a CorruptError lists at most.
const MaxCorruptKeys = 100

func (e *CorruptError) Error() string {
	switch {
	case e.Count == 1 && len(e.Keys) == 1:
		return fmt.Sprintf("storage: corrupt: the stored value of %q fails its checksum", e.Keys[0])
	case len(e.Keys) > 0:
		return fmt.Sprintf("storage: corrupt: %d stored values fail their checksum (the first of %q)", e.Count, e.Keys[0])
	default:
		return fmt.Sprintf("storage: corrupt: %d stored values fail their checksum", e.Count)
	}
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Lossy is implemented by a Storage that may have come up without some
// writes it acknowledged: one opened on a damaged log in a salvaging mode
// (bolt.Options.Salvage). Whoever relies on acknowledged writes being
// there must then make up for them (a Dynamo node takes a new incarnation
// and re-syncs from its peers) before it acknowledges anything again.
type Lossy interface {
	// LostWrites reports whether writes acknowledged before the Storage
	// was opened may be missing. It stays true, across reopens, until
	// ClearLostWrites.
	LostWrites() bool
	// ClearLostWrites records, durably, that the loss has been made up
	// for, so that LostWrites (now and after a reopen) returns false.
	ClearLostWrites() error
}

// Discarder is implemented by a Storage that checks its values: a damaged
// value cannot be read (Get and ForEach report it in a *CorruptError) nor
// updated (Update fails without calling fn), only discarded, after which
// the key is absent and takes writes again. A Dynamo replica discards a
// damaged key and takes it back from its peers.
type Discarder interface {
	// DiscardCorrupt deletes key, durably, if its stored value is damaged,
	// and reports whether it did. An intact or absent key is left alone.
	// key is only read during the call.
	DiscardCorrupt(key []byte) (bool, error)
}

// Storage is one node's durable key/value space.
// All methods are safe for concurrent use.
type Storage interface {
	// Get returns key's value, or nil and no error when the key is absent. A
	// stored empty value comes back as a non-nil empty slice. key is only read
	// during the call; the returned slice is owned by the caller, who may keep
	// and modify it. Errors: ErrEmptyKey, ErrClosed, ErrCorrupt (a
	// *CorruptError naming key when key's value fails its checksum), or I/O
	// errors.
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
	// I/O error it may or may not have reached the disk. When key's stored
	// value fails its checksum, fn is not called and Update returns a
	// *CorruptError naming key (see Discarder).
	Update(key []byte, fn func(current []byte) ([]byte, error)) error
	// ForEach visits, in byte order, every key that starts with prefix (all keys
	// for an empty prefix) until fn returns an error, which ForEach returns.
	// key and value are valid only while fn runs; fn must neither retain nor
	// modify them (copy what it keeps) and must not call Update. prefix is only
	// read during the call.
	//
	// A key whose stored value fails its checksum does not stop the walk:
	// ForEach skips it (fn never sees damaged bytes), visits every other
	// key, and then returns a *CorruptError listing the skipped keys, unless
	// fn stopped the walk first. Damage to the storage's structure that
	// stops the walk is reported with an error matching ErrCorrupt that is
	// not a *CorruptError.
	ForEach(prefix []byte, fn func(key, value []byte) error) error
	// Close releases the storage. Get, Update and ForEach called after Close
	// return ErrClosed; Updates still queued when Close is called fail with
	// ErrClosed and are not applied. Close is idempotent: later calls return
	// nil.
	Close() error
}

// Failer is implemented by a Storage that can fail for good: after a
// write or fsync error its state on disk is unknown, and it refuses every
// later write rather than build on it. A Dynamo node reports the failure
// (Store.Err, Store.Health) and refuses writes itself.
type Failer interface {
	// Failed returns the failure that stopped the Storage's writes, or nil.
	Failed() error
}

// Stats are a Storage's figures for metrics. Those marked "now" are
// gauges; the others count since the Storage was opened. A Storage fills
// in what it has and leaves the rest zero.
type Stats struct {
	// Commits counts the batches made durable (one log write and fsync
	// each); Updates the writes they acknowledged: Updates/Commits is the
	// mean writes per fsync.
	Commits uint64 `json:"commits"`
	Updates uint64 `json:"updates"`
	// Syncs counts the log fsyncs and SyncSeconds totals their time:
	// SyncSeconds/Syncs is the mean fsync latency.
	Syncs       uint64  `json:"syncs"`
	SyncSeconds float64 `json:"sync_seconds"`
	// Checkpoints counts the copies of the log into the main file.
	Checkpoints uint64 `json:"checkpoints"`
	// LogBytes is the bytes in the log segment being written now;
	// CheckpointLagBytes, the bytes of the log still being copied into the
	// main file now (0 when no checkpoint runs).
	LogBytes           int64 `json:"log_bytes"`
	CheckpointLagBytes int64 `json:"checkpoint_lag_bytes"`
	// CorruptReads counts reads that found a stored value damaged.
	CorruptReads uint64 `json:"corrupt_reads"`
}

// StatsReporter is implemented by a Storage that reports Stats. The root
// package's Store.Metrics includes them.
type StatsReporter interface {
	// StorageStats returns the figures now. It must be cheap enough to
	// call at every metrics scrape.
	StorageStats() Stats
}
