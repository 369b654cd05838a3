// wire.go: the msgpack encodings the root package owns: a key's stored state
// (§4.4) and the envelope of every message between nodes (DESIGN §8).
package dynamo

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// protocolVersion is carried by every message. A node rejects messages from a
// newer protocol with ErrProtocol.
const protocolVersion = 1

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

// kind is a message kind. ONLY APPEND TO THIS LIST: kinds are on the wire.
type kind uint8

const (
	kindInvalid    kind = iota
	kindGet             // read the replica's state of Key
	kindGetReply        // State holds the replica's encoded state (empty: absent)
	kindReplicate       // merge State into the replica's state of Key
	kindAck             // the request was applied durably
	kindPut             // coordinate a put of Value/Tombstone with Context (forwarded)
	kindError           // the request failed: Code, Msg, Need, Got
	kindAERanges        // anti-entropy: hash each of Ranges over the partition set
	kindAEHashes        // reply: Hashes, one per range
	kindAEKeys          // anti-entropy: list the keys of Parts with their digests
	kindAEKeyList       // reply: Keys and Hashes (digests)
	kindAEExchange      // anti-entropy: merge States into Keys, reply with the merged states of Keys
	kindAEStates        // reply: States, one per requested key (empty: absent)
	kindPurge           // purge Key's tombstones if the local state's digest is Hashes[0]
	kindPing            // are you up? answered with kindAck
	kindFold            // drop from Key's vector the entries of Context it holds dead (compact.go)
)

func (k kind) String() string {
	switch k {
	case kindGet:
		return "get"
	case kindGetReply:
		return "get-reply"
	case kindReplicate:
		return "replicate"
	case kindAck:
		return "ack"
	case kindPut:
		return "put"
	case kindError:
		return "error"
	case kindAERanges, kindAEHashes, kindAEKeys, kindAEKeyList, kindAEExchange, kindAEStates:
		return fmt.Sprintf("anti-entropy(%d)", uint8(k))
	case kindPurge:
		return "purge"
	case kindPing:
		return "ping"
	case kindFold:
		return "fold"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// errCode carries a sentinel error across the wire. ONLY APPEND TO THIS LIST.
type errCode uint8

const (
	codeOther errCode = iota
	codeWriteQuorum
	codeTooManySiblings
	codeValueTooLarge
	codeBadContext
	codeClosed
	codeNoReplica
	codeCorrupt
	codeProtocol
	codeHintsFull
)

var codeErrors = map[errCode]error{
	codeTooManySiblings: ErrTooManySiblings,
	codeValueTooLarge:   ErrValueTooLarge,
	codeBadContext:      ErrBadContext,
	codeClosed:          ErrClosed,
	codeNoReplica:       ErrNoReplica,
	codeCorrupt:         ErrCorrupt,
	codeProtocol:        ErrProtocol,
	codeHintsFull:       ErrHintsFull,
}

// message is the envelope of every request and reply. Fields are encoded as a
// msgpack array in this order; new fields go at the end, and decoders skip
// trailing fields they do not know.
type message struct {
	Version   uint8
	Kind      kind
	Cluster   uint32 // hash of Config.Cluster; 0 in errors about the envelope itself
	Key       []byte
	State     []byte // an encoded state (kindGetReply, kindReplicate)
	Value     []byte // kindPut
	Tombstone bool   // kindPut: a delete
	Context   versionVector
	W         int   // kindPut: write quorum asked for
	TimeoutMS int64 // kindPut: the coordinator's time budget
	Code      errCode
	Msg       string
	Need, Got int      // codeWriteQuorum
	Hint      string   // kindReplicate: store as a hint for the node with this ID
	Flags     uint8    // kindPut: flagPrimariesOnly
	Parts     []uint32 // anti-entropy: explicit partition set, or partitions to list
	Ranges    []uint32 // kindAERanges: lo, hi index pairs over the partition set
	Hashes    []uint64 // range hashes, key digests, or a purge digest
	RingHash  uint64   // anti-entropy: the sender's ring, when Parts is implicit
	Keys      [][]byte
	States    [][]byte
	ReqID     uint64 // kindPut: the forwarding node's request ID, for deduplication
}

const messageFields = 23

// maxDecodedList bounds every list in a message.
const maxDecodedList = 1 << 20

// Message flags. ONLY APPEND TO THIS LIST.
const (
	flagPrimariesOnly uint8 = 1 << iota // kindPut: no fallbacks
	flagPartRuns                        // anti-entropy: Parts holds [lo, hi) runs
	flagNoReadThrough                   // kindGet: answer from local data only
	flagPushOnly                        // kindAEExchange: merge States, reply with nothing
	flagWantActor                       // kindGet: reply with Hint set to the actor the replica would mint Key with
)

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

func encodeMessage(m *message) []byte {
	p := getEncoder()
	e := p.enc
	_ = e.EncodeArrayLen(messageFields)
	_ = e.EncodeUint(uint64(m.Version))
	_ = e.EncodeUint(uint64(m.Kind))
	_ = e.EncodeUint(uint64(m.Cluster))
	_ = e.EncodeBytes(m.Key)
	_ = e.EncodeBytes(m.State)
	_ = e.EncodeBytes(m.Value)
	_ = e.EncodeBool(m.Tombstone)
	encodeVV(e, m.Context)
	_ = e.EncodeInt(int64(m.W))
	_ = e.EncodeInt(m.TimeoutMS)
	_ = e.EncodeUint(uint64(m.Code))
	_ = e.EncodeString(m.Msg)
	_ = e.EncodeInt(int64(m.Need))
	_ = e.EncodeInt(int64(m.Got))
	_ = e.EncodeString(m.Hint)
	_ = e.EncodeUint(uint64(m.Flags))
	encodeUints(e, m.Parts)
	encodeUints(e, m.Ranges)
	encodeUints(e, m.Hashes)
	_ = e.EncodeUint(m.RingHash)
	encodeByteLists(e, m.Keys)
	encodeByteLists(e, m.States)
	_ = e.EncodeUint(m.ReqID)
	return p.finish()
}

// decodeMessage parses b. Errors match ErrProtocol.
func decodeMessage(b []byte) (*message, error) {
	d := newWireDecoder(b)
	m := &message{}
	n, err := d.DecodeArrayLen()
	if err != nil || n < 2 {
		return nil, fmt.Errorf("%w: malformed envelope", ErrProtocol)
	}
	fail := func(field string, err error) (*message, error) {
		return nil, fmt.Errorf("%w: field %s: %w", ErrProtocol, field, err)
	}
	u, err := d.DecodeUint64()
	if err != nil {
		return fail("version", err)
	}
	if u != protocolVersion {
		return nil, fmt.Errorf("%w: protocol version %d, this node speaks %d", ErrProtocol, u, protocolVersion)
	}
	m.Version = uint8(u)
	if u, err = d.DecodeUint64(); err != nil {
		return fail("kind", err)
	}
	if u > 0xff {
		return fail("kind", fmt.Errorf("%d out of range", u))
	}
	m.Kind = kind(u)
	for i := 2; i < n; i++ {
		switch i {
		case 2:
			u, err = d.DecodeUint64()
			if err == nil && u > 0xffffffff {
				err = fmt.Errorf("cluster %d out of range", u)
			}
			m.Cluster = uint32(u)
		case 3:
			m.Key, err = d.bytes()
		case 4:
			m.State, err = d.bytes()
		case 5:
			m.Value, err = d.bytes()
		case 6:
			m.Tombstone, err = d.DecodeBool()
		case 7:
			m.Context, err = decodeVV(d)
		case 8:
			var v int64
			v, err = d.DecodeInt64()
			m.W = int(v)
		case 9:
			m.TimeoutMS, err = d.DecodeInt64()
		case 10:
			u, err = d.DecodeUint64()
			if err == nil && u > 0xff {
				err = fmt.Errorf("code %d out of range", u)
			}
			m.Code = errCode(u)
		case 11:
			m.Msg, err = d.str()
		case 12:
			var v int64
			v, err = d.DecodeInt64()
			m.Need = int(v)
		case 13:
			var v int64
			v, err = d.DecodeInt64()
			m.Got = int(v)
		case 14:
			m.Hint, err = d.str()
		case 15:
			u, err = d.DecodeUint64()
			if err == nil && u > 0xff {
				err = fmt.Errorf("flags %d out of range", u)
			}
			m.Flags = uint8(u)
		case 16:
			m.Parts, err = decodeUints[uint32](d)
		case 17:
			m.Ranges, err = decodeUints[uint32](d)
		case 18:
			m.Hashes, err = decodeUints[uint64](d)
		case 19:
			m.RingHash, err = d.DecodeUint64()
		case 20:
			m.Keys, err = decodeByteLists(d)
		case 21:
			m.States, err = decodeByteLists(d)
		case 22:
			m.ReqID, err = d.DecodeUint64()
		default:
			err = d.Skip()
		}
		if err != nil {
			return fail(fmt.Sprint(i), err)
		}
	}
	if !atEOF(d) {
		return nil, fmt.Errorf("%w: trailing bytes after the envelope", ErrProtocol)
	}
	return m, nil
}

func encodeUints[T uint32 | uint64](e *msgpack.Encoder, v []T) {
	_ = e.EncodeArrayLen(len(v))
	for _, x := range v {
		_ = e.EncodeUint(uint64(x))
	}
}

func decodeUints[T uint32 | uint64](d *wireDecoder) ([]T, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n > maxDecodedList {
		return nil, fmt.Errorf("list of %d elements", n)
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

func decodeByteLists(d *wireDecoder) ([][]byte, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n > maxDecodedList {
		return nil, fmt.Errorf("list of %d elements", n)
	}
	out := make([][]byte, 0, min(n, 4096))
	for range n {
		b, err := d.bytes()
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
	if len(b) == 0 {
		return state{}, nil
	}
	st, err := decodeStateFrom(newWireDecoder(b), b)
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
		if err := d.Skip(); err != nil {
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
		if err := d.Skip(); err != nil {
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
}

func newWireDecoder(b []byte) *wireDecoder {
	r := bytes.NewReader(b)
	return &wireDecoder{Decoder: msgpack.NewDecoder(r), r: r}
}

// bytes decodes a bin or str value as a new slice (nil for msgpack nil).
func (d *wireDecoder) bytes() ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil || n < 0 {
		return nil, err
	}
	if n > d.r.Len() {
		return nil, fmt.Errorf("length %d exceeds the %d bytes left", n, d.r.Len())
	}
	b := make([]byte, n)
	_, err = io.ReadFull(d.r, b)
	return b, err
}

// str decodes a str or bin value as a string.
func (d *wireDecoder) str() (string, error) {
	b, err := d.bytes()
	return string(b), err
}
