// wire.go: the msgpack encodings the root package owns (DESIGN §8): a key's
// stored state (§4.4), version vectors, and the bounded decoder that reads
// them and every message (message.go).
package dynamo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Stored state formats: the first element of every encoded state. Format 1
// is [1, vector, siblings], each sibling [actor, counter, time, tombstone,
// value]. Format 2, written since, is [2, vector, siblings, checksum]: a
// sibling names its actor by its index in the vector, and the checksum is
// the CRC-32C of every byte before it, so a damaged stored state is detected
// and never served (issue 12). Decoders read both.
const (
	stateFormatV1 = 1
	stateFormat   = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Decoding bounds: a peer or a disk cannot make us allocate beyond these.
const (
	maxDecodedList     = 1 << 20 // elements of a list in a convergent value (crdt.go)
	maxDecodedActors   = 1 << 12
	maxDecodedSiblings = 1 << 12
	maxActorLen        = 256
	maxCounter         = 1 << 62
)

// envelopeRoom is what a message needs beyond its keys and states: the
// envelope's fixed fields and the per-item framing of a batch's lists.
const envelopeRoom = 64 << 10

// batchBytesFor returns the byte budget of one batch that crosses the network
// (anti-entropy exchanges and key lists, hint deliveries, transfers, leave
// pushes) for a transport that carries frames of up to frame bytes. A batch
// takes items while they fit the budget, and always at least one: one key and
// its state fit a frame (New checks Limits against the frame size), so a batch
// never exceeds the frame either way.
func batchBytesFor(frame int) int {
	return max(16<<10, min(4<<20, (frame-envelopeRoom)/4))
}

var encPool = sync.Pool{New: func() any {
	b := new(bytes.Buffer)
	e := msgpack.NewEncoder(b)
	return &pooledEncoder{b, e}
}}

type pooledEncoder struct {
	buf *bytes.Buffer
	enc *msgpack.Encoder
}

func getEncoder() *pooledEncoder {
	p := encPool.Get().(*pooledEncoder)
	p.buf.Reset()
	return p
}

func (p *pooledEncoder) finish() []byte {
	out := bytes.Clone(p.buf.Bytes())
	if p.buf.Cap() <= 1<<20 {
		encPool.Put(p)
	}
	return out
}

func encodeUints[T uint32 | uint64](e *msgpack.Encoder, v []T) {
	_ = e.EncodeArrayLen(len(v))
	for _, x := range v {
		_ = e.EncodeUint(uint64(x))
	}
}

// decodeUints reads a list of at most maxN unsigned integers, each within T.
func decodeUints[T uint32 | uint64](d *wireDecoder, maxN int) ([]T, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n > maxN || n > d.r.Len() {
		return nil, fmt.Errorf("list of %d elements, the limit is %d", n, min(maxN, d.r.Len()))
	}
	out := make([]T, 0, min(n, 4096))
	for range n {
		u, err := d.DecodeUint64()
		if err != nil {
			return nil, err
		}
		if uint64(T(u)) != u {
			return nil, fmt.Errorf("value %d out of range", u)
		}
		out = append(out, T(u))
	}
	return out, nil
}

func encodeByteLists(e *msgpack.Encoder, v [][]byte) {
	_ = e.EncodeArrayLen(len(v))
	for _, b := range v {
		_ = e.EncodeBytes(b)
	}
}

// decodeByteLists reads a list of at most maxN byte strings of at most
// maxEach bytes each.
func decodeByteLists(d *wireDecoder, maxN, maxEach int) ([][]byte, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n > maxN || n > d.r.Len() {
		return nil, fmt.Errorf("list of %d elements, the limit is %d", n, min(maxN, d.r.Len()))
	}
	out := make([][]byte, 0, min(n, 4096))
	for range n {
		b, err := d.boundedBytes(maxEach)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// atEOF reports whether d has consumed all its input.
func atEOF(d *wireDecoder) bool {
	_, err := d.PeekCode()
	return err == io.EOF
}

func encodeVV(e *msgpack.Encoder, v versionVector) {
	_ = e.EncodeArrayLen(2 * len(v))
	for _, en := range v {
		_ = e.EncodeString(en.Actor)
		_ = e.EncodeUint(en.Counter)
	}
}

// decodeVV reads a version vector and checks it is well formed: sorted,
// unique, bounded, non-zero counters.
func decodeVV(d *wireDecoder) (versionVector, error) {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	if n%2 != 0 || n/2 > maxDecodedActors {
		return nil, fmt.Errorf("version vector of %d elements", n)
	}
	v := make(versionVector, 0, n/2)
	for i := 0; i < n/2; i++ {
		a, err := d.str()
		if err != nil {
			return nil, err
		}
		c, err := d.DecodeUint64()
		if err != nil {
			return nil, err
		}
		if a == "" || len(a) > maxActorLen || c == 0 || c > maxCounter {
			return nil, fmt.Errorf("bad version vector entry %q:%d", a, c)
		}
		if i > 0 && v[i-1].Actor >= a {
			return nil, errors.New("version vector not sorted")
		}
		v = append(v, vvEntry{a, c})
	}
	return v, nil
}

// encodeState returns st's stored and wire form, in stateFormat. The zero
// state encodes to nil.
func encodeState(st state) []byte {
	if st.empty() {
		return nil
	}
	p := getEncoder()
	e := p.enc
	_ = e.EncodeArrayLen(4)
	_ = e.EncodeUint(stateFormat)
	encodeVV(e, st.VV)
	_ = e.EncodeArrayLen(len(st.Siblings))
	for _, sb := range st.Siblings {
		i, _ := st.VV.find(sb.Dot.Actor) // present: the vector covers every dot
		_ = e.EncodeArrayLen(5)
		_ = e.EncodeUint(uint64(i))
		_ = e.EncodeUint(sb.Dot.Counter)
		_ = e.EncodeInt(sb.Time)
		_ = e.EncodeBool(sb.Tombstone)
		_ = e.EncodeBytes(sb.Value)
	}
	_ = e.EncodeUint32(crc32.Checksum(p.buf.Bytes(), castagnoli))
	return p.finish()
}

// decodeState parses an encoded state and checks its invariants: siblings
// sorted by dot and unique, every dot covered by the vector, and (format 2)
// the checksum. The result does not alias b. Errors match ErrCorrupt.
func decodeState(b []byte) (state, error) {
	d := getDecoder(b, false)
	defer d.release()
	return decodeStateWith(d, b)
}

// currentFormat reports whether b starts the way encodeState starts a
// state: an array of four, then stateFormat (msgpack fixarray, fixint).
func currentFormat(b []byte) bool {
	return len(b) >= 2 && b[0] == 0x94 && b[1] == stateFormat
}

// decodeOwnedState is decodeState for a b that the caller owns and that
// nobody modifies again (a frame the transport handed over, a value
// Storage.Get returned): the siblings' values are subslices of b instead
// of copies. A value's capacity ends where it does, so an append to it
// cannot write into b.
func decodeOwnedState(b []byte) (state, error) {
	d := getDecoder(b, true)
	defer d.release()
	return decodeStateWith(d, b)
}

func decodeStateWith(d *wireDecoder, b []byte) (state, error) {
	if len(b) == 0 {
		return state{}, nil
	}
	st, err := decodeStateFrom(d, b)
	if err != nil {
		return state{}, fmt.Errorf("%w: state: %w", ErrCorrupt, err)
	}
	return st, nil
}

func decodeStateFrom(d *wireDecoder, b []byte) (state, error) {
	var st state
	n, err := d.DecodeArrayLen()
	if err != nil {
		return st, err
	}
	if n < 3 {
		return st, fmt.Errorf("state of %d elements", n)
	}
	f, err := d.DecodeUint64()
	if err != nil {
		return st, err
	}
	fields := 3
	switch f {
	case stateFormatV1:
	case stateFormat:
		fields = 4
		if n < fields {
			return st, fmt.Errorf("state of %d elements", n)
		}
	default:
		return st, fmt.Errorf("unknown state format %d", f)
	}
	if st.VV, err = decodeVV(d); err != nil {
		return st, err
	}
	ns, err := d.DecodeArrayLen()
	if err != nil {
		return st, err
	}
	if ns > maxDecodedSiblings {
		return st, fmt.Errorf("%d siblings", ns)
	}
	if ns > 0 {
		st.Siblings = make([]sibling, 0, ns)
	}
	for i := 0; i < ns; i++ {
		sb, err := decodeSibling(d, st.VV, f)
		if err != nil {
			return st, err
		}
		if !st.VV.covers(sb.Dot) || sb.Dot.Counter == 0 {
			return st, fmt.Errorf("sibling %s:%d not covered by its vector", sb.Dot.Actor, sb.Dot.Counter)
		}
		if i > 0 && st.Siblings[i-1].Dot.compare(sb.Dot) >= 0 {
			return st, errors.New("siblings not sorted")
		}
		st.Siblings = append(st.Siblings, sb)
	}
	if f == stateFormat {
		sum := crc32.Checksum(b[:len(b)-d.r.Len()], castagnoli)
		got, err := d.DecodeUint32()
		if err != nil {
			return st, fmt.Errorf("checksum: %w", err)
		}
		if got != sum {
			return st, fmt.Errorf("checksum mismatch: stored %08x, computed %08x", got, sum)
		}
	}
	for j := fields; j < n; j++ {
		if err := d.skip(0); err != nil {
			return st, err
		}
	}
	if !atEOF(d) {
		return st, errors.New("trailing bytes")
	}
	return st, nil
}

// decodeSibling reads one sibling of a state in format f, whose vector is vv.
func decodeSibling(d *wireDecoder, vv versionVector, f uint64) (sibling, error) {
	var sb sibling
	sn, err := d.DecodeArrayLen()
	if err != nil {
		return sb, err
	}
	if sn < 5 {
		return sb, fmt.Errorf("sibling of %d elements", sn)
	}
	if f == stateFormatV1 {
		if sb.Dot.Actor, err = d.str(); err != nil {
			return sb, err
		}
	} else {
		i, err := d.DecodeUint64()
		if err != nil {
			return sb, err
		}
		if i >= uint64(len(vv)) {
			return sb, fmt.Errorf("sibling names actor %d of %d", i, len(vv))
		}
		sb.Dot.Actor = vv[i].Actor
	}
	if sb.Dot.Counter, err = d.DecodeUint64(); err != nil {
		return sb, err
	}
	if sb.Time, err = d.DecodeInt64(); err != nil {
		return sb, err
	}
	if sb.Tombstone, err = d.DecodeBool(); err != nil {
		return sb, err
	}
	if sb.Value, err = d.bytes(); err != nil {
		return sb, err
	}
	for j := 5; j < sn; j++ {
		if err := d.skip(0); err != nil {
			return sb, err
		}
	}
	return sb, nil
}

// wireDecoder reads msgpack from a byte slice and never trusts a length
// prefix beyond the bytes actually present: msgpack's DecodeBytes and
// DecodeString allocate whatever length the input claims.
type wireDecoder struct {
	*msgpack.Decoder
	r *bytes.Reader
	// owned, when set, is the buffer r reads, which the caller owns and
	// nobody modifies again: bytes and blob return subslices of it. The
	// msgpack decoder reads r directly (a bytes.Reader is an
	// io.ByteScanner, so it adds no buffer), so r's offset is the
	// decoder's.
	owned []byte
}

func newWireDecoder(b []byte) *wireDecoder {
	r := bytes.NewReader(b)
	return &wireDecoder{Decoder: msgpack.NewDecoder(r), r: r}
}

// decoders keeps wireDecoders for the hot decodes (states and messages):
// each is two allocations, about 2% of a get's CPU.
var decoders = sync.Pool{New: func() any { return newWireDecoder(nil) }}

// getDecoder returns a pooled decoder of b; with owned, b is the caller's
// and nobody modifies it again, and values and state blobs are returned as
// subslices of it. The caller releases the decoder once done decoding:
// nothing decoded refers to it.
func getDecoder(b []byte, owned bool) *wireDecoder {
	d := decoders.Get().(*wireDecoder)
	d.r.Reset(b)
	d.Reset(d.r)
	if owned {
		d.owned = b
	}
	return d
}

// release returns a decoder from getDecoder to the pool.
func (d *wireDecoder) release() {
	d.owned = nil
	d.r.Reset(nil)
	d.Reset(d.r)
	decoders.Put(d)
}

// take returns the next n bytes of the input: a subslice of the owned
// buffer (its capacity capped at n), or else a new slice.
func (d *wireDecoder) take(n int) ([]byte, error) {
	if n > d.r.Len() {
		return nil, fmt.Errorf("length %d exceeds the %d bytes left", n, d.r.Len())
	}
	if d.owned != nil {
		off := len(d.owned) - d.r.Len()
		if _, err := d.r.Seek(int64(n), io.SeekCurrent); err != nil {
			return nil, err
		}
		return d.owned[off : off+n : off+n], nil
	}
	b := make([]byte, n)
	_, err := io.ReadFull(d.r, b)
	return b, err
}

// bytes decodes a bin or str value (nil for msgpack nil): a new slice, or a
// subslice of an owned input.
func (d *wireDecoder) bytes() ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil || n < 0 {
		return nil, err
	}
	return d.take(n)
}

// blob decodes a bin or str value of at most limit bytes, a state or a
// value that is only read: a subslice of an owned input, else a copy.
func (d *wireDecoder) blob(limit int) ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil || n < 0 {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errOverLimit, n, limit)
	}
	return d.take(n)
}

// str decodes a str or bin value as a string.
func (d *wireDecoder) str() (string, error) {
	b, err := d.bytes()
	return string(b), err
}

// errOverLimit is wrapped by the errors of values longer than their bound.
var errOverLimit = errors.New("over its limit")

// boundedBytes decodes a bin or str value of at most limit bytes as a new
// slice, even from an owned input (keys and values that outlive it).
func (d *wireDecoder) boundedBytes(limit int) ([]byte, error) {
	b, err := d.blob(limit)
	if err != nil || d.owned == nil {
		return b, err
	}
	return bytes.Clone(b), nil
}

// boundedStr decodes a str or bin value of at most limit bytes as a string.
func (d *wireDecoder) boundedStr(limit int) (string, error) {
	b, err := d.boundedBytes(limit)
	return string(b), err
}

// key decodes a key: at most lim.key bytes (empty is checked by the body).
func (d *wireDecoder) key(lim *wireLimits) ([]byte, error) {
	b, err := d.boundedBytes(lim.key)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return b, nil
}

// u8 and u32 decode unsigned integers that must fit their type.
func (d *wireDecoder) u8() (uint8, error) {
	u, err := d.DecodeUint64()
	if err == nil && u > 0xff {
		err = fmt.Errorf("%d out of range", u)
	}
	return uint8(u), err
}

func (d *wireDecoder) u32() (uint32, error) {
	u, err := d.DecodeUint64()
	if err == nil && u > 0xffffffff {
		err = fmt.Errorf("%d out of range", u)
	}
	return uint32(u), err
}

// smallInt decodes a count: between 0 and 2^31-1.
func (d *wireDecoder) smallInt() (int, error) {
	v, err := d.DecodeInt64()
	if err == nil && (v < 0 || v > 1<<31-1) {
		err = fmt.Errorf("%d out of range", v)
	}
	return int(v), err
}

// maxSkipDepth bounds the nesting of the values skip passes over: msgpack's
// own Skip recurses once per level, so a frame of nested arrays would take
// the stack as deep as the frame is long.
const maxSkipDepth = 32

var errTooDeep = fmt.Errorf("values nested deeper than %d", maxSkipDepth)

// skip passes over one msgpack value of any type at nesting depth depth,
// without allocating what it skips: it is how decoders pass over the fields
// of newer versions that they do not know.
func (d *wireDecoder) skip(depth int) error {
	c, err := d.r.ReadByte()
	if err != nil {
		return err
	}
	switch {
	case msgpcode.IsFixedNum(c), c == msgpcode.Nil, c == msgpcode.False, c == msgpcode.True:
		return nil
	case msgpcode.IsFixedMap(c):
		return d.skipItems(2*int(c&0x0f), depth)
	case msgpcode.IsFixedArray(c):
		return d.skipItems(int(c&0x0f), depth)
	case msgpcode.IsFixedString(c):
		return d.skipBytes(int(c & 0x1f))
	}
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		return d.skipBytes(1)
	case msgpcode.Uint16, msgpcode.Int16:
		return d.skipBytes(2)
	case msgpcode.Uint32, msgpcode.Int32, msgpcode.Float:
		return d.skipBytes(4)
	case msgpcode.Uint64, msgpcode.Int64, msgpcode.Double:
		return d.skipBytes(8)
	case msgpcode.FixExt1:
		return d.skipBytes(1 + 1)
	case msgpcode.FixExt2:
		return d.skipBytes(1 + 2)
	case msgpcode.FixExt4:
		return d.skipBytes(1 + 4)
	case msgpcode.FixExt8:
		return d.skipBytes(1 + 8)
	case msgpcode.FixExt16:
		return d.skipBytes(1 + 16)
	}
	var size int // bytes of the length that follows the code
	switch c {
	case msgpcode.Bin8, msgpcode.Str8, msgpcode.Ext8:
		size = 1
	case msgpcode.Bin16, msgpcode.Str16, msgpcode.Ext16, msgpcode.Array16, msgpcode.Map16:
		size = 2
	case msgpcode.Bin32, msgpcode.Str32, msgpcode.Ext32, msgpcode.Array32, msgpcode.Map32:
		size = 4
	default:
		return fmt.Errorf("unknown msgpack code %#x", c)
	}
	var lb [4]byte
	if _, err := io.ReadFull(d.r, lb[4-size:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(lb[:]))
	switch c {
	case msgpcode.Array16, msgpcode.Array32:
		return d.skipItems(n, depth)
	case msgpcode.Map16, msgpcode.Map32:
		return d.skipItems(2*n, depth)
	case msgpcode.Ext8, msgpcode.Ext16, msgpcode.Ext32:
		return d.skipBytes(1 + n) // the type byte, then the data
	}
	return d.skipBytes(n)
}

// skipItems skips the n values of an array or map at depth.
func (d *wireDecoder) skipItems(n, depth int) error {
	if n == 0 {
		return nil
	}
	if depth >= maxSkipDepth {
		return errTooDeep
	}
	if n > d.r.Len() { // every value takes at least a byte
		return fmt.Errorf("%d values in %d bytes", n, d.r.Len())
	}
	for range n {
		if err := d.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// skipBytes passes over n bytes, which must be there.
func (d *wireDecoder) skipBytes(n int) error {
	if n > d.r.Len() {
		return fmt.Errorf("length %d exceeds the %d bytes left", n, d.r.Len())
	}
	_, err := d.r.Seek(int64(n), io.SeekCurrent)
	return err
}
