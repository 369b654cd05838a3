// Files from earlier versions: the first log format is replayed, bare values get their checksums, once, at Open (DESIGN §4).
package bolt

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/dynamo-kv/dynamo/storage"
)

// A file without logKey in its metadata was written before value
// checksums and the current log format (or is new). Its log records have a
// 16-byte header,
//
//	crc32c(lsn|payload) uint32 | len(payload) uint32 | lsn uint64
//
// and the last checkpointed LSN is in legacyLSNKey; there is no log
// position, so replay takes each segment's run of valid records with
// consecutive LSNs from its start, as that version did: damage in the
// middle of a segment ends its replay there. Open upgrades such a file in
// steps, each of which a crash may interrupt and the next Open takes up
// again:
//
//  1. Check every value: store each bare value in its checksummed form, in
//     one transaction, and record valueFormatKey.
//  2. Replay the old log's records into bbolt (now in checksummed form),
//     recording their last LSN in legacyLSNKey.
//  3. Empty both segments and extend them with zeros (see prepareSegment):
//     bbolt holds all they had.
//  4. Record logKey, the log position, in the current format, with a new
//     seed.
const recHeaderV1 = 16

// readSegmentV1 returns the records of a segment in the first format after
// LSN after, in order: the run of valid records with consecutive LSNs from
// the start of the segment, stopping at the first record that is torn,
// zero, fails its checksum, or does not follow its predecessor.
func readSegmentV1(r io.Reader, after uint64) ([]logRecord, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		recs []logRecord
		prev uint64
		hdr  [recHeaderV1]byte
	)
	for first := true; ; first = false {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return recs, nil
			}
			return nil, err
		}
		size := binary.LittleEndian.Uint32(hdr[4:])
		lsn := binary.LittleEndian.Uint64(hdr[8:])
		if size == 0 || size > maxRecord || lsn == 0 || (!first && lsn != prev+1) {
			return recs, nil
		}
		// Read the payload in pieces, so a damaged length allocates no more
		// than the bytes actually there.
		var payload []byte
		for len(payload) < int(size) {
			n := min(int(size)-len(payload), 1<<20)
			payload = slices.Grow(payload, n)
			if _, err := io.ReadFull(br, payload[len(payload):len(payload)+n]); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return recs, nil
				}
				return nil, err
			}
			payload = payload[:len(payload)+n]
		}
		crc := crc32.Update(crc32.Checksum(hdr[8:], castagnoli), castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(hdr[0:]) {
			return recs, nil
		}
		prev = lsn
		if lsn > after {
			recs = append(recs, logRecord{lsn: lsn, payload: payload})
		}
	}
}

// readLogV1 returns the records of both segments in the first format after
// LSN after, in LSN order. They must follow on from after without a gap: a
// missing record was acknowledged, and its absence is damage, reported as
// a *CorruptLogError along with the records before the gap.
func readLogV1(segs [2]file, after uint64) ([]logRecord, error) {
	type run struct {
		recs []logRecord
		f    file
	}
	var runs [2]run
	for i, f := range segs {
		size, err := f.Size()
		if err != nil {
			return nil, err
		}
		runs[i].f = f
		if runs[i].recs, err = readSegmentV1(io.NewSectionReader(f, 0, size), after); err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name(), err)
		}
	}
	// Each segment's run is consecutive; the later segment follows the
	// earlier one.
	if len(runs[0].recs) > 0 && len(runs[1].recs) > 0 && runs[1].recs[0].lsn < runs[0].recs[0].lsn {
		runs[0], runs[1] = runs[1], runs[0]
	}
	var recs []logRecord
	next := after + 1
	for _, run := range runs {
		for _, r := range run.recs {
			if r.lsn != next {
				return recs, &CorruptLogError{Path: run.f.Name(), Detail: fmt.Sprintf(
					"log in the first format: record %d is where record %d is due: the records between are missing",
					r.lsn, next)}
			}
			recs = append(recs, r)
			next++
		}
	}
	return recs, nil
}

// convertValues stores every bare value of the data bucket in its
// checksummed form, and records that it did.
func convertValues(tx *bbolt.Tx) error {
	b, meta := tx.Bucket(bucketName), tx.Bucket(metaBucket)
	if b == nil || meta == nil {
		return errNoBucket
	}
	// A cursor must not be used across Puts: convert a batch of copied
	// keys at a time, then seek past the last.
	var (
		keys, vals [][]byte
		from       []byte
	)
	for {
		keys, vals = keys[:0], vals[:0]
		c := b.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
			if k != nil && bytes.Equal(k, from) {
				k, v = c.Next()
			}
		}
		for size := 0; k != nil && size < ckptChunk; k, v = c.Next() {
			if v == nil {
				continue // a nested bucket; the Store never makes one
			}
			keys = append(keys, bytes.Clone(k))
			vals = append(vals, appendValue(nil, k, v))
			size += len(k) + len(v)
		}
		if len(keys) == 0 {
			return meta.Put(valueFormatKey, flagValue(valueFormatKey))
		}
		for i, k := range keys {
			if err := b.Put(k, vals[i]); err != nil {
				return err
			}
		}
		from = keys[len(keys)-1]
	}
}

// legacyLSN reads the last checkpointed LSN of a log in the first format:
// 0 when there is none.
func legacyLSN(meta *bbolt.Bucket) (uint64, error) {
	v := meta.Get(legacyLSNKey)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	default:
		return 0, fmt.Errorf("%w: checkpoint LSN of %d bytes", storage.ErrCorrupt, len(v))
	}
}
