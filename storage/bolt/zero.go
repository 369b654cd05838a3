// Zeroing ahead: log segments are extended with zeros in the background, so appends overwrite blocks the file already has (DESIGN §4).
package bolt

import "sync"

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
type zeroer struct {
	mu        sync.Mutex
	allocated [2]int64      // per segment: bytes the file has (records or zeros)
	busy      chan struct{} // closed when the zeroing in flight ends; nil when idle

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

// runZeroer zeroes chunks until jobs is closed. A failed write or sync
// only costs speed, so it is not reported; the chunk is tried again later.
func (s *Store) runZeroer() {
	z := &s.zero
	defer close(z.done)
	for j := range z.jobs {
		f := s.logs[j.seg]
		_, err := f.WriteAt(z.zeros, j.from)
		if err == nil {
			err = fdatasync(f)
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
