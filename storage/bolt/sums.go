// Kept sums (storage.Summer): per-bucket XOR sums of the keys' digests, moved in each checkpoint transaction with the data they sum (DESIGN §4).
package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/dynamo-kv/dynamo/storage"
)

var (
	_ storage.Summer = (*Store)(nil)
	_ storage.Stager = (*Store)(nil)
)

// sumsBucket holds the kept sums: under sumSpecKey the spec they follow,
// under sumPosKey the log position (logKey's stored bytes) they were last
// moved with, and the sums themselves in blocks of sumBlock buckets, each
// under 'b' and its big-endian index, stored like values (checksummed with
// their key). The sums always match the data bbolt holds: each checkpoint
// transaction moves the sums of the keys it writes, by the digest of the
// value it replaces and the one it writes. A checkpoint that cannot (it
// replaces a value that fails its checksum) drops the spec, and the next
// Sums scans again. The position stamp catches a writer that knows nothing
// of the sums (a release before them): its checkpoints move logKey and not
// the stamp, and the sums are not trusted.
var (
	sumsBucket = []byte("dynamo-sums")
	sumSpecKey = []byte("spec")
	sumPosKey  = []byte("pos")
)

// sumBlock is how many sums one stored block holds (4 KiB of them).
const sumBlock = 512

const sumSpecVersion = 1

func sumBlockKey(i int) []byte { return binary.BigEndian.AppendUint32([]byte{'b'}, uint32(i)) }

// encodeSumSpec is spec's stored form (before appendValue).
func encodeSumSpec(spec storage.SumSpec) []byte {
	b := []byte{sumSpecVersion}
	b = binary.BigEndian.AppendUint32(b, uint32(spec.Buckets))
	return append(b, spec.Prefix...)
}

// Sums returns spec's sums over the Store's data and keeps them from now
// on, in every checkpoint, across reopens (see storage.Summer). When the
// file keeps valid sums for spec, it reads them (a few KiB per 512
// buckets) and adds the changes not yet checkpointed; otherwise it scans
// every key under spec.Prefix once, and stores the result. Values that
// fail their checksum count as absent. Checkpoints wait while it runs.
func (s *Store) Sums(spec storage.SumSpec) ([]uint64, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("bolt: sums: %w", err)
	}
	if s.isClosed.Load() {
		return nil, storage.ErrClosed
	}
	spec.Prefix = bytes.Clone(spec.Prefix)
	<-s.ckptIdle // no checkpoint moves data or sums meanwhile
	defer func() { s.ckptIdle <- struct{}{} }()
	if err := s.failed(); err != nil {
		return nil, err
	}
	var sums []uint64
	err := s.view(func(tx *bbolt.Tx) error {
		sums = readSums(tx, spec)
		return nil
	}, nil)
	if err == nil && sums == nil {
		s.sumScans.Add(1)
		err = s.update(func(tx *bbolt.Tx) error {
			sums, err = scanSums(tx, spec)
			if err != nil {
				return err
			}
			return writeSums(tx, spec, sums)
		})
	}
	if err != nil {
		return nil, sumsErr(err)
	}
	s.sumSpec.Store(&spec)
	// The changes in the memtables are not in bbolt yet: move the sums by
	// them. No checkpoint runs, so bbolt and the memtables hold still but
	// for new writes, which the caller does not make.
	s.memMu.Lock()
	s.active.merge()
	if s.imm != nil {
		s.imm.merge()
	}
	mem := s.memPrefix(spec.Prefix)
	s.memMu.Unlock()
	if len(mem) == 0 {
		return sums, nil
	}
	err = s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return errNoBucket
		}
		for _, e := range mem {
			if old := b.Get(e.key); old != nil {
				if v, err := openValue(e.key, old); err == nil {
					spec.Add(sums, e.key, v)
				}
			}
			spec.Add(sums, e.key, e.value)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, sumsErr(err)
	}
	return sums, nil
}

func sumsErr(err error) error {
	if err == storage.ErrClosed {
		return err
	}
	return fmt.Errorf("bolt: sums: %w", err)
}

// loadSumSpec sets the spec the checkpoints keep sums for from the file,
// at Open: none unless the file keeps sums that match its data.
func (s *Store) loadSumSpec() error {
	return s.view(func(tx *bbolt.Tx) error {
		sb, meta := tx.Bucket(sumsBucket), tx.Bucket(metaBucket)
		if sb == nil || meta == nil {
			return nil
		}
		v, err := openValue(sumSpecKey, sb.Get(sumSpecKey))
		if err != nil || len(v) < 6 || v[0] != sumSpecVersion {
			return nil
		}
		spec := storage.SumSpec{Buckets: int(binary.BigEndian.Uint32(v[1:])), Prefix: bytes.Clone(v[5:])}
		pos := meta.Get(logKey)
		if spec.Validate() != nil || pos == nil || !bytes.Equal(sb.Get(sumPosKey), pos) {
			return nil
		}
		s.sumSpec.Store(&spec)
		return nil
	}, nil)
}

// readSums returns the sums the file keeps for spec, or nil when it keeps
// none for spec, or they are damaged or stale.
func readSums(tx *bbolt.Tx, spec storage.SumSpec) []uint64 {
	sb, meta := tx.Bucket(sumsBucket), tx.Bucket(metaBucket)
	if sb == nil || meta == nil {
		return nil
	}
	v, err := openValue(sumSpecKey, sb.Get(sumSpecKey))
	if err != nil || !bytes.Equal(v, encodeSumSpec(spec)) {
		return nil
	}
	if pos := meta.Get(logKey); pos == nil || !bytes.Equal(sb.Get(sumPosKey), pos) {
		return nil
	}
	sums := make([]uint64, spec.Buckets)
	for i := 0; i*sumBlock < spec.Buckets; i++ {
		if !readBlock(sb, i, sums[i*sumBlock:min(len(sums), (i+1)*sumBlock)]) {
			return nil
		}
	}
	return sums
}

// readBlock reads stored block i into dst, whose length is the block's,
// and reports whether the block is there and intact.
func readBlock(sb *bbolt.Bucket, i int, dst []uint64) bool {
	key := sumBlockKey(i)
	v, err := openValue(key, sb.Get(key))
	if err != nil || len(v) != 8*len(dst) {
		return false
	}
	for j := range dst {
		dst[j] = binary.LittleEndian.Uint64(v[8*j:])
	}
	return true
}

// scanSums computes spec's sums over bbolt's data; values that fail their
// checksum count as absent.
func scanSums(tx *bbolt.Tx, spec storage.SumSpec) ([]uint64, error) {
	b := tx.Bucket(bucketName)
	if b == nil {
		return nil, errNoBucket
	}
	sums := make([]uint64, spec.Buckets)
	c := b.Cursor()
	for k, v := c.Seek(spec.Prefix); k != nil && bytes.HasPrefix(k, spec.Prefix); k, v = c.Next() {
		if v == nil {
			continue
		}
		if val, err := openValue(k, v); err == nil {
			spec.Add(sums, k, val)
		}
	}
	return sums, nil
}

// writeSums stores spec and its sums, stamped with the current log
// position, replacing whatever sums the file kept.
func writeSums(tx *bbolt.Tx, spec storage.SumSpec, sums []uint64) error {
	if err := tx.DeleteBucket(sumsBucket); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	sb, err := tx.CreateBucket(sumsBucket)
	if err != nil {
		return err
	}
	for i := 0; i*sumBlock < len(sums); i++ {
		if err := putBlock(sb, i, sums[i*sumBlock:min(len(sums), (i+1)*sumBlock)]); err != nil {
			return err
		}
	}
	if err := sb.Put(sumSpecKey, appendValue(nil, sumSpecKey, encodeSumSpec(spec))); err != nil {
		return err
	}
	return stampSums(tx)
}

func putBlock(sb *bbolt.Bucket, i int, sums []uint64) error {
	raw := make([]byte, 0, 8*len(sums))
	for _, x := range sums {
		raw = binary.LittleEndian.AppendUint64(raw, x)
	}
	key := sumBlockKey(i)
	return sb.Put(key, appendValue(nil, key, raw))
}

// stampSums records that the kept sums (if any) match the data at the log
// position the transaction leaves in the metadata bucket. Whatever moves
// the log position while it keeps the sums right calls it.
func stampSums(tx *bbolt.Tx) error {
	sb, meta := tx.Bucket(sumsBucket), tx.Bucket(metaBucket)
	if sb == nil || meta == nil {
		return nil
	}
	pos := meta.Get(logKey)
	if pos == nil {
		return sb.Delete(sumPosKey)
	}
	return sb.Put(sumPosKey, bytes.Clone(pos))
}

// sumTx moves the kept sums by the changes one checkpoint transaction
// writes: each change must be noted before it is written.
type sumTx struct {
	spec   *storage.SumSpec
	data   *bbolt.Bucket
	sb     *bbolt.Bucket
	blocks map[int][]uint64 // read and moved so far, by index
	bad    bool             // the sums cannot follow: drop them
}

// newSumTx returns a sumTx for tx, or nil when the Store keeps no sums.
func (s *Store) newSumTx(tx *bbolt.Tx, data *bbolt.Bucket) *sumTx {
	spec := s.sumSpec.Load()
	if spec == nil {
		return nil
	}
	t := &sumTx{spec: spec, data: data, sb: tx.Bucket(sumsBucket), blocks: map[int][]uint64{}}
	t.bad = t.sb == nil
	return t
}

// note moves the sums by key's change from its value in bbolt to value
// (nil: deleted).
func (t *sumTx) note(key, value []byte) {
	if t.bad {
		return
	}
	bucket, name, ok := t.spec.Locate(key)
	if !ok {
		return
	}
	var d uint64
	if old := t.data.Get(key); old != nil {
		v, err := openValue(key, old)
		if err != nil {
			t.bad = true // its digest, summed when it was written, is lost
			return
		}
		d = storage.Digest(name, v)
	}
	if d ^= storage.Digest(name, value); d == 0 {
		return
	}
	i := bucket / sumBlock
	blk, ok := t.blocks[i]
	if !ok {
		blk = make([]uint64, min(sumBlock, t.spec.Buckets-i*sumBlock))
		if !readBlock(t.sb, i, blk) {
			t.bad = true
			return
		}
		t.blocks[i] = blk
	}
	blk[bucket%sumBlock] ^= d
}

// flush writes the moved blocks, or drops the sums if they cannot follow
// (the Store then keeps none until Sums is called again). last says the
// transaction records the checkpoint's log position.
func (s *Store) flushSums(t *sumTx, tx *bbolt.Tx, last bool) error {
	if t == nil {
		return nil
	}
	if t.bad {
		s.sumSpec.Store(nil)
		if t.sb == nil {
			return nil
		}
		return tx.DeleteBucket(sumsBucket)
	}
	idx := make([]int, 0, len(t.blocks))
	for i := range t.blocks {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		if err := putBlock(t.sb, i, t.blocks[i]); err != nil {
			return err
		}
	}
	if last {
		return stampSums(tx)
	}
	return nil
}
