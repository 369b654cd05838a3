// context.go: §4.1, §4.4 the opaque causal context handed to callers by Get
// and given back to Put, and its text form.
package dynamo

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxContextText is the largest text form UnmarshalText accepts: 64 KiB.
// Limits.MaxContextSize bounds what Put accepts, usually far less.
const MaxContextText = 64 << 10

// Context text formats: the first element of the encoded context. Format 1
// is [1, cluster, vector]; format 2, which Get issues, is [2, cluster,
// vector, mac] (see contextKeys.mac); format 3, a dotted context that
// PutReturning may issue, is [3, cluster, vector, mac, dot actor, dot
// counter], its MAC over the dot too.
const (
	contextFormatV1     = 1
	contextFormat       = 2
	contextFormatDotted = 3
)

// contextMACSize is the length of a context's MAC: HMAC-SHA256 truncated to
// 128 bits.
const contextMACSize = 16

// contextMACInfo is the HKDF info string of the context MAC key; other keys
// derived from the same cluster secrets use other info strings.
const contextMACInfo = "dynamo/context-mac/v1"

// CausalContext is the causal context of a read (§4.1): the version vector
// that covers every sibling Get returned. Pass it back to Put or Delete so the write
// supersedes exactly what the caller saw; siblings it did not see survive
// beside the write.
//
// A CausalContext is opaque. It round-trips through MarshalText and UnmarshalText
// (URL-safe base64, fit for forms and cookies). Since it may pass through
// untrusted hands, it carries a MAC over the cluster name, its format and
// its whole vector, keyed by the cluster's secret (Config.Secrets): Put and
// Delete refuse a context that was forged or edited with ErrBadContext, and
// change nothing. The zero CausalContext means "I have seen nothing": a
// write with it supersedes nothing and becomes a sibling of whatever the key
// holds. A CausalContext is immutable and safe to share.
//
// It is not a context.Context: it carries no deadline and no cancellation,
// only what a reader saw, and every method that takes both takes the
// context.Context first.
//
// A CausalContext returned by PutReturning may be dotted (DESIGN §2.1): its
// vector plus the one version the Put created, which the vector cannot
// cover without also covering versions the writer never saw.
type CausalContext struct {
	cluster uint32 // clusterHash of the issuing Store; 0 for the zero CausalContext
	vv      versionVector
	dot     dot    // a version covered beside vv (format 3); Counter 0: none
	mac     []byte // contextMACSize bytes; nil in format 1
}

// Context is the former name of CausalContext.
//
// Deprecated: use CausalContext; the name Context read too much like
// context.Context beside it in every signature.
type Context = CausalContext

// IsZero reports whether c is the zero CausalContext.
func (c CausalContext) IsZero() bool { return len(c.vv) == 0 && c.dot.Counter == 0 }

// String returns the text form, or "" for the zero CausalContext.
func (c CausalContext) String() string {
	b, _ := c.MarshalText()
	return string(b)
}

// MarshalText encodes c as URL-safe base64 text. The zero CausalContext encodes to
// empty text.
func (c CausalContext) MarshalText() ([]byte, error) {
	if c.IsZero() {
		return []byte{}, nil
	}
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	switch {
	case c.mac == nil:
		_ = e.EncodeArrayLen(3)
		_ = e.EncodeUint(contextFormatV1)
	case c.dot.Counter != 0:
		_ = e.EncodeArrayLen(6)
		_ = e.EncodeUint(contextFormatDotted)
	default:
		_ = e.EncodeArrayLen(4)
		_ = e.EncodeUint(contextFormat)
	}
	_ = e.EncodeUint(uint64(c.cluster))
	encodeVV(e, c.vv)
	if c.mac != nil {
		_ = e.EncodeBytes(c.mac)
	}
	if c.mac != nil && c.dot.Counter != 0 {
		encodeDot(e, c.dot)
	}
	out := make([]byte, base64.RawURLEncoding.EncodedLen(buf.Len()))
	base64.RawURLEncoding.Encode(out, buf.Bytes())
	return out, nil
}

// UnmarshalText decodes text made by MarshalText. Empty text gives the zero
// Context. Malformed or oversized text returns an error matching ErrBadContext
// and leaves c unchanged. Whether the context belongs to the Store's cluster,
// and whether its MAC is valid, is checked when it is used.
func (c *CausalContext) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*c = CausalContext{}
		return nil
	}
	if len(text) > MaxContextText {
		return fmt.Errorf("%w: %d bytes of text, the limit is %d", ErrBadContext, len(text), MaxContextText)
	}
	raw := make([]byte, base64.RawURLEncoding.DecodedLen(len(text)))
	n, err := base64.RawURLEncoding.Decode(raw, text)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadContext, err)
	}
	d := newWireDecoder(raw[:n])
	fields, err := d.DecodeArrayLen()
	if err != nil || fields < 3 {
		return fmt.Errorf("%w: malformed", ErrBadContext)
	}
	f, err := d.DecodeUint64()
	want := 3
	switch {
	case err != nil:
		return fmt.Errorf("%w: malformed format", ErrBadContext)
	case f == contextFormat:
		want = 4
	case f == contextFormatDotted:
		want = 6
	case f != contextFormatV1:
		return fmt.Errorf("%w: unknown format %d", ErrBadContext, f)
	}
	if fields < want {
		return fmt.Errorf("%w: malformed", ErrBadContext)
	}
	cl, err := d.DecodeUint64()
	if err != nil || cl > 0xffffffff {
		return fmt.Errorf("%w: malformed cluster", ErrBadContext)
	}
	vv, err := decodeVV(d)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadContext, err)
	}
	if len(vv) == 0 && f != contextFormatDotted {
		return fmt.Errorf("%w: empty vector", ErrBadContext)
	}
	var mac []byte
	if f != contextFormatV1 {
		if mac, err = d.bytes(); err != nil || len(mac) != contextMACSize {
			return fmt.Errorf("%w: malformed MAC", ErrBadContext)
		}
	}
	var dt dot
	if f == contextFormatDotted {
		if dt, err = decodeDot(d); err != nil {
			return fmt.Errorf("%w: %w", ErrBadContext, err)
		}
	}
	for i := want; i < fields; i++ {
		if err := d.Skip(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadContext, err)
		}
	}
	if !atEOF(d) {
		return fmt.Errorf("%w: trailing bytes", ErrBadContext)
	}
	*c = CausalContext{cluster: uint32(cl), vv: vv, dot: dt, mac: mac}
	return nil
}

// contextKeys are the MAC keys of a Store's contexts, one per configured
// secret (the first signs, all verify), each with a pool of keyed hashes.
type contextKeys struct {
	cluster string
	pools   []*sync.Pool
}

// newContextKeys derives the context MAC keys of cluster from secrets with
// HKDF-SHA256 (salt: the cluster name, info: contextMACInfo). With no
// secret, the one key derives from the cluster name alone: contexts then
// carry a checksum that catches accidental edits, not a secret MAC.
func newContextKeys(cluster string, secrets [][]byte) (*contextKeys, error) {
	if len(secrets) == 0 {
		secrets = [][]byte{nil}
	}
	k := &contextKeys{cluster: cluster}
	for _, sec := range secrets {
		key, err := hkdf.Key(sha256.New, sec, []byte(cluster), contextMACInfo, 32)
		if err != nil {
			return nil, fmt.Errorf("dynamo: derive the context key: %w", err)
		}
		k.pools = append(k.pools, &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
	}
	return k, nil
}

// mac returns the MAC of the context vv (format contextFormat), or vv and
// the dot d (format contextFormatDotted, when d.Counter is not 0), under
// key i. It covers the cluster name, the format, the whole vector and the
// dot.
func (k *contextKeys) mac(i int, vv versionVector, d dot) []byte {
	h := k.pools[i].Get().(hash.Hash)
	defer k.pools[i].Put(h)
	h.Reset()
	f := uint64(contextFormat)
	if d.Counter != 0 {
		f = contextFormatDotted
	}
	var hdr []byte
	hdr = binary.AppendUvarint(hdr, f)
	hdr = binary.AppendUvarint(hdr, uint64(len(k.cluster)))
	h.Write(hdr)
	h.Write([]byte(k.cluster))
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	encodeVV(e, vv)
	if d.Counter != 0 {
		encodeDot(e, d)
	}
	h.Write(buf.Bytes())
	return h.Sum(nil)[:contextMACSize]
}

// valid reports whether mac is the MAC of vv and d under any of the keys.
func (k *contextKeys) valid(vv versionVector, d dot, mac []byte) bool {
	ok := false
	for i := range k.pools {
		ok = hmac.Equal(k.mac(i, vv, d), mac) || ok
	}
	return ok
}

// SetSecrets replaces the secrets that sign and verify contexts
// (Config.Secrets) while the Store runs: the first signs, all verify. To
// rotate, give every node [new, old], then, once the contexts the old one
// signed are no longer in use, [new]. secrets is copied. Node.RotateSecrets
// calls it with the transport's and gossip's rotation.
func (s *Store) SetSecrets(secrets [][]byte) error {
	c := s.cfg
	c.Secrets = secrets
	if errs := c.secretProblems(); len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	keys, err := newContextKeys(s.cfg.Cluster, secrets)
	if err != nil {
		return err
	}
	s.ctxKeys.Store(keys)
	return nil
}

// issueContext returns the CausalContext that Get hands out for vv, signed with
// the first secret.
func (s *Store) issueContext(vv versionVector) CausalContext {
	if len(vv) == 0 {
		return CausalContext{}
	}
	return CausalContext{cluster: s.cluster, vv: vv, mac: s.ctxKeys.Load().mac(0, vv, dot{})}
}

// checkContext checks a context a caller passed to Put or Delete: issued by
// this cluster, with a valid MAC (a context without one, format 1, only when
// no secret is configured), and within Limits.MaxContextSize.
func (s *Store) checkContext(c CausalContext) error {
	if c.IsZero() {
		return nil
	}
	if c.cluster != s.cluster {
		return fmt.Errorf("%w: issued by another cluster than %q", ErrBadContext, s.cfg.Cluster)
	}
	switch {
	case c.mac == nil && len(s.cfg.Secrets) > 0:
		return fmt.Errorf("%w: the context carries no MAC, and the cluster has a secret", ErrBadContext)
	case c.mac == nil && c.dot.Counter != 0:
		return fmt.Errorf("%w: a dotted context without a MAC", ErrBadContext)
	case c.mac != nil && !s.ctxKeys.Load().valid(c.vv, c.dot, c.mac):
		return fmt.Errorf("%w: the context's MAC does not match: it was edited, forged, or signed by a secret no longer configured", ErrBadContext)
	}
	return s.checkContextSize(c.vv, c.dot)
}

// checkContextSize bounds a context's vector and dot by
// Limits.MaxContextSize (also for a write forwarded by a peer, whose
// caller's context that peer checked).
func (s *Store) checkContextSize(vv versionVector, d dot) error {
	if n := vvTextSize(vv) + dotTextSize(d); n > s.cfg.Limits.MaxContextSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadContext, n, s.cfg.Limits.MaxContextSize)
	}
	return nil
}

// vvTextSize is the size of a context's vector on the wire, checked against
// Limits.MaxContextSize.
func vvTextSize(vv versionVector) int {
	n := 0
	for _, e := range vv {
		n += len(e.Actor) + 9
	}
	return n
}

// clusterHash names a cluster in contexts and envelopes. It is never 0.
func clusterHash(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	if v := h.Sum32(); v != 0 {
		return v
	}
	return 1
}
