// Zeroing ahead: log segments are extended with zeros in the background, so appends overwrite blocks the file already has (DESIGN §4).
package bolt

import (
	"fmt"
	"sync"
	"time"
)

// An append that grows a file makes its fdatasync commit the file system's
// journal as well, and journal commits are one at a time for the whole file
// system: on ext4 here, growing appends managed 15,600 fdatasyncs/s over
// three files against 21,000 for overwrites. So the zeroer writes and
// fdatasyncs zeros past the records of the current segment, a chunk at a
// time, before the committer needs them. A segment keeps its blocks when it
// is reused, so this only happens in each segment's first round.
//
// The zeroer works in the background: zeroing in the committer cost every
// writer queued behind it a 1 MiB write and fdatasync, about ten times a
// second under load. The two never write the same bytes: the zeroer only
// writes at or past the end of the records when it starts, and the
// committer waits for it before appending past what is zeroed.
//
// The committer writes a record only where the file durably has room for
// it and for another record header after it (see allocate): then a crash
// never leaves a segment ending inside or right at the end of the log,
// and Open can tell a truncated segment from a torn write.
//
// A failed fdatasync fails the Store, whichever goroutine saw it: Linux
// reports a writeback error once per open file, so after the zeroer's sync
// failed, the committer's next sync of the same file may succeed although
// the pages of an unsynced record were dropped. The two syncs are
// serialised under syncMu, and the committer checks for a failure after
// its own, so that it never acknowledges a record after a failed sync.
type zeroer struct {
	mu        sync.Mutex
	allocated [2]int64      // per segment: bytes the file durably has (records or zeros)
	busy      chan struct{} // closed when the zeroing in flight ends; nil when idle
	syncMu    sync.Mutex    // held by whoever fdatasyncs a segment
	syncErr   bool          // a sync of the zeroer failed; guarded by syncMu

	jobs  chan zeroJob
	done  chan struct{} // closed when run returns
	chunk int64
	zeros []byte // chunk zeros
}

type zeroJob struct {
	seg  int
	from int64
	busy chan struct{}
}

// zeroAhead starts zeroing the next chunk of the current segment when less
// than half a chunk of zeroed space is left past the records and no zeroing
// is in flight. Only the committer calls it.
func (s *Store) zeroAhead() {
	z := &s.zero
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.busy != nil || z.allocated[s.cur]-s.off >= z.chunk/2 {
		return
	}
	j := zeroJob{seg: s.cur, from: max(z.allocated[s.cur], s.off), busy: make(chan struct{})}
	z.busy = j.busy
	z.jobs <- j // capacity 1, and only one job is ever in flight
}

// awaitZeroer waits for the zeroing in flight, if any, when the committer is
// about to write up to end of the current segment past the zeroed part.
func (s *Store) awaitZeroer(end int64) {
	z := &s.zero
	z.mu.Lock()
	busy := z.busy
	past := end > z.allocated[s.cur]
	z.mu.Unlock()
	if busy != nil && past {
		<-busy
	}
}

// runZeroer zeroes chunks until jobs is closed. A failed write only
// costs speed, so it is not reported: the chunk is tried again later, or
// the committer extends the file itself. A failed sync fails the Store.
func (s *Store) runZeroer() {
	z := &s.zero
	defer close(z.done)
	for j := range z.jobs {
		f := s.logs[j.seg]
		err := writeFull(f, z.zeros, j.from)
		if err == nil {
			z.syncMu.Lock()
			if err = f.Datasync(); err != nil {
				s.fail(fmt.Errorf("bolt: log sync %s (zeroing ahead): %w", f.Name(), err))
				z.syncErr = true
			}
			z.syncMu.Unlock()
		}
		z.mu.Lock()
		if err == nil {
			z.allocated[j.seg] = max(z.allocated[j.seg], j.from+z.chunk)
		}
		z.busy = nil
		close(j.busy)
		z.mu.Unlock()
	}
}

// allocate makes sure the current segment durably has need bytes before
// the committer writes below need: it waits for the zeroing in flight, and
// if that falls short, extends the file itself (sparsely: an append into
// the hole costs a journal commit, but this only happens when a record
// outruns the zeroer).
func (s *Store) allocate(need int64) error {
	s.awaitZeroer(need)
	z := &s.zero
	z.mu.Lock()
	have := z.allocated[s.cur]
	z.mu.Unlock()
	if need <= have {
		return nil
	}
	f := s.logs[s.cur]
	size, err := f.Size()
	if err != nil {
		return err
	}
	if target := (need + z.chunk - 1) / z.chunk * z.chunk; size < target {
		if err := f.Truncate(target); err != nil {
			return err
		}
		size = target
	}
	if err := s.datasync(f); err != nil {
		return err
	}
	z.mu.Lock()
	z.allocated[s.cur] = max(z.allocated[s.cur], size)
	z.mu.Unlock()
	return nil
}

// datasync fdatasyncs a segment for the committer, through the io_uring
// when there is one; see syncMu. After a failed sync of the zeroer it
// fails.
func (s *Store) datasync(f file) error {
	z := &s.zero
	z.syncMu.Lock()
	defer z.syncMu.Unlock()
	var err error
	start := time.Now()
	if of, ok := f.(osFile); ok && s.ring != nil {
		err = s.ring.fdatasync(of.File)
	} else {
		err = f.Datasync()
	}
	s.syncs.Add(1)
	s.syncNanos.Add(int64(time.Since(start)))
	if err == nil && z.syncErr {
		err = s.failed()
	}
	return err
}
