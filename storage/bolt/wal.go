// Write-ahead log: Updates are made durable by one append and one fdatasync per batch (DESIGN §4).
package bolt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"

	bbolt "go.etcd.io/bbolt"
)

// The log is two segment files next to the bbolt file, path+".wal0" and
// path+".wal1". The committer appends one record per batch to the current
// segment and fdatasyncs it; when the segment reaches Options.LogSize it
// switches to the other one, whose records the checkpointer has by then
// copied into bbolt. Segments are overwritten from the start, not
// truncated, so after the first round their blocks are already allocated
// and an append needs no metadata update.
//
// A record is a 16-byte header, then its payload:
//
//	crc32c(lsn|payload) uint32 | len(payload) uint32 | lsn uint64
//	payload: entries, each op byte | uvarint key length | key
//	         [| uvarint value length | value]   (value only for opPut)
//
// Every record has the next log sequence number (LSN). bbolt stores the LSN
// of the last record checkpointed into it; records at or below it are
// stale. Replay reads each segment from the start while records are valid
// and their LSNs consecutive: the first torn, zero or stale record (a
// reused segment still holds records of its earlier round, whose LSNs are
// lower) ends the segment.
const (
	recHeader = 16
	// splitRecord is the payload size past which a batch's further
	// changes go into another record.
	splitRecord = 64 << 20
	// maxRecord caps one record's payload: a split-sized record plus one
	// change of the largest key and value bbolt takes. Replay treats a
	// larger length as the end of the segment.
	maxRecord = splitRecord + bbolt.MaxKeySize + bbolt.MaxValueSize + 16

	opPut    = 0
	opDelete = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentPaths returns the two log segments of the bbolt file at path.
func segmentPaths(path string) [2]string {
	return [2]string{path + ".wal0", path + ".wal1"}
}

// appendEntry appends one change to a record payload: value nil deletes.
func appendEntry(buf, key, value []byte) []byte {
	if value == nil {
		buf = append(buf, opDelete)
		buf = binary.AppendUvarint(buf, uint64(len(key)))
		return append(buf, key...)
	}
	buf = append(buf, opPut)
	buf = binary.AppendUvarint(buf, uint64(len(key)))
	buf = append(buf, key...)
	buf = binary.AppendUvarint(buf, uint64(len(value)))
	return append(buf, value...)
}

// entrySize is how many bytes appendEntry adds.
func entrySize(key, value []byte) int {
	n := 1 + uvarintLen(len(key)) + len(key)
	if value != nil {
		n += uvarintLen(len(value)) + len(value)
	}
	return n
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// sealRecord fills in the header that rec (header space, then payload)
// starts with.
func sealRecord(rec []byte, lsn uint64) {
	binary.LittleEndian.PutUint32(rec[4:], uint32(len(rec)-recHeader))
	binary.LittleEndian.PutUint64(rec[8:], lsn)
	binary.LittleEndian.PutUint32(rec[0:], crc32.Checksum(rec[8:], castagnoli))
}

// logRecord is one record read back by replay.
type logRecord struct {
	lsn     uint64
	payload []byte
}

// readSegment returns the records of the segment r after LSN after, in
// order: the run of valid records with consecutive LSNs from the start of
// the segment, stopping at the first record that is torn, zero, fails its
// checksum, or does not follow its predecessor.
func readSegment(r io.Reader, after uint64) ([]logRecord, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var (
		recs []logRecord
		prev uint64
		hdr  [recHeader]byte
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

// errBadRecord means a record passed its checksum but its entries do not
// parse: written by something other than this package.
var errBadRecord = errors.New("bolt: log record does not parse")

// decodeEntries calls fn for each change in a record payload, value nil
// for a delete. key and value point into payload.
func decodeEntries(payload []byte, fn func(key, value []byte)) error {
	for len(payload) > 0 {
		op := payload[0]
		payload = payload[1:]
		key, rest, ok := cutBytes(payload)
		if !ok || len(key) == 0 || len(key) > bbolt.MaxKeySize {
			return errBadRecord
		}
		payload = rest
		switch op {
		case opDelete:
			fn(key, nil)
		case opPut:
			value, rest, ok := cutBytes(payload)
			if !ok || len(value) > bbolt.MaxValueSize {
				return errBadRecord
			}
			payload = rest
			fn(key, value[:len(value):len(value)])
		default:
			return errBadRecord
		}
	}
	return nil
}

// cutBytes splits a uvarint-length-prefixed byte string off b.
func cutBytes(b []byte) (s, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	end := w + int(n)
	return b[w:end:end], b[end:], true
}

// openSegments opens (creating when missing) both log segments of path and
// returns the records after LSN after, in LSN order. They must follow on
// from after without a gap: a missing record that was acknowledged is
// damage, reported as an error matching storage.ErrCorrupt by the caller.
func openSegments(path string, mode os.FileMode, after uint64) (files [2]*os.File, recs []logRecord, err error) {
	defer func() {
		if err != nil {
			for _, f := range files {
				if f != nil {
					_ = f.Close()
				}
			}
		}
	}()
	created := false
	var segs [2][]logRecord
	for i, p := range segmentPaths(path) {
		if _, statErr := os.Stat(p); errors.Is(statErr, os.ErrNotExist) {
			created = true
		}
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, mode)
		if err != nil {
			return files, nil, err
		}
		files[i] = f
		if segs[i], err = readSegment(f, after); err != nil {
			return files, nil, fmt.Errorf("read %s: %w", p, err)
		}
	}
	if created {
		// A new segment's directory entry must be durable before any
		// record in it is acknowledged.
		if err := syncDir(filepath.Dir(path)); err != nil {
			return files, nil, err
		}
	}
	// Each segment's run is consecutive; the later segment follows the
	// earlier one.
	a, b := segs[0], segs[1]
	if len(a) > 0 && len(b) > 0 && b[0].lsn < a[0].lsn {
		a, b = b, a
	}
	recs = append(a, b...)
	next := after + 1
	for _, r := range recs {
		if r.lsn != next {
			return files, nil, fmt.Errorf("%w: log records after %d jump from %d to %d", errLogGap, after, next-1, r.lsn)
		}
		next++
	}
	return files, recs, nil
}

// errLogGap means the log is missing a record between the checkpoint and
// a later record.
var errLogGap = errors.New("bolt: log has a gap")

// syncDir fsyncs a directory, making the entries created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
