// Options and their defaults for the bbolt-backed Store (DESIGN §4).
package bolt

import (
	"errors"
	"fmt"
	"os"
	"time"
)

const (
	// DefaultMaxBatch is how many Updates share one commit at most when
	// Options.MaxBatch is zero.
	DefaultMaxBatch = 256
	// DefaultLogSize is how many bytes of log a segment holds before its
	// changes are checkpointed into bbolt, when Options.LogSize is zero.
	DefaultLogSize = 64 << 20
	// DefaultTimeout is how long Open waits for the file lock when
	// Options.Timeout is zero.
	DefaultTimeout = time.Second
	// DefaultFileMode is the permission a new database file gets when
	// Options.FileMode is zero.
	DefaultFileMode os.FileMode = 0o600
)

// ErrInvalidOptions is returned by Options.Validate and Open when an option
// is out of range.
var ErrInvalidOptions = errors.New("bolt: invalid options")

// Options configures Open. The zero value, like a nil *Options, selects every
// default.
type Options struct {
	// MaxBatch caps how many queued Updates the committer applies in one
	// transaction, and so under one fsync. It also bounds the queue: an
	// Update waits for room once MaxBatch requests are queued. 0 means
	// DefaultMaxBatch; 1 commits every Update on its own.
	MaxBatch int
	// LogSize is how many bytes the write-ahead log takes before the
	// Store checkpoints them into bbolt (in the background; writers go on
	// in a second segment meanwhile). It bounds the log's two files to a
	// little over LogSize each, the memory the not-yet-checkpointed values
	// take to about twice LogSize, and the work of replaying the log at
	// Open. Larger means fewer, larger bbolt transactions. 0 means
	// DefaultLogSize.
	LogSize int64
	// DirectSync makes the committer fdatasync the log itself instead of
	// through io_uring. By default, on Linux, the sync goes through an
	// io_uring so the committing goroutine parks while the kernel syncs,
	// instead of keeping one of the scheduler's processors blocked in the
	// system call (see the package doc); where io_uring cannot be set up,
	// the Store syncs directly anyway. Durability is the same either way.
	DirectSync bool
	// Timeout is how long Open waits for the exclusive lock on the file when
	// another Store or process holds it, before failing with ErrLocked.
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// FileMode is the permission of a newly created file. 0 means
	// DefaultFileMode.
	FileMode os.FileMode
	// Salvage makes Open start on a log that is damaged in the middle,
	// truncated or missing, which it otherwise refuses with a
	// *CorruptLogError. Open then keeps the changes of the intact records
	// before the damage, and the Store reports LostWrites: Updates it
	// acknowledged before may be missing, until ClearLostWrites. Values
	// that fail their checksums and damage to the bbolt file are not
	// salvaged; see the package doc.
	Salvage bool

	// Test hooks, set by the package's own tests; nil in production.
	fs   vfs              // the log's files; nil: the operating system's
	hook func(step) error // called at each step of a checkpoint and of Open
}

// Validate reports every out-of-range option at once, wrapped in
// ErrInvalidOptions. It never modifies o.
func (o Options) Validate() error {
	var errs []error
	if o.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("MaxBatch (%d) must be 0 (default %d) or positive", o.MaxBatch, DefaultMaxBatch))
	}
	if o.LogSize < 0 {
		errs = append(errs, fmt.Errorf("LogSize (%d) must be 0 (default %d) or positive", o.LogSize, DefaultLogSize))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("Timeout (%s) must be 0 (default %s) or positive", o.Timeout, DefaultTimeout))
	}
	if o.FileMode&^os.ModePerm != 0 {
		errs = append(errs, fmt.Errorf("FileMode (%s) may only hold permission bits", o.FileMode))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return nil
}

// withDefaults returns a copy of o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.LogSize == 0 {
		o.LogSize = DefaultLogSize
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FileMode == 0 {
		o.FileMode = DefaultFileMode
	}
	if o.fs == nil {
		o.fs = osFS{}
	}
	return o
}
