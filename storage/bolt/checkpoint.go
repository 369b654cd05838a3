// Checkpoints: a full log segment's changes are copied into bbolt in one transaction, freeing the segment (DESIGN §4).
package bolt

import (
	"fmt"
	"math"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// metaBucket holds the Store's own records: the log position and flags
// (see values.go).
var metaBucket = []byte("dynamo-meta")

// ckptJob asks the checkpointer to copy mem, the changes of the log up to
// and including record pos.lsn, into bbolt, and then record pos.
type ckptJob struct {
	mem *memtable
	pos logPos
}

// rotate freezes the active memtable, hands it to the checkpointer and
// switches the log to the other segment. It first waits for the previous
// checkpoint, which frees that segment; writers wait meanwhile, which bounds
// the memory the memtables hold to about two segments' worth.
func (s *Store) rotate() {
	s.hurryUp()
	<-s.ckptIdle
	s.awaitZeroer(math.MaxInt64) // zeroing never overlaps a segment's reuse
	if s.failed() == nil {
		if err := s.at(stepRotate); err != nil {
			s.fail(err)
		}
	}
	if s.failed() != nil {
		s.ckptIdle <- struct{}{}
		return
	}
	s.memMu.Lock()
	mem := s.active
	s.imm, s.active = mem, newMemtable()
	s.memMu.Unlock()
	s.cur ^= 1
	s.ckptBytes.Store(s.off)
	s.off = 0
	s.fill.Store(0)
	s.ckpt <- ckptJob{mem: mem, pos: logPos{lsn: s.nextLSN - 1, seg: s.cur, seed: s.seed}}
}

// checkpointer runs checkpoint jobs until ckpt is closed. A failed
// checkpoint fails the Store: its changes stay readable from the frozen
// memtable and durable in the log, and a reopen replays them.
func (s *Store) checkpointer() {
	defer close(s.ckptStopped)
	for job := range s.ckpt {
		s.hurry.Store(false)
		select {
		case <-s.hurryCh: // a stale wake-up from the previous job
		default:
		}
		if err := s.checkpoint(job.mem, putPos(job.pos), true); err != nil {
			s.fail(err)
		} else {
			s.ckptBytes.Store(0)
			s.memMu.Lock()
			if s.imm == job.mem {
				s.imm = nil
			}
			s.memMu.Unlock()
		}
		s.ckptIdle <- struct{}{}
	}
}

// checkpoint writes every change of mem into bbolt and then runs finish
// on the metadata bucket, in the transaction of the last change (to record
// the log position). mem must not change meanwhile. Keys go in in
// order, which is what bbolt writes fastest, in transactions of about
// ckptChunk bytes each. One huge transaction would queue tens of megabytes
// of page writes at the disk, and every log fdatasync behind them would
// wait (a 160 ms stall in dynamo-bench; unpaced 1 MiB chunks still cost
// 30 ms at p99.9). So with paced set, the chunks keep just ahead of the
// log: the checkpoint's share done stays at about twice the share of the
// new segment filled, so it ends when that segment is half full, long
// before the next rotation has to wait for it, however fast or slow the
// writes come; and at least at the pace of finishing in maxCkptTime.
//
// Until the last transaction records the position, a crash replays the
// log from the previous checkpoint over the chunks already written, which
// is harmless: records hold whole values and replay in order.
func (s *Store) checkpoint(mem *memtable, finish func(meta *bbolt.Bucket) error, paced bool) error {
	nodes := s.order(mem)
	if len(nodes) == 0 {
		return nil
	}
	start, total := time.Now(), float64(len(nodes))
	for len(nodes) > 0 {
		for paced {
			done := 1 - float64(len(nodes))/total
			due := max(2*float64(s.fill.Load())/float64(s.logSize), float64(time.Since(start))/float64(maxCkptTime))
			if done <= due {
				break
			}
			paced = s.pace(paceTick)
		}
		// The chunk's values in their stored form, in one buffer that
		// lives as long as the transaction (bbolt keeps what Put is given
		// until the commit).
		n, size, stored := 0, 0, 0
		for ; n < len(nodes) && size < ckptChunk; n++ {
			size += len(nodes[n].key) + len(nodes[n].value)
			if v := nodes[n].value; v != nil {
				stored += valueOverhead + len(v)
			}
		}
		chunk, last := nodes[:n], n == len(nodes)
		if err := s.at(stepChunkBegin); err != nil {
			return fmt.Errorf("bolt: checkpoint: %w", err)
		}
		err := s.update(func(tx *bbolt.Tx) error {
			b, meta := tx.Bucket(bucketName), tx.Bucket(metaBucket)
			if b == nil || meta == nil {
				return errNoBucket
			}
			buf := make([]byte, 0, stored)
			for _, nd := range chunk {
				var err error
				if nd.value == nil {
					err = b.Delete(nd.key)
				} else {
					from := len(buf)
					buf = appendValue(buf, nd.key, nd.value)
					err = b.Put(nd.key, buf[from:])
				}
				if err != nil {
					return err
				}
			}
			if err := s.at(stepChunkPut); err != nil {
				return err
			}
			if last {
				if err := finish(meta); err != nil {
					return err
				}
			}
			return s.at(stepChunkCommit)
		})
		if err == nil {
			err = s.at(stepChunkDone)
		}
		if err != nil {
			return fmt.Errorf("bolt: checkpoint: %w", err)
		}
		nodes = nodes[n:]
	}
	if err := s.at(stepCheckpointDone); err != nil {
		return fmt.Errorf("bolt: checkpoint: %w", err)
	}
	s.checkpoints.Add(1)
	return nil
}

// order sorts a memtable that no longer changes, outside memMu, and
// installs the result so scans of it need not sort again.
func (s *Store) order(mem *memtable) []*memNode {
	s.memMu.RLock()
	view := &memtable{sorted: mem.sorted, unsorted: slices.Clone(mem.unsorted)}
	s.memMu.RUnlock()
	nodes := view.ordered()
	s.memMu.Lock()
	mem.sorted, mem.unsorted = nodes, nil
	s.memMu.Unlock()
	return nodes
}

const (
	// maxCkptTime is the slowest a paced checkpoint goes, when few writes
	// come.
	maxCkptTime = 30 * time.Second
	// paceTick is how often a checkpoint that is ahead of the log checks
	// again.
	paceTick = 2 * time.Millisecond
)

// ckptChunk is about how many bytes of keys and values one checkpoint
// transaction writes.
const ckptChunk = 256 << 10

// hurryUp makes the checkpoint in progress, if any, stop pacing: a rotation
// or Close is waiting for it.
func (s *Store) hurryUp() {
	s.hurry.Store(true)
	select {
	case s.hurryCh <- struct{}{}:
	default:
	}
}

// pace sleeps for d, or until hurryUp. It reports whether to keep pacing.
func (s *Store) pace(d time.Duration) bool {
	if s.hurry.Load() || s.closing.Load() {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.hurryCh:
		return false
	}
}
