// Checksummed values: every value the Store keeps in bbolt carries a CRC-32C of its key and bytes, checked on every read (DESIGN §4).
package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/dynamo-kv/dynamo/storage"
)

// bbolt checksums only its meta pages: a bit flipped in a stored value
// would be served as is. So each value is stored as
//
//	valueTag byte | crc32c(key | valueTag | value) uint32 LE | value
//
// and every read checks it: Get, ForEach and the read an Update's fn
// starts from. The checksum covers the key, so a value found under another
// key fails too. A mismatch is that key's error alone (see
// storage.CorruptError); the rest of the file reads on.
//
// Files written before checksums hold bare values; Open converts them
// once (see upgrade), and then records valueFormatKey.
const (
	valueTag      = 0x01
	valueOverhead = 1 + 4
)

// valueCRC is the checksum of value stored under key.
func valueCRC(key, value []byte) uint32 {
	crc := crc32.Update(0, castagnoli, key)
	crc = crc32.Update(crc, castagnoli, []byte{valueTag})
	return crc32.Update(crc, castagnoli, value)
}

// appendValue appends value's stored form under key to dst.
func appendValue(dst, key, value []byte) []byte {
	dst = append(dst, valueTag)
	dst = binary.LittleEndian.AppendUint32(dst, valueCRC(key, value))
	return append(dst, value...)
}

// errValueChecksum means a stored value failed its checksum.
var errValueChecksum = errors.New("bolt: stored value fails its checksum")

// openValue checks a value stored under key and returns its bytes, which
// alias stored; an empty value comes back non-nil. A stored form that is
// too short, has another tag or fails its checksum yields
// errValueChecksum.
func openValue(key, stored []byte) ([]byte, error) {
	if len(stored) < valueOverhead || stored[0] != valueTag {
		return nil, errValueChecksum
	}
	value := stored[valueOverhead:len(stored):len(stored)]
	if binary.LittleEndian.Uint32(stored[1:]) != valueCRC(key, value) {
		return nil, errValueChecksum
	}
	return value, nil
}

// corruptKey returns the error a read of key's damaged value fails with:
// a *storage.CorruptError naming key.
func corruptKey(key []byte) error {
	return &storage.CorruptError{Keys: [][]byte{append([]byte(nil), key...)}, Count: 1}
}

// The metadata bucket's records, each stored like a value (with its key in
// its checksum).
var (
	// logKey holds the log position: where the record after the last
	// checkpointed one goes, and the log's checksum seed (see logPos). Its
	// presence means the log is in the current format and every value is
	// checksummed.
	logKey = []byte("log")
	// valueFormatKey says the values are checksummed, in a file whose log
	// is still in the format before logKey (during the upgrade).
	valueFormatKey = []byte("value-format")
	// lostKey is present while writes acknowledged before a salvaging Open
	// may be missing (see Options.Salvage and Store.LostWrites).
	lostKey = []byte("lost-writes")
	// legacyLSNKey holds the last checkpointed LSN of a log in the first
	// format: a bare 8-byte big-endian number.
	legacyLSNKey = []byte("checkpoint-lsn")
)

// logPos is the log position bbolt keeps: every change up to record lsn
// is in bbolt, and record lsn+1, if it was ever written, starts at offset 0
// of segment seg (the log may then go on at offset 0 of the other one).
// seed starts every record checksum of the log (see wal.go).
type logPos struct {
	lsn  uint64
	seg  int
	seed uint32
}

const logPosVersion = 2

// appendLogPos appends p's stored form (under logKey) to dst.
func appendLogPos(dst []byte, p logPos) []byte {
	var b [14]byte
	b[0] = logPosVersion
	b[1] = byte(p.seg)
	binary.LittleEndian.PutUint64(b[2:], p.lsn)
	binary.LittleEndian.PutUint32(b[10:], p.seed)
	return appendValue(dst, logKey, b[:])
}

// parseLogPos reads a stored log position.
func parseLogPos(stored []byte) (logPos, error) {
	b, err := openValue(logKey, stored)
	if err != nil {
		return logPos{}, fmt.Errorf("log position: %w", err)
	}
	if len(b) != 14 || b[0] != logPosVersion || b[1] > 1 {
		return logPos{}, fmt.Errorf("%w: log position of %d bytes, version %d", storage.ErrCorrupt, len(b), firstByte(b))
	}
	return logPos{
		lsn:  binary.LittleEndian.Uint64(b[2:]),
		seg:  int(b[1]),
		seed: binary.LittleEndian.Uint32(b[10:]),
	}, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// flagValue is the stored form of a present flag (valueFormatKey, lostKey).
func flagValue(key []byte) []byte { return appendValue(nil, key, []byte{1}) }

// checkFlag reports whether the flag record stored under key is intact.
func checkFlag(key, stored []byte) error {
	b, err := openValue(key, stored)
	if err == nil && (len(b) != 1 || b[0] != 1) {
		err = errors.New("bad flag")
	}
	if err != nil {
		return fmt.Errorf("%w: record %q: %w", storage.ErrCorrupt, key, err)
	}
	return nil
}
