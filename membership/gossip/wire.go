// Wire encodings of ring records in memberlist metadata, broadcasts and push/pull (§4.8).

package gossip

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

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

// decode checks the tag byte and decodes the rest into v.
func decode(tag byte, b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", errMalformed)
	}
	if b[0] != tag {
		return fmt.Errorf("%w: layout %d, want %d", errMalformed, b[0], tag)
	}
	if err := msgpack.Unmarshal(b[1:], v); err != nil {
		return fmt.Errorf("%w: layout %d: %w", errMalformed, tag, err)
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
	if r.ID, err = d.DecodeString(); err != nil {
		return fmt.Errorf("ring record ID: %w", err)
	}
	if r.Addr, err = d.DecodeString(); err != nil {
		return fmt.Errorf("ring record Addr: %w", err)
	}
	if r.Incarnation, err = d.DecodeUint64(); err != nil {
		return fmt.Errorf("ring record Incarnation: %w", err)
	}
	if r.Left, err = d.DecodeBool(); err != nil {
		return fmt.Errorf("ring record Left: %w", err)
	}
	known := minEntryFields
	if n > known {
		if r.GossipAddr, err = d.DecodeString(); err != nil {
			return fmt.Errorf("ring record GossipAddr: %w", err)
		}
		known++
	}
	if n > known {
		if r.Zone, err = d.DecodeString(); err != nil {
			return fmt.Errorf("ring record Zone: %w", err)
		}
		if len(r.Zone) > membership.MaxZoneLen {
			return fmt.Errorf("ring record Zone of %d bytes, the limit is %d", len(r.Zone), membership.MaxZoneLen)
		}
		known++
	}
	for range n - known {
		if err := d.Skip(); err != nil {
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
	if err := decode(tag, b, &e); err != nil {
		return entry{}, err
	}
	if e.ID == "" {
		return entry{}, fmt.Errorf("%w: entry without an ID", errMalformed)
	}
	return e, nil
}
