// Wire encodings of ring records in memberlist metadata, broadcasts and push/pull (§4.8).

package membership

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Every payload opens with one byte naming its layout; msgpack follows.
// ONLY APPEND TO THIS LIST: nodes of different releases share a cluster.
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
