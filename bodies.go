// bodies.go: DESIGN §8 one body per message kind, each with its wire
// fields in order and the bounds a decoder holds it to.
package dynamo

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// wireLimits are the bounds a node holds every decoded message to: the
// Store's Limits, and the largest state a frame carries. A stored state may
// outgrow Limits.MaxStateSize through merges (MaxStateSize bounds what a Put
// may create), and replicas must still exchange it, so states are bounded
// by the frame instead.
type wireLimits struct {
	key, value, context, state int
}

// limitsFor returns the wire bounds of a Store with limits l whose
// transport carries frames of up to frame bytes.
func limitsFor(l Limits, frame int) *wireLimits {
	return &wireLimits{key: l.MaxKeySize, value: l.MaxValueSize, context: l.MaxContextSize, state: max(l.MaxStateSize, frame)}
}

// List bounds of the bodies: what the senders in this package never exceed,
// with room to spare.
const (
	maxNodeIDLen   = 128      // Config.NodeID
	maxMsgLen      = 64 << 10 // an error's text
	maxWireList    = 1 << 20  // keys listed in one keyListReply
	maxBatchList   = 1 << 14  // keys or states of one exchange
	maxRangeList   = 4 * aeBatch
	maxPartsListed = 2 * aeBatch
)

// getReq asks a replica for its state of Key.
type getReq struct {
	Key   []byte
	Flags uint8 // flagNoReadThrough, flagWantActor
}

func (*getReq) kind() kind { return kindGet }
func (b *getReq) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeBytes(b.Key)
	_ = e.EncodeUint(uint64(b.Flags))
}
func (b *getReq) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.Key, err = d.key(lim)
	case 1:
		b.Flags, err = d.u8()
	default:
		err = d.skip(0)
	}
	return err
}
func (b *getReq) check(*wireLimits) error { return needKey(b.Key) }

// getReply is a replica's encoded state of the key (empty: absent) and,
// when asked (flagWantActor), the actor it would mint the key's next
// version with ("" for a fresh epoch).
type getReply struct {
	State []byte
	Actor string
}

func (*getReply) kind() kind { return kindGetReply }
func (b *getReply) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeBytes(b.State)
	_ = e.EncodeString(b.Actor)
}
func (b *getReply) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.State, err = d.blob(lim.state)
	case 1:
		b.Actor, err = d.boundedStr(maxActorLen)
	default:
		err = d.skip(0)
	}
	return err
}
func (*getReply) check(*wireLimits) error { return nil }

// replicateReq merges State into the replica's state of Key, or, with
// HintFor, keeps it as a hint for that node (§4.6).
type replicateReq struct {
	Key     []byte
	State   []byte
	HintFor string
}

func (*replicateReq) kind() kind { return kindReplicate }
func (b *replicateReq) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(3)
	_ = e.EncodeBytes(b.Key)
	_ = e.EncodeBytes(b.State)
	_ = e.EncodeString(b.HintFor)
}
func (b *replicateReq) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.Key, err = d.key(lim)
	case 1:
		b.State, err = d.blob(lim.state)
	case 2:
		b.HintFor, err = d.boundedStr(maxNodeIDLen)
	default:
		err = d.skip(0)
	}
	return err
}
func (b *replicateReq) check(*wireLimits) error { return needKey(b.Key) }

// ackReply says a request was applied durably. The ack of a forwarded put
// carries the dot of the version it created (DESIGN §2.1); other acks carry
// none and encode no fields.
type ackReply struct {
	Dot dot
}

func (*ackReply) kind() kind { return kindAck }
func (b *ackReply) encode(e *msgpack.Encoder) {
	if b.Dot.Counter == 0 {
		_ = e.EncodeArrayLen(0)
		return
	}
	_ = e.EncodeArrayLen(2)
	encodeDot(e, b.Dot)
}
func (b *ackReply) field(d *wireDecoder, i int, _ *wireLimits) (err error) {
	switch i {
	case 0:
		b.Dot.Actor, err = d.boundedStr(maxActorLen)
	case 1:
		b.Dot.Counter, err = d.DecodeUint64()
	default:
		err = d.skip(0)
	}
	return err
}
func (b *ackReply) check(*wireLimits) error { return checkOptDot(b.Dot) }

// pingReq asks whether a node is up; it answers with an ackReply.
type pingReq struct{}

func (*pingReq) kind() kind                                       { return kindPing }
func (*pingReq) encode(e *msgpack.Encoder)                        { _ = e.EncodeArrayLen(0) }
func (*pingReq) field(d *wireDecoder, _ int, _ *wireLimits) error { return d.skip(0) }
func (*pingReq) check(*wireLimits) error                          { return nil }

// putReq hands a write to a replica of Key, which coordinates it (only a
// replica mints versions). ReqID deduplicates a request delivered twice.
type putReq struct {
	Key           []byte
	Value         []byte
	Tombstone     bool
	Context       versionVector
	W             int
	TimeoutMS     int64 // the forwarding node's time budget
	PrimariesOnly bool
	ReqID         uint64
	ContextDot    dot // the dot of a dotted context (DESIGN §2.1); zero: none
}

func (*putReq) kind() kind { return kindPut }
func (b *putReq) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(10)
	_ = e.EncodeBytes(b.Key)
	_ = e.EncodeBytes(b.Value)
	_ = e.EncodeBool(b.Tombstone)
	encodeVV(e, b.Context)
	_ = e.EncodeInt(int64(b.W))
	_ = e.EncodeInt(b.TimeoutMS)
	_ = e.EncodeBool(b.PrimariesOnly)
	_ = e.EncodeUint(b.ReqID)
	encodeDot(e, b.ContextDot)
}
func (b *putReq) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.Key, err = d.key(lim)
	case 1:
		if b.Value, err = d.boundedBytes(lim.value); errors.Is(err, errOverLimit) {
			err = fmt.Errorf("%w: %w", ErrValueTooLarge, err)
		}
	case 2:
		b.Tombstone, err = d.DecodeBool()
	case 3:
		b.Context, err = decodeVV(d)
	case 4:
		b.W, err = d.smallInt()
	case 5:
		b.TimeoutMS, err = d.DecodeInt64()
	case 6:
		b.PrimariesOnly, err = d.DecodeBool()
	case 7:
		b.ReqID, err = d.DecodeUint64()
	case 8:
		b.ContextDot.Actor, err = d.boundedStr(maxActorLen)
	case 9:
		b.ContextDot.Counter, err = d.DecodeUint64()
	default:
		err = d.skip(0)
	}
	return err
}
func (b *putReq) check(lim *wireLimits) error {
	if err := needKey(b.Key); err != nil {
		return err
	}
	if err := checkOptDot(b.ContextDot); err != nil {
		return err
	}
	if n := vvTextSize(b.Context) + dotTextSize(b.ContextDot); n > lim.context {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadContext, n, lim.context)
	}
	return nil
}

// errorReply carries a failed request's error: its code (a sentinel), its
// text, and for codeWriteQuorum how far the write got.
type errorReply struct {
	Code      errCode
	Msg       string
	Need, Got int
}

func (*errorReply) kind() kind { return kindError }
func (b *errorReply) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(4)
	_ = e.EncodeUint(uint64(b.Code))
	_ = e.EncodeString(b.Msg)
	_ = e.EncodeInt(int64(b.Need))
	_ = e.EncodeInt(int64(b.Got))
}
func (b *errorReply) field(d *wireDecoder, i int, _ *wireLimits) (err error) {
	switch i {
	case 0:
		var c uint8
		c, err = d.u8()
		b.Code = errCode(c)
	case 1:
		b.Msg, err = d.boundedStr(maxMsgLen)
	case 2:
		b.Need, err = d.smallInt()
	case 3:
		b.Got, err = d.smallInt()
	default:
		err = d.skip(0)
	}
	return err
}
func (*errorReply) check(*wireLimits) error { return nil }

// purgeReq purges Key's tombstones if the replica's stored state still has
// this digest (tombstone.go).
type purgeReq struct {
	Key    []byte
	Digest uint64
}

func (*purgeReq) kind() kind { return kindPurge }
func (b *purgeReq) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeBytes(b.Key)
	_ = e.EncodeUint(b.Digest)
}
func (b *purgeReq) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.Key, err = d.key(lim)
	case 1:
		b.Digest, err = d.DecodeUint64()
	default:
		err = d.skip(0)
	}
	return err
}
func (b *purgeReq) check(*wireLimits) error {
	if b.Digest == 0 {
		return errors.New("purge without a digest")
	}
	return needKey(b.Key)
}

// foldReq drops from Key's vector each of Entries the replica holds dead
// at exactly that counter (compact.go).
type foldReq struct {
	Key     []byte
	Entries versionVector
}

func (*foldReq) kind() kind { return kindFold }
func (b *foldReq) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeBytes(b.Key)
	encodeVV(e, b.Entries)
}
func (b *foldReq) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.Key, err = d.key(lim)
	case 1:
		b.Entries, err = decodeVV(d)
	default:
		err = d.skip(0)
	}
	return err
}
func (b *foldReq) check(*wireLimits) error { return needKey(b.Key) }

// needKey reports an absent key (the decoders bound its size).
func needKey(k []byte) error {
	if len(k) == 0 {
		return errors.New("no key")
	}
	return nil
}

// rangesReq asks for the hash of each [lo, hi) index range of Ranges over
// a partition set: the partitions of Runs ([lo, hi) runs) when Explicit,
// or else the partitions the sender and receiver share as primaries, which
// they compute alike only from rings with the same RingHash.
type rangesReq struct {
	Explicit bool
	Runs     []uint32
	RingHash uint64
	Ranges   []uint32
}

func (*rangesReq) kind() kind { return kindAERanges }
func (b *rangesReq) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(4)
	_ = e.EncodeBool(b.Explicit)
	encodeUints(e, b.Runs)
	_ = e.EncodeUint(b.RingHash)
	encodeUints(e, b.Ranges)
}
func (b *rangesReq) field(d *wireDecoder, i int, _ *wireLimits) (err error) {
	switch i {
	case 0:
		b.Explicit, err = d.DecodeBool()
	case 1:
		b.Runs, err = decodeUints[uint32](d, 2*maxPartitions)
	case 2:
		b.RingHash, err = d.DecodeUint64()
	case 3:
		b.Ranges, err = decodeUints[uint32](d, maxRangeList)
	default:
		err = d.skip(0)
	}
	return err
}
func (b *rangesReq) check(*wireLimits) error {
	if len(b.Ranges)%2 != 0 || len(b.Runs)%2 != 0 {
		return errors.New("odd range list")
	}
	return nil
}

// hashesReply holds one hash per requested range.
type hashesReply struct{ Hashes []uint64 }

func (*hashesReply) kind() kind { return kindAEHashes }
func (b *hashesReply) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(1)
	encodeUints(e, b.Hashes)
}
func (b *hashesReply) field(d *wireDecoder, i int, _ *wireLimits) (err error) {
	if i == 0 {
		b.Hashes, err = decodeUints[uint64](d, maxRangeList/2)
		return err
	}
	return d.skip(0)
}
func (*hashesReply) check(*wireLimits) error { return nil }

// keysReq asks for the keys of Parts, in order, with their digests, in a
// reply bounded in bytes; the first partition is listed from after After
// (all of it when After is empty).
type keysReq struct {
	Parts []uint32
	After []byte
}

func (*keysReq) kind() kind { return kindAEKeys }
func (b *keysReq) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(2)
	encodeUints(e, b.Parts)
	_ = e.EncodeBytes(b.After)
}
func (b *keysReq) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.Parts, err = decodeUints[uint32](d, maxPartsListed)
	case 1:
		b.After, err = d.boundedBytes(lim.key)
	default:
		err = d.skip(0)
	}
	return err
}
func (*keysReq) check(*wireLimits) error { return nil }

// keyListReply lists keys and their digests; Whole says how many of the
// requested partitions were listed whole (the next one is listed up to the
// last key).
type keyListReply struct {
	Keys    [][]byte
	Digests []uint64
	Whole   int
}

func (*keyListReply) kind() kind { return kindAEKeyList }
func (b *keyListReply) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(3)
	encodeByteLists(e, b.Keys)
	encodeUints(e, b.Digests)
	_ = e.EncodeInt(int64(b.Whole))
}
func (b *keyListReply) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.Keys, err = decodeByteLists(d, maxWireList, lim.key)
	case 1:
		b.Digests, err = decodeUints[uint64](d, maxWireList)
	case 2:
		b.Whole, err = d.smallInt()
	default:
		err = d.skip(0)
	}
	return err
}
func (b *keyListReply) check(*wireLimits) error {
	if len(b.Keys) != len(b.Digests) {
		return fmt.Errorf("%d keys, %d digests", len(b.Keys), len(b.Digests))
	}
	for _, k := range b.Keys {
		if err := needKey(k); err != nil {
			return err
		}
	}
	return nil
}

// exchangeReq pushes states (empty: none) of Keys for the receiver to
// merge; it replies with its merged states where they differ, unless
// PushOnly (hint delivery, transfers to new owners).
type exchangeReq struct {
	Keys     [][]byte
	States   [][]byte
	PushOnly bool
}

func (*exchangeReq) kind() kind { return kindAEExchange }
func (b *exchangeReq) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(3)
	encodeByteLists(e, b.Keys)
	encodeByteLists(e, b.States)
	_ = e.EncodeBool(b.PushOnly)
}
func (b *exchangeReq) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	switch i {
	case 0:
		b.Keys, err = decodeByteLists(d, maxBatchList, lim.key)
	case 1:
		b.States, err = decodeByteLists(d, maxBatchList, lim.state)
	case 2:
		b.PushOnly, err = d.DecodeBool()
	default:
		err = d.skip(0)
	}
	return err
}
func (b *exchangeReq) check(*wireLimits) error {
	if len(b.Keys) != len(b.States) {
		return fmt.Errorf("%d keys, %d states", len(b.Keys), len(b.States))
	}
	for _, k := range b.Keys {
		if err := needKey(k); err != nil {
			return err
		}
	}
	return nil
}

// statesReply holds the merged states of the first len(States) keys of an
// exchange (empty: the same as pushed, or absent).
type statesReply struct{ States [][]byte }

func (*statesReply) kind() kind { return kindAEStates }
func (b *statesReply) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(1)
	encodeByteLists(e, b.States)
}
func (b *statesReply) field(d *wireDecoder, i int, lim *wireLimits) (err error) {
	if i == 0 {
		b.States, err = decodeByteLists(d, maxBatchList, lim.state)
		return err
	}
	return d.skip(0)
}
func (*statesReply) check(*wireLimits) error { return nil }
