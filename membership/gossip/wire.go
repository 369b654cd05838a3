// Wire encodings of ring records in memberlist metadata, broadcasts and push/pull (§4.8).

package gossip

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/dynamo-kv/dynamo/membership"
)

// Every payload opens with one byte naming its layout; msgpack follows.
// ONLY APPEND TO THIS LIST: nodes of different releases share a cluster.
//
// An entry is a msgpack array of its fields in order. Fields are appended to
// it without a new layout: entry.DecodeMsgpack reads the fields it knows,
// leaves missing trailing ones zero and skips unknown trailing ones. (Before
// GossipAddr was appended, entries were decoded strictly, so releases from
// before it reject five-field entries and later ones.)
const (
	// metaV1 opens node metadata: one entry describing the node itself.
	metaV1 byte = 1
	// msgEntryV1 opens a broadcast user message: one entry about any node.
	msgEntryV1 byte = 2
	// stateV1 opens a push/pull state exchange: every entry the sender holds.
	stateV1 byte = 3
)

// The two layouts of a signed cluster (Config.Signer); such a cluster
// sends no other record layout, and takes none.
const (
	// msgSignedV1 opens a broadcast user message: one sealed record (a
	// signed envelope, see signed.go).
	msgSignedV1 byte = 4
	// signedStateV1 opens a push/pull state exchange: every sealed record
	// the sender holds, as an array of msgpack bin.
	signedStateV1 byte = 5
)

// Bounds on what the decoders accept from a peer. Every payload comes from
// the network: these bound the work and memory it can cause, and the
// decoders never recurse deeper than maxSkipDepth.
const (
	// maxStateBytes bounds a push/pull state.
	maxStateBytes = 32 << 20
	// maxStateRecords bounds the records in a push/pull state.
	maxStateRecords = 1 << 16
	// maxIDLen and maxAddrLen bound a record's ID and addresses in bytes.
	maxIDLen   = 1024
	maxAddrLen = 1024
	// maxSkipDepth bounds the nesting of a field a later release appended,
	// which this one skips.
	maxSkipDepth = 16
)

// errMalformed is wrapped by the decoders' errors.
var errMalformed = errors.New("malformed membership payload")

// encode returns the tag byte followed by v in msgpack.
func encode(tag byte, v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode membership payload %d: %w", tag, err)
	}
	return append([]byte{tag}, b...), nil
}

// decodeTagged checks the tag byte of b and runs fn on a decoder of the
// rest, which fn must consume whole.
func decodeTagged(tag byte, b []byte, fn func(d *msgpack.Decoder) error) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", errMalformed)
	}
	if b[0] != tag {
		return fmt.Errorf("%w: layout %d, want %d", errMalformed, b[0], tag)
	}
	if err := decodeWhole(b[1:], fn); err != nil {
		return fmt.Errorf("%w: layout %d: %w", errMalformed, tag, err)
	}
	return nil
}

// decodeWhole runs fn on a decoder of b, which fn must consume whole.
func decodeWhole(b []byte, fn func(d *msgpack.Decoder) error) error {
	r := bytes.NewReader(b)
	d := msgpack.GetDecoder()
	defer msgpack.PutDecoder(d)
	d.Reset(r)
	if err := fn(d); err != nil {
		return err
	}
	if r.Len() > 0 {
		return fmt.Errorf("%d bytes after the payload", r.Len())
	}
	return nil
}

// readBytes reads a msgpack bin or str of at most limit bytes into a new
// slice, checking the announced length before reading; nil reads as nil.
func readBytes(d *msgpack.Decoder, limit int, what string) ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if n < 0 {
		return nil, nil
	}
	if n > limit {
		return nil, fmt.Errorf("%s of %d bytes, the limit is %d", what, n, limit)
	}
	b := make([]byte, n)
	if err := d.ReadFull(b); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// readString is readBytes for a string.
func readString(d *msgpack.Decoder, limit int, what string) (string, error) {
	b, err := readBytes(d, limit, what)
	return string(b), err
}

// maxSkipBytes bounds a string, binary or extension value skipped.
const maxSkipBytes = maxBodyLen

// discard reads the length of a value with header, and then skips that
// many bytes through a small buffer: msgpack's own Skip allocates up to
// 1 MiB for whatever length a header announces.
func discard(d *msgpack.Decoder, header func() (int, error)) error {
	n, err := header()
	if err != nil {
		return err
	}
	if n > maxSkipBytes {
		return fmt.Errorf("value of %d bytes to skip, the limit is %d", n, maxSkipBytes)
	}
	var buf [512]byte
	for n > 0 {
		m := min(n, len(buf))
		if err := d.ReadFull(buf[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// skipValue skips one msgpack value of any type, without recursion, and
// fails on one nested more than maxDepth containers deep.
func skipValue(d *msgpack.Decoder, maxDepth int) error {
	left := []int{1} // values still to skip at each open level
	for len(left) > 0 {
		top := len(left) - 1
		if left[top] == 0 {
			left = left[:top]
			continue
		}
		left[top]--
		c, err := d.PeekCode()
		if err != nil {
			return err
		}
		var n int
		switch {
		case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
			n, err = d.DecodeArrayLen()
		case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
			n, err = d.DecodeMapLen()
			n *= 2
		case msgpcode.IsString(c) || msgpcode.IsBin(c):
			if err := discard(d, d.DecodeBytesLen); err != nil {
				return err
			}
			continue
		case msgpcode.IsExt(c):
			if err := discard(d, func() (int, error) { _, n, err := d.DecodeExtHeader(); return n, err }); err != nil {
				return err
			}
			continue
		default:
			if err := d.Skip(); err != nil { // a number, nil or a bool: a few bytes
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			if len(left) >= maxDepth {
				return fmt.Errorf("value nested more than %d deep", maxDepth)
			}
			left = append(left, n)
		}
	}
	return nil
}

// minEntryFields is the number of fields of the first entry layout: ID,
// Addr, Incarnation and Left.
const minEntryFields = 4

var _ msgpack.CustomDecoder = (*entry)(nil)

// DecodeMsgpack decodes an entry of any release: an array of at least
// minEntryFields fields, the first ones those of entry in order. Fields a
// shorter array lacks stay zero; fields after those entry knows are skipped.
// msgpack nil decodes as the zero entry.
func (e *entry) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n == -1 {
		*e = entry{}
		return nil
	}
	if n < minEntryFields {
		return fmt.Errorf("ring record of %d fields, want at least %d", n, minEntryFields)
	}
	var r entry
	if r.ID, err = readString(d, maxIDLen, "ring record ID"); err != nil {
		return err
	}
	if r.Addr, err = readString(d, maxAddrLen, "ring record Addr"); err != nil {
		return err
	}
	if r.Incarnation, err = d.DecodeUint64(); err != nil {
		return fmt.Errorf("ring record Incarnation: %w", err)
	}
	if r.Left, err = d.DecodeBool(); err != nil {
		return fmt.Errorf("ring record Left: %w", err)
	}
	known := minEntryFields
	if n > known {
		if r.GossipAddr, err = readString(d, maxAddrLen, "ring record GossipAddr"); err != nil {
			return err
		}
		known++
	}
	if n > known {
		if r.Zone, err = readString(d, membership.MaxZoneLen, "ring record Zone"); err != nil {
			return err
		}
		known++
	}
	for range n - known {
		if err := skipValue(d, maxSkipDepth); err != nil {
			return fmt.Errorf("ring record, field of a later release: %w", err)
		}
	}
	*e = r
	return nil
}

// metaRecord is e as it goes into node metadata: without GossipAddr, which
// memberlist carries itself, so that the metadata's size budget
// (memberlist.MetaMaxSize) is left to the ID, data address and zone.
func metaRecord(e entry) entry {
	e.GossipAddr = ""
	return e
}

// decodeEntry decodes one entry and checks that it names a node.
func decodeEntry(tag byte, b []byte) (entry, error) {
	var e entry
	if err := decodeTagged(tag, b, e.DecodeMsgpack); err != nil {
		return entry{}, err
	}
	if e.ID == "" {
		return entry{}, fmt.Errorf("%w: entry without an ID", errMalformed)
	}
	return e, nil
}

// decodeState decodes a push/pull state of unsigned records, dropping
// entries without an ID (msgpack nil among them).
func decodeState(b []byte) ([]entry, error) {
	var out []entry
	err := decodeStateOf(stateV1, b, func(d *msgpack.Decoder) error {
		var e entry
		if err := e.DecodeMsgpack(d); err != nil {
			return err
		}
		if e.ID != "" {
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// decodeStateOf decodes a push/pull state: the tag byte, then an array of
// at most maxStateRecords items, each read by item; at most maxStateBytes
// in all.
func decodeStateOf(tag byte, b []byte, item func(d *msgpack.Decoder) error) error {
	if len(b) > maxStateBytes {
		return fmt.Errorf("%w: state of %d bytes, the limit is %d", errMalformed, len(b), maxStateBytes)
	}
	return decodeTagged(tag, b, func(d *msgpack.Decoder) error {
		n, err := d.DecodeArrayLen()
		if err != nil {
			return err
		}
		if n > maxStateRecords {
			return fmt.Errorf("state of %d records, the limit is %d", n, maxStateRecords)
		}
		for range n {
			if err := item(d); err != nil {
				return err
			}
		}
		return nil
	})
}
