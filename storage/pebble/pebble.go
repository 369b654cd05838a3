// Package pebble implements storage.Storage over Pebble, CockroachDB's
// log-structured merge tree, for nodes that outgrow bbolt (docs/DESIGN.md §4).
//
// bbolt, the default (storage/bolt), updates a B+tree in place: with random
// keys, each checkpoint rewrites a page for almost every key it copies, so
// durable writes slow down as a node's data grows past a few GiB. An LSM
// writes sorted runs sequentially and merges them in the background, so its
// write rate stays close to that of an empty node. This package lives in a
// Go module of its own so that a service that does not use it does not
// depend on Pebble.
//
//	st, err := pebble.Open(filepath.Join(dir, "node"), nil)
//	if err != nil {
//		return err
//	}
//	store, err := dynamo.New(dynamo.Config{Storage: st /* ... */})
//
// # Writes
//
// Update takes a lock on the key's stripe, reads the current value, runs fn
// and commits the result in one Pebble batch with Sync: Update returns only
// once the write-ahead log holding it is fsynced. Pebble's commit pipeline
// shares one fsync among the batches that arrive while the previous one
// syncs (group commit), so concurrent Updates cost far less than one fsync
// each. Updates of one key are serialised by the stripe lock; Updates of
// other keys run in parallel.
//
// # Sums
//
// The Store is a storage.Summer: each batch that changes a summed key also
// merges the change of the key's bucket sum (an XOR, with a Pebble merge
// operator) into a sum record, in the same atomic batch, so the kept sums
// are always those of the data, after a crash too, and a restart reads them
// instead of scanning every key. Damage to the sum records costs a scan:
// Open drops them, and Sums rebuilds them from the data.
//
// # Damage
//
// Pebble checksums every block of its tables and every record of its log.
// A read that meets a damaged block fails with an error matching
// storage.ErrCorrupt (not a *storage.CorruptError: a block holds many keys,
// and which of them were damaged is not known). Values carry no checksum
// of their own, and the Store is not a storage.Discarder. Pebble's Open
// fails on damage inside an older log file, but reads damage inside its
// manifest or its last log file as the end of it (as a crash's torn tail).
// In the manifest that would drop every later version edit, and with them
// the tables they added, so Open first reads the manifest itself and fails
// with storage.ErrCorrupt when a damaged record has records after it; only
// damage to the last record (or its length field) passes as a torn tail.
// Damage inside the last log file silently drops the writes after it: unlike
// storage/bolt, which tells a torn tail from damage (see its package doc),
// the Store is not a storage.Lossy. A node that fears such damage re-syncs
// from its peers (anti-entropy does it in the background anyway).
//
// # Failure
//
// Pebble stops the process (log.Fatal) when a write or fsync of its log or
// manifest fails: it cannot know what reached the disk, and going on would
// risk acknowledging a write that is not durable. A restart recovers what
// is durable; the node then catches up from its peers. (bbolt's Store
// instead refuses every later write and lets the service report it.)
package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	cpebble "github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/dynamo-kv/dynamo/storage"
)

var (
	_ storage.Storage       = (*Store)(nil)
	_ storage.Batcher       = (*Store)(nil)
	_ storage.PrefixDeleter = (*Store)(nil)
	_ storage.Summer        = (*Store)(nil)
	_ storage.Stager        = (*Store)(nil)
	_ storage.Failer        = (*Store)(nil)
	_ storage.StatsReporter = (*Store)(nil)
)

// ErrInvalidOptions is returned (wrapped) by Open for Options out of range.
var ErrInvalidOptions = errors.New("pebble: invalid options")

// Options tune a Store. The zero value selects every default.
type Options struct {
	// CacheSize is the bytes of Pebble's block cache. Zero: 256 MiB.
	CacheSize int64
	// MemTableSize is the bytes of one memtable (Pebble keeps up to
	// MemTableStopWritesThreshold of them before writes wait). Zero: 64 MiB.
	MemTableSize uint64
	// FS is the file system the Store uses. Nil: the operating system's.
	// Tests pass an in-memory or fault-injecting one.
	FS vfs.FS
	// Tune, if set, is called with the Pebble options the Store built
	// (after the fields above are applied, before Open): an escape hatch
	// for compaction and level tuning. It must not change Merger (the
	// sums depend on it) nor make commits skip the log.
	Tune func(o *cpebble.Options)
}

// Validate reports whether o is in range, with an error matching
// ErrInvalidOptions when it is not.
func (o Options) Validate() error {
	if o.CacheSize < 0 {
		return fmt.Errorf("%w: CacheSize %d is negative", ErrInvalidOptions, o.CacheSize)
	}
	if o.MemTableSize != 0 && (o.MemTableSize < 1<<20 || o.MemTableSize > 1<<30) {
		return fmt.Errorf("%w: MemTableSize %d (want 1 MiB to 1 GiB, or 0)", ErrInvalidOptions, o.MemTableSize)
	}
	return nil
}

// The Store's key space. Data keys are the caller's keys after dataPrefix;
// the Store's own records sort after every data key.
const (
	dataPrefix = 'd'
	sumPrefix  = 's' // 's' + bucket (uint32 BE): 8 bytes, the bucket's sum (LE)
	metaPrefix = 'z'
)

// sumSpecKey holds the SumSpec the kept sums follow (encodeSumSpec).
var sumSpecKey = []byte{metaPrefix, 's', 'p', 'e', 'c'}

// stripes is how many locks serialise Updates by key.
const stripes = 1024

// Store is a storage.Storage over a Pebble database. Its zero value is not
// usable; call Open. All methods are safe for concurrent use.
type Store struct {
	db    *cpebble.DB
	cache *cpebble.Cache
	// release drops the cache and stops the disk health check, once db
	// is closed (or was never opened).
	release func()
	dir     string

	// mu is held shared by every call that uses db (a ForEach only while
	// it makes its iterator: walks keeps Close from closing db under it),
	// and exclusively by Close, DeletePrefix and a Sums that scans (so
	// that no Update runs meanwhile); closed is set under it.
	mu     sync.RWMutex
	closed bool
	// walks counts the ForEach calls that walk without holding mu.
	walks sync.WaitGroup
	// spec is the SumSpec whose sums the Store keeps (nil: none), changed
	// only under mu held exclusively.
	spec *storage.SumSpec

	locks [stripes]sync.Mutex
	seed  maphash.Seed

	commits, updates, corrupt, sumScans atomic.Uint64
	syncNanos                           atomic.Int64

	// failure is the first commit failure (see ErrFailed); commitFault,
	// set by tests, fails a commit before Pebble sees it.
	failure     atomic.Pointer[error]
	commitFault func() error
}

// ErrFailed is wrapped by every write after a commit failed: the Store
// no longer knows what its log holds, and a write after one that was
// staged (storage.Stager) and then failed must not build on the value
// from before it. Reads go on; reopen the Store to write again.
var ErrFailed = errors.New("pebble: a commit failed; the store takes no more writes")

// Failed returns the failure that stopped the Store's writes, or nil
// (storage.Failer).
func (s *Store) Failed() error {
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats counts a Store's work since Open.
type Stats struct {
	// Commits is how many batches were committed with an fsync of the log
	// (Pebble shares one fsync among concurrent commits); Updates is how
	// many Updates (and UpdateBatch Ops) returned nil.
	Commits, Updates uint64
	// CorruptReads is how many reads met a damaged block.
	CorruptReads uint64
	// SumScans is how many times Sums scanned the data because no sums
	// were kept for its spec.
	SumScans uint64
}

// Open opens (creating it if needed) the Pebble database in dir. A nil
// opts selects every default. Errors match ErrInvalidOptions,
// storage.ErrCorrupt (a damaged database) or the underlying I/O error.
func Open(dir string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.CacheSize == 0 {
		o.CacheSize = 256 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 64 << 20
	}
	s := &Store{dir: dir, seed: maphash.MakeSeed(), cache: cpebble.NewCache(o.CacheSize)}
	po := &cpebble.Options{
		Cache:                       s.cache,
		MemTableSize:                o.MemTableSize,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		LBaseMaxBytes:               256 << 20,
		MaxConcurrentCompactions:    func() int { return 2 },
		Merger:                      xorMerger,
		Comparer:                    comparer,
		Logger:                      quietLogger{},
		FS:                          o.FS,
	}
	po.Levels = make([]cpebble.LevelOptions, 7)
	for i := range po.Levels {
		l := &po.Levels[i]
		l.BlockSize = 32 << 10
		l.FilterPolicy = bloom.FilterPolicy(10)
		l.FilterType = cpebble.TableFilter
		if i > 0 {
			l.TargetFileSize = po.Levels[i-1].TargetFileSize * 2
		} else {
			l.TargetFileSize = 8 << 20
		}
	}
	if o.Tune != nil {
		o.Tune(po)
		po.Merger, po.DisableWAL = xorMerger, false
	}
	fsCloser := io.Closer(io.NopCloser(nil))
	if po.FS == nil {
		// Pebble's default wraps the disk in a health check whose goroutine
		// only DB.Close stops, so a failed Open would leak it: the Store
		// owns it instead.
		po.FS, fsCloser = vfs.WithDiskHealthChecks(vfs.Default, 5*time.Second, func(info vfs.DiskSlowInfo) {
			if l := po.EventListener; l != nil && l.DiskSlow != nil {
				l.DiskSlow(info)
			}
		})
	}
	s.release = func() {
		s.cache.Unref()
		_ = fsCloser.Close()
	}
	po.EnsureDefaults()
	if err := checkManifest(po.FS, dir); err != nil {
		s.release()
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	db, err := cpebble.Open(dir, po)
	if err != nil {
		s.release()
		return nil, fmt.Errorf("pebble: open %s: %w", dir, mapErr(err))
	}
	s.db = db
	spec, err := s.loadSpec()
	if err != nil {
		_ = db.Close()
		s.release()
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	s.spec = spec
	return s, nil
}

// Dir returns the directory the Store was opened on.
func (s *Store) Dir() string { return s.dir }

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Updates: s.updates.Load(), CorruptReads: s.corrupt.Load(), SumScans: s.sumScans.Load()}
}

// StorageStats returns the figures the root package's metrics include.
func (s *Store) StorageStats() storage.Stats {
	st := storage.Stats{
		Commits:      s.commits.Load(),
		Updates:      s.updates.Load(),
		Syncs:        s.commits.Load(),
		SyncSeconds:  time.Duration(s.syncNanos.Load()).Seconds(),
		CorruptReads: s.corrupt.Load(),
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.closed {
		st.LogBytes = int64(s.db.Metrics().WAL.Size)
	}
	return st
}

// dataKey returns key in the Store's key space.
func dataKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = dataPrefix
	copy(k[1:], key)
	return k
}

// successor returns the first key after every key that starts with prefix,
// or nil when there is none (prefix is all 0xff).
func successor(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// mapErr makes Pebble's corruption errors match storage.ErrCorrupt.
func mapErr(err error) error {
	if err != nil && cpebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", storage.ErrCorrupt, err)
	}
	return err
}

// comparer is Pebble's default byte order (and its name), with the whole
// key as the prefix that the bloom filters hold and SeekPrefixGE seeks.
var comparer = func() *cpebble.Comparer {
	c := *cpebble.DefaultComparer
	c.Split = func(a []byte) int { return len(a) }
	return &c
}()

// readOpts are the options of a point read's iterator. A point read seeks
// with SeekPrefixGE, which consults the tables' bloom filters; DB.Get skips
// them in the last level (where a present key usually is), but a write of a
// fresh key reads an absent one, and without the filter that read costs a
// data block from the disk in every last-level table it might be in.
var readOpts = cpebble.IterOptions{UseL6Filters: true}

// read returns key's stored value (a copy) or nil when absent. The caller
// holds mu shared.
func (s *Store) read(key []byte) (_ []byte, err error) {
	k := dataKey(key)
	it, err := s.db.NewIter(&readOpts)
	if err != nil {
		return nil, s.readErr(err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = s.readErr(cerr)
		}
	}()
	if !it.SeekPrefixGE(k) || !bytes.Equal(it.Key(), k) {
		if err := it.Error(); err != nil {
			return nil, s.readErr(err)
		}
		return nil, nil
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, s.readErr(err)
	}
	return bytes.Clone(v), nil
}

// readErr counts a read that met damage and maps the error.
func (s *Store) readErr(err error) error {
	if cpebble.IsCorruptionError(err) {
		s.corrupt.Add(1)
	}
	return mapErr(err)
}

// Get returns key's value, or nil when it is absent; see storage.Storage.
func (s *Store) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, storage.ErrEmptyKey
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, storage.ErrClosed
	}
	return s.read(key)
}

// stripe returns the lock that serialises Updates of key.
func (s *Store) stripe(key []byte) int {
	return int(maphash.Bytes(s.seed, key) % stripes)
}

// write adds to b the change of key from cur to next (both as stored; nil:
// absent), and the change of its bucket's sum when the Store keeps sums.
func (s *Store) write(b *cpebble.Batch, key, cur, next []byte) error {
	if next == nil && cur == nil {
		return nil
	}
	var err error
	if next == nil {
		err = b.Delete(dataKey(key), nil)
	} else {
		err = b.Set(dataKey(key), next, nil)
	}
	if err != nil {
		return err
	}
	if s.spec == nil {
		return nil
	}
	bucket, name, ok := s.spec.Locate(key)
	if !ok {
		return nil
	}
	d := storage.Digest(name, cur) ^ storage.Digest(name, next)
	if d == 0 {
		return nil
	}
	return b.Merge(sumKey(bucket), binary.LittleEndian.AppendUint64(nil, d), nil)
}

// commit commits b with an fsync of the log.
func (s *Store) commit(b *cpebble.Batch) error {
	start := time.Now()
	err := error(nil)
	if s.commitFault != nil {
		err = s.commitFault()
	}
	if err == nil {
		err = b.Commit(cpebble.Sync)
	}
	if err != nil {
		err = fmt.Errorf("%w: commit: %w", ErrFailed, mapErr(err))
		s.failure.CompareAndSwap(nil, &err)
		return err
	}
	s.syncNanos.Add(int64(time.Since(start)))
	s.commits.Add(1)
	return nil
}

// Update replaces key's value with fn(current), durably; see
// storage.Storage. fn is called once, with the key's stripe locked.
func (s *Store) Update(key []byte, fn func(current []byte) ([]byte, error)) error {
	return s.UpdateStaged(key, fn, nil)
}

// UpdateStaged is Update, and calls staged (if not nil) once fn's result is
// in the batch about to be committed and synced, with the key's stripe
// still locked, so every later Update of the key sees the result or the
// commit's failure (storage.Stager).
func (s *Store) UpdateStaged(key []byte, fn func(current []byte) ([]byte, error), staged func()) error {
	if len(key) == 0 {
		return storage.ErrEmptyKey
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return storage.ErrClosed
	}
	if err := s.Failed(); err != nil {
		return err
	}
	l := &s.locks[s.stripe(key)]
	l.Lock()
	defer l.Unlock()
	cur, err := s.read(key)
	if err != nil {
		return err
	}
	next, err := fn(cur)
	if err != nil {
		return err
	}
	if next == nil && cur == nil {
		s.updates.Add(1)
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.write(b, key, cur, next); err != nil {
		return err
	}
	if staged != nil {
		staged()
	}
	if err := s.commit(b); err != nil {
		return err
	}
	s.updates.Add(1)
	return nil
}

// ForEach visits, in byte order, every key that starts with prefix; see
// storage.Storage. It reads one consistent snapshot, through an iterator
// made under mu; it does not hold mu while it walks, so that fn may call
// Get, and DeletePrefix, Sums and Close (with the calls queued behind
// them) do not wait for a long walk. Close waits for the walks to end
// before it closes the database.
func (s *Store) ForEach(prefix []byte, fn func(key, value []byte) error) (err error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return storage.ErrClosed
	}
	s.walks.Add(1)
	defer s.walks.Done()
	it, err := s.newIter(prefix)
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	return s.walk(it, fn)
}

// forEach is ForEach with mu held.
func (s *Store) forEach(prefix []byte, fn func(key, value []byte) error) error {
	it, err := s.newIter(prefix)
	if err != nil {
		return err
	}
	return s.walk(it, fn)
}

// newIter returns an iterator over the data keys that start with prefix.
func (s *Store) newIter(prefix []byte) (*cpebble.Iterator, error) {
	lo := dataKey(prefix)
	it, err := s.db.NewIter(&cpebble.IterOptions{LowerBound: lo, UpperBound: successor(lo)})
	if err != nil {
		return nil, s.readErr(err)
	}
	return it, nil
}

// walk calls fn with each key and value of it, and closes it.
func (s *Store) walk(it *cpebble.Iterator, fn func(key, value []byte) error) (err error) {
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = s.readErr(cerr)
		}
	}()
	for ok := it.First(); ok; ok = it.Next() {
		v, verr := it.ValueAndErr()
		if verr != nil {
			return s.readErr(verr)
		}
		if err := fn(it.Key()[1:], v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return s.readErr(err)
	}
	return nil
}

// Close closes the database, once the ForEach walks under way have ended.
// Later calls return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.walks.Wait() // every Add was made under mu before closed was set
	err := s.db.Close()
	s.release()
	if err != nil {
		return fmt.Errorf("pebble: close: %w", mapErr(err))
	}
	return nil
}

// quietLogger drops Pebble's informational messages (flushes and
// compactions are routine) and keeps its default for fatal ones.
type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	cpebble.DefaultLogger.Fatalf(format, args...)
}

var _ io.Closer = (*Store)(nil)
