// Write-ahead log: Updates are made durable by one append and one fdatasync per batch (DESIGN §4).
package bolt

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

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
// A record is a 20-byte header, then its payload:
//
//	crc32c(seed; header[4:20]) uint32 | crc32c(seed; payload) uint32 |
//	len(payload) uint32 | lsn uint64
//	payload: entries, each op byte | uvarint key length | key
//	         [| uvarint value length | value]   (value only for opPut)
//
// All little-endian. Every record has the next log sequence number (LSN).
// The header has its own checksum, so that a header read back intact can
// be trusted (its length and LSN) even when the payload is torn. Both
// checksums start from the log's seed, a random number kept in bbolt with
// the log position (logPos): the bytes of a value, which may come from
// anyone, can never pass for a record of this log, so Open may look for
// records anywhere in a segment (see logscan.go). An earlier format, with
// one checksum and a 16-byte header, is still read (see legacy.go).
const (
	recHeader = 20
	// splitRecord is the payload size past which a batch's further
	// changes go into another record.
	splitRecord = 64 << 20
	// maxRecord caps one record's payload: a split-sized record plus one
	// change of the largest key and value bbolt takes.
	maxRecord = splitRecord + bbolt.MaxKeySize + bbolt.MaxValueSize + 16

	opPut    = 0
	opDelete = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c returns the CRC-32C of b, starting from seed.
func crc32c(seed uint32, b []byte) uint32 { return crc32.Update(seed, castagnoli, b) }

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
func sealRecord(rec []byte, lsn uint64, seed uint32) {
	binary.LittleEndian.PutUint32(rec[4:], crc32c(seed, rec[recHeader:]))
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(rec)-recHeader))
	binary.LittleEndian.PutUint64(rec[12:], lsn)
	binary.LittleEndian.PutUint32(rec[0:], crc32c(seed, rec[4:recHeader]))
}

// recordHeader is a record's header, read back.
type recordHeader struct {
	dataCRC uint32
	size    uint32
	lsn     uint64
}

// parseHeader reads a record header from b (at least recHeader bytes) and
// reports whether its checksum holds. It rejects the implausible (a zero
// LSN or length, a length over maxRecord) before computing the checksum,
// which is most of what a search through other bytes meets.
func parseHeader(b []byte, seed uint32) (recordHeader, bool) {
	h := recordHeader{
		dataCRC: binary.LittleEndian.Uint32(b[4:]),
		size:    binary.LittleEndian.Uint32(b[8:]),
		lsn:     binary.LittleEndian.Uint64(b[12:]),
	}
	if h.lsn == 0 || h.size == 0 || h.size > maxRecord {
		return h, false
	}
	return h, binary.LittleEndian.Uint32(b) == crc32c(seed, b[4:recHeader])
}

// logRecord is one record read back by replay.
type logRecord struct {
	lsn     uint64
	payload []byte
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
