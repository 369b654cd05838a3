// message.go: DESIGN §8 the messages between nodes: an envelope (protocol
// version, kind, cluster, sender) around one body per kind, each checked
// against the node's limits as it is decoded.
package dynamo

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// protocolVersion is carried by every message. A node rejects messages of
// another version with ErrProtocol. Version 1 had one envelope of 23 fields
// for every kind; version 2 has a body per kind.
const protocolVersion = 2

// kind is a message kind. ONLY APPEND TO THIS LIST: kinds are on the wire.
type kind uint8

const (
	kindInvalid    kind = iota
	kindGet             // getReq: read the replica's state of a key
	kindGetReply        // getReply
	kindReplicate       // replicateReq: merge a state into a key, or keep it as a hint
	kindAck             // ackReply: the request was applied durably
	kindPut             // putReq: coordinate a put or delete (forwarded by a non-replica)
	kindError           // errorReply: the request failed
	kindAERanges        // rangesReq: anti-entropy, hash ranges of the shared partitions
	kindAEHashes        // hashesReply
	kindAEKeys          // keysReq: anti-entropy, list the keys of partitions
	kindAEKeyList       // keyListReply
	kindAEExchange      // exchangeReq: merge states, reply with the merged ones
	kindAEStates        // statesReply
	kindPurge           // purgeReq: purge a key's tombstones if unchanged
	kindPing            // pingReq: are you up? answered with ackReply
	kindFold            // foldReq: drop dead entries of a key's vector (compact.go)
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

// Get flags. ONLY APPEND TO THIS LIST.
const (
	flagNoReadThrough uint8 = 1 << iota // answer from local data only
	flagWantActor                       // reply with the actor the replica would mint the key with
)

// envelope is a decoded message: who sent it, for which cluster, and its
// body. On the wire it is the msgpack array [version, kind, cluster, from,
// body]; fields after those are skipped (DESIGN §8).
type envelope struct {
	Cluster uint32 // wireCluster: the cluster name and partition count
	From    string // the sender's NodeID
	Body    body
}

// body is one kind's message. Its wire form is a msgpack array of its
// fields in order; new fields go at the end, and a decoder skips the
// fields it does not know and gives the ones it lacks their zero value.
type body interface {
	kind() kind
	encode(e *msgpack.Encoder)
	// field decodes field i, checking it against lim; it skips a field it
	// does not know.
	field(d *wireDecoder, i int, lim *wireLimits) error
	// check reports what is wrong with the decoded body as a whole.
	check(lim *wireLimits) error
}

// newBody returns an empty body of kind k, or nil for an unknown kind.
func newBody(k kind) body {
	switch k {
	case kindGet:
		return &getReq{}
	case kindGetReply:
		return &getReply{}
	case kindReplicate:
		return &replicateReq{}
	case kindAck:
		return &ackReply{}
	case kindPut:
		return &putReq{}
	case kindError:
		return &errorReply{}
	case kindAERanges:
		return &rangesReq{}
	case kindAEHashes:
		return &hashesReply{}
	case kindAEKeys:
		return &keysReq{}
	case kindAEKeyList:
		return &keyListReply{}
	case kindAEExchange:
		return &exchangeReq{}
	case kindAEStates:
		return &statesReply{}
	case kindPurge:
		return &purgeReq{}
	case kindPing:
		return &pingReq{}
	case kindFold:
		return &foldReq{}
	}
	return nil
}

// envelopeFields is how many fields an envelope has.
const envelopeFields = 5

// encodeMessage returns the wire form of b from the node from in cluster.
func encodeMessage(cluster uint32, from string, b body) []byte {
	p := getEncoder()
	e := p.enc
	_ = e.EncodeArrayLen(envelopeFields)
	_ = e.EncodeUint(protocolVersion)
	_ = e.EncodeUint(uint64(b.kind()))
	_ = e.EncodeUint(uint64(cluster))
	_ = e.EncodeString(from)
	b.encode(e)
	return p.finish()
}

// decodeMessage parses a message and checks its body against lim. Errors
// match ErrProtocol. raw is the caller's, who must not modify it while the
// message is in use: the states a body carries are subslices of it (a
// transport hands over each request and reply it delivers).
func decodeMessage(raw []byte, lim *wireLimits) (*envelope, error) {
	d := getDecoder(raw, true)
	defer d.release()
	n, err := d.DecodeArrayLen()
	if err != nil || n < envelopeFields {
		return nil, fmt.Errorf("%w: malformed envelope", ErrProtocol)
	}
	fail := func(field string, err error) (*envelope, error) {
		return nil, fmt.Errorf("%w: %s: %w", ErrProtocol, field, err)
	}
	v, err := d.DecodeUint64()
	if err != nil {
		return fail("version", err)
	}
	if v != protocolVersion {
		return nil, fmt.Errorf("%w: protocol version %d, this node speaks %d", ErrProtocol, v, protocolVersion)
	}
	k, err := d.u8()
	if err != nil {
		return fail("kind", err)
	}
	b := newBody(kind(k))
	if b == nil {
		return nil, fmt.Errorf("%w: unknown message kind %v", ErrProtocol, kind(k))
	}
	m := &envelope{Body: b}
	if m.Cluster, err = d.u32(); err != nil {
		return fail("cluster", err)
	}
	if m.From, err = d.boundedStr(maxNodeIDLen); err != nil {
		return fail("from", err)
	}
	fields, err := d.DecodeArrayLen()
	if err != nil || fields < 0 {
		return fail(kind(k).String(), fmt.Errorf("body is not an array: %v", err))
	}
	for i := range fields {
		if err := b.field(d, i, lim); err != nil {
			return fail(fmt.Sprintf("%v field %d", kind(k), i), err)
		}
	}
	if err := b.check(lim); err != nil {
		return fail(kind(k).String(), err)
	}
	for j := envelopeFields; j < n; j++ {
		if err := d.skip(0); err != nil {
			return fail("envelope", err)
		}
	}
	if !atEOF(d) {
		return nil, fmt.Errorf("%w: trailing bytes after the envelope", ErrProtocol)
	}
	return m, nil
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
