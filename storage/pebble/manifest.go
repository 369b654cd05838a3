// manifest.go: a check of Pebble's manifest before Open, which tells damage
// inside it from a crash's torn tail (docs/DESIGN.md §4).
package pebble

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	cpebble "github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/dynamo-kv/dynamo/storage"
)

// The manifest's record format (Pebble's record package): 32 KiB blocks of
// chunks, each a header (checksum uint32 LE, length uint16 LE, type; 4
// more bytes of log number for the recyclable types 5 to 8) and its
// payload. The checksum is a masked CRC-32C of the type and the payload.
const (
	recordBlock      = 32 << 10
	recordHeader     = 7
	recyclableHeader = 11
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxManifest bounds the bytes checkManifest reads: Pebble rotates its
// manifest long before (128 MiB by default).
const maxManifest = 1 << 30

// checkManifest reads the current manifest of the database in dir, if
// there is one, and returns an error matching storage.ErrCorrupt when a
// chunk fails its checksum with intact bytes after it. Pebble's Open reads
// such a chunk as the end of the manifest and drops every later version
// edit, and with them the tables they added: data lost without a word. A
// damaged chunk at the very end (or followed only by zeros) is what a crash
// while Pebble appended an edit leaves, and is left to Pebble.
func checkManifest(fs vfs.FS, dir string) error {
	desc, err := cpebble.Peek(dir, fs)
	if err != nil || !desc.Exists {
		return nil // a new database, or one Open itself will refuse
	}
	f, err := fs.Open(desc.ManifestFilename)
	if err != nil {
		return nil // Open reports it
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest))
	if err != nil {
		return fmt.Errorf("pebble: read manifest: %w", err)
	}
	if off := damagedChunk(b); off >= 0 {
		return fmt.Errorf("%w: manifest %s: a damaged record at offset %d, with records after it", storage.ErrCorrupt, desc.ManifestFilename, off)
	}
	return nil
}

// damagedChunk returns the offset of the first chunk of b that fails its
// checksum (or is malformed) and is followed by a nonzero byte, or -1.
func damagedChunk(b []byte) int {
	for pos := 0; pos < len(b); {
		blockEnd := min(pos-pos%recordBlock+recordBlock, len(b))
		if blockEnd-pos < recordHeader {
			pos = blockEnd // the block's zero padding
			continue
		}
		sum := binary.LittleEndian.Uint32(b[pos:])
		length := int(binary.LittleEndian.Uint16(b[pos+4:]))
		typ := b[pos+6]
		hs := recordHeader
		if typ >= 5 && typ <= 8 {
			hs = recyclableHeader
		}
		end := pos + hs + length
		switch {
		case sum == 0 && length == 0 && typ == 0:
			// Zeros: the end of what was written, unless more follows.
			if !allZero(b[pos:]) {
				return pos
			}
			return -1
		case end > len(b):
			return -1 // a torn last chunk
		case end > blockEnd || typ == 0 || typ > 8:
			return pos
		case crc(b[pos+6:end]) != sum:
			if !allZero(b[end:]) {
				return pos
			}
			return -1
		}
		pos = end
	}
	return -1
}

// crc is the record format's masked CRC-32C.
func crc(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
