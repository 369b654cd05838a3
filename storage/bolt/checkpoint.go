// Checkpoints: a full log segment's changes are copied into bbolt in one transaction, freeing the segment (DESIGN §4).
package bolt

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/dynamo-kv/dynamo/storage"
)

// metaBucket holds lsnKey: the LSN of the last log record whose changes
// bbolt holds.
var (
	metaBucket = []byte("dynamo-meta")
	lsnKey     = []byte("checkpoint-lsn")
)

// ckptJob asks the checkpointer to copy mem, the changes of the log up to
// and including LSN lsn, into bbolt.
type ckptJob struct {
	mem *memtable
	lsn uint64
}

// rotate freezes the active memtable, hands it to the checkpointer and
// switches the log to the other segment. It first waits for the previous
// checkpoint, which frees that segment; writers wait meanwhile, which bounds
// the memory the memtables hold to about two segments' worth.
func (s *Store) rotate() {
	s.hurryUp()
	<-s.ckptIdle
	s.awaitZeroer(math.MaxInt64) // zeroing never overlaps a segment's reuse
	if s.failed() != nil {
		s.ckptIdle <- struct{}{}
		return
	}
	s.memMu.Lock()
	mem := s.active
	s.imm, s.active = mem, newMemtable()
	s.memMu.Unlock()
	s.cur ^= 1
	s.off = 0
	s.fill.Store(0)
	s.ckpt <- ckptJob{mem: mem, lsn: s.nextLSN - 1}
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
		if err := s.checkpoint(job.mem, job.lsn, true); err != nil {
			s.fail(err)
		} else {
			s.memMu.Lock()
			if s.imm == job.mem {
				s.imm = nil
			}
			s.memMu.Unlock()
		}
		s.ckptIdle <- struct{}{}
	}
}

// checkpoint writes every change of mem into bbolt and then records lsn as
// the new checkpoint LSN. mem must not change meanwhile. Keys go in in
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
// Until the last transaction records lsn, a crash replays the log from the
// previous checkpoint over the chunks already written, which is harmless:
// records hold whole values and replay in order.
func (s *Store) checkpoint(mem *memtable, lsn uint64, paced bool) error {
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
		err := s.update(func(tx *bbolt.Tx) error {
			b, meta := tx.Bucket(bucketName), tx.Bucket(metaBucket)
			if b == nil || meta == nil {
				return errNoBucket
			}
			for size := 0; len(nodes) > 0 && size < ckptChunk; nodes = nodes[1:] {
				n := nodes[0]
				var err error
				if n.value == nil {
					err = b.Delete(n.key)
				} else {
					err = b.Put(n.key, n.value)
				}
				if err != nil {
					return err
				}
				size += len(n.key) + len(n.value)
			}
			if len(nodes) > 0 {
				return nil
			}
			return meta.Put(lsnKey, binary.BigEndian.AppendUint64(nil, lsn))
		})
		if err != nil {
			return fmt.Errorf("bolt: checkpoint: %w", err)
		}
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

// checkpointLSN reads the LSN of the last checkpoint: 0 for a new file or
// one written before the log existed.
func checkpointLSN(db *bbolt.DB) (lsn uint64, err error) {
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if meta == nil {
			return errNoBucket
		}
		v := meta.Get(lsnKey)
		switch len(v) {
		case 0:
			return nil
		case 8:
			lsn = binary.BigEndian.Uint64(v)
			return nil
		default:
			return fmt.Errorf("%w: checkpoint LSN of %d bytes", storage.ErrCorrupt, len(v))
		}
	})
	return lsn, err
}

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
