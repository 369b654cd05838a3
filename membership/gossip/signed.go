// Sealed ring records: a record signed by the node it describes, and a removal signed by the member that removed it (§4.8).

package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Signer signs this node's ring records and checks the signatures on
// other nodes' records, for Config.Signer. auth.Credentials implements it:
// its signatures are made with the node's certificate key, and verified
// against the cluster's CA, which binds each key to one NodeID.
type Signer interface {
	// Sign signs msg with this node's key. It returns the signature and
	// the certificate chain (DER, leaf first) that binds the key to this
	// node's ID. msg is only read; the chain is shared and only read.
	Sign(msg []byte) (sig []byte, chain [][]byte, err error)
	// Verify checks that sig is a signature of msg by the key of chain's
	// leaf, and that the chain was valid at time at (when msg was signed)
	// for a node of this cluster; it returns that node's ID. The slices
	// come from the network: Verify bounds them before parsing.
	Verify(msg, sig []byte, chain [][]byte, at time.Time) (nodeID string, err error)
}

// The kinds of envelope. ONLY APPEND TO THIS LIST.
const (
	// sealRecord: Body is a ring record (an entry), signed by the node it
	// describes.
	sealRecord uint8 = 1
	// sealRemoval: Body is the sealRecord envelope of the node removed,
	// signed by the member that removed it (Gossip.Remove). It marks that
	// record left.
	sealRemoval uint8 = 2
)

// Bounds on an envelope, checked before anything in it is parsed.
const (
	maxBodyLen    = 192 << 10 // a record, or a whole envelope inside a removal
	maxSigLen     = 1 << 10
	maxChainCerts = 8
	maxCertLen    = 16 << 10
	maxSealLen    = 2 * maxBodyLen
	// maxSignedAhead is how far past the receiver's clock a signature may
	// be dated; a later one is refused.
	maxSignedAhead = time.Hour
	// maxBroadcastSeal bounds a sealed record gossiped in memberlist's UDP
	// broadcasts (about 1.4 KB a packet). A larger one (a certificate
	// chain of three secrets, or an operator's RSA chain) travels by TCP:
	// its owner sends it to every live peer, and push/pull exchanges relay it.
	maxBroadcastSeal = 1200
)

// sealContext opens the bytes an envelope's signature covers.
const sealContext = "dynamo/ring-record/v1\x00"

// errForged is wrapped by the error for a sealed record whose signature
// does not check out, or was made by a node other than its owner.
var errForged = errors.New("ring record not signed by its owner")

// envelope is a sealed record as it travels.
type envelope struct {
	_msgpack struct{} `msgpack:",as_array"`

	Kind     uint8
	Body     []byte
	SignedAt int64 // unix ms
	Sig      []byte
	Chain    [][]byte
}

// signed returns what e's signature covers: the context, the kind, the
// time and the body.
func (e *envelope) signed() []byte {
	b := make([]byte, 0, len(sealContext)+1+8+len(e.Body))
	b = append(b, sealContext...)
	b = append(b, e.Kind)
	b = binary.BigEndian.AppendUint64(b, uint64(e.SignedAt))
	return append(b, e.Body...)
}

// sealed is a record's envelope as a view keeps and relays it.
type sealed struct {
	wire []byte // the encoded envelope
	at   int64  // its SignedAt
}

// seal signs body as an envelope of kind and returns it encoded.
func seal(s Signer, kind uint8, body []byte, now time.Time) (sealed, error) {
	env := envelope{Kind: kind, Body: body, SignedAt: now.UnixMilli()}
	sig, chain, err := s.Sign(env.signed())
	if err != nil {
		return sealed{}, fmt.Errorf("membership: sign ring record: %w", err)
	}
	env.Sig, env.Chain = sig, chain
	wire, err := encodeEnvelope(env)
	if err != nil {
		return sealed{}, err
	}
	return sealed{wire: wire, at: env.SignedAt}, nil
}

// encodeEnvelope encodes env.
func encodeEnvelope(env envelope) ([]byte, error) {
	wire, err := msgpack.Marshal(&env)
	if err != nil {
		return nil, fmt.Errorf("membership: encode sealed record: %w", err)
	}
	return wire, nil
}

// sealEntry seals e, signed by its own node.
func sealEntry(s Signer, e entry, now time.Time) (sealed, error) {
	body, err := msgpack.Marshal(e)
	if err != nil {
		return sealed{}, fmt.Errorf("membership: encode ring record: %w", err)
	}
	return seal(s, sealRecord, body, now)
}

// decodeEnvelope decodes one envelope from all of b, bounding every field
// before reading it. It verifies nothing.
func decodeEnvelope(b []byte) (envelope, error) {
	var env envelope
	err := decodeWhole(b, func(d *msgpack.Decoder) error {
		n, err := d.DecodeArrayLen()
		if err != nil {
			return err
		}
		if n < 5 {
			return fmt.Errorf("envelope of %d fields, want at least 5", n)
		}
		if env.Kind, err = d.DecodeUint8(); err != nil {
			return fmt.Errorf("envelope kind: %w", err)
		}
		if env.Body, err = readBytes(d, maxBodyLen, "envelope body"); err != nil {
			return err
		}
		if env.SignedAt, err = d.DecodeInt64(); err != nil {
			return fmt.Errorf("envelope time: %w", err)
		}
		if env.Sig, err = readBytes(d, maxSigLen, "envelope signature"); err != nil {
			return err
		}
		certs, err := d.DecodeArrayLen()
		if err != nil {
			return fmt.Errorf("envelope chain: %w", err)
		}
		if certs < 1 || certs > maxChainCerts {
			return fmt.Errorf("envelope chain of %d certificates, want 1 to %d", certs, maxChainCerts)
		}
		env.Chain = make([][]byte, certs)
		for i := range env.Chain {
			if env.Chain[i], err = readBytes(d, maxCertLen, "envelope certificate"); err != nil {
				return err
			}
		}
		for range n - 5 {
			if err := skipValue(d, maxSkipDepth); err != nil {
				return fmt.Errorf("envelope, field of a later release: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return envelope{}, fmt.Errorf("%w: %w", errMalformed, err)
	}
	return env, nil
}

// opened is a sealed record decoded, not yet verified.
type opened struct {
	rec   entry    // the record it claims; for a removal, the owner's, left
	env   envelope // the outer envelope
	owner envelope // the owner's envelope: env itself, or a removal's body
	seal  sealed
}

// openSealed decodes a sealed record (envelope, body and, for a removal,
// the owner's envelope inside it) without verifying it.
func openSealed(wire []byte) (opened, error) {
	env, err := decodeEnvelope(wire)
	if err != nil {
		return opened{}, err
	}
	o := opened{env: env, owner: env, seal: sealed{wire: wire, at: env.SignedAt}}
	switch env.Kind {
	case sealRecord:
	case sealRemoval:
		if o.owner, err = decodeEnvelope(env.Body); err != nil {
			return opened{}, fmt.Errorf("removal of: %w", err)
		}
		if o.owner.Kind != sealRecord {
			return opened{}, fmt.Errorf("%w: removal of an envelope of kind %d", errMalformed, o.owner.Kind)
		}
	default:
		return opened{}, fmt.Errorf("%w: envelope of kind %d", errMalformed, env.Kind)
	}
	if err := decodeWhole(o.owner.Body, o.rec.DecodeMsgpack); err != nil {
		return opened{}, fmt.Errorf("%w: sealed ring record: %w", errMalformed, err)
	}
	if o.rec.ID == "" {
		return opened{}, fmt.Errorf("%w: sealed ring record without an ID", errMalformed)
	}
	if env.Kind == sealRemoval {
		o.rec.Left = true
	}
	return o, nil
}

// verify checks o's signatures: the record's by the node it describes and,
// for a removal, the removal's by a node of the cluster, which it returns
// ("" for a record). Neither may be dated more than maxSignedAhead past now.
func (o *opened) verify(s Signer, now time.Time) (remover string, err error) {
	check := func(env *envelope) (string, error) {
		at := time.UnixMilli(env.SignedAt)
		if at.After(now.Add(maxSignedAhead)) {
			return "", fmt.Errorf("%w: signed at %v, later than this node's clock allows", errForged, at.UTC())
		}
		id, err := s.Verify(env.signed(), env.Sig, env.Chain, at)
		if err != nil {
			return "", fmt.Errorf("%w: %w", errForged, err)
		}
		return id, nil
	}
	owner, err := check(&o.owner)
	if err != nil {
		return "", err
	}
	if owner != o.rec.ID {
		return "", fmt.Errorf("%w: the record of %q is signed by %q", errForged, o.rec.ID, owner)
	}
	if o.env.Kind != sealRemoval {
		return "", nil
	}
	return check(&o.env)
}

// decodeSealedState decodes a push/pull state of sealed records: an array
// of envelopes, each as msgpack bin. It verifies nothing.
func decodeSealedState(b []byte) ([][]byte, error) {
	var out [][]byte
	err := decodeStateOf(signedStateV1, b, func(d *msgpack.Decoder) error {
		w, err := readBytes(d, maxSealLen, "sealed record")
		out = append(out, w)
		return err
	})
	return out, err
}
