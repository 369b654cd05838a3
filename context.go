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
// vector, mac] (see contextMAC).
const (
	contextFormatV1 = 1
	contextFormat   = 2
)

// contextMACSize is the length of a context's MAC: HMAC-SHA256 truncated to
// 128 bits.
const contextMACSize = 16

// contextMACInfo is the HKDF info string of the context MAC key; other keys
// derived from the same cluster secrets use other info strings.
const contextMACInfo = "dynamo/context-mac/v1"

// Context is the causal context of a read: the version vector that covers
// every sibling Get returned. Pass it back to Put or Delete so the write
// supersedes exactly what the caller saw; siblings it did not see survive
// beside the write.
//
// A Context is opaque. It round-trips through MarshalText and UnmarshalText
// (URL-safe base64, fit for forms and cookies). Since it may pass through
// untrusted hands, it carries a MAC over the cluster name, its format and
// its whole vector, keyed by the cluster's secret (Config.Secrets): Put and
// Delete refuse a context that was forged or edited with ErrBadContext, and
// change nothing. The zero Context means "I have seen nothing": a write with
// it supersedes nothing and becomes a sibling of whatever the key holds. A
// Context is immutable and safe to share.
type Context struct {
	cluster uint32 // clusterHash of the issuing Store; 0 for the zero Context
	vv      versionVector
	mac     []byte // contextMACSize bytes; nil in format 1
}

// IsZero reports whether c is the zero Context.
func (c Context) IsZero() bool { return len(c.vv) == 0 }

// String returns the text form, or "" for the zero Context.
func (c Context) String() string {
	b, _ := c.MarshalText()
	return string(b)
}

// MarshalText encodes c as URL-safe base64 text. The zero Context encodes to
// empty text.
func (c Context) MarshalText() ([]byte, error) {
	if c.IsZero() {
		return []byte{}, nil
	}
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	if c.mac == nil {
		_ = e.EncodeArrayLen(3)
		_ = e.EncodeUint(contextFormatV1)
	} else {
		_ = e.EncodeArrayLen(4)
		_ = e.EncodeUint(contextFormat)
	}
	_ = e.EncodeUint(uint64(c.cluster))
	encodeVV(e, c.vv)
	if c.mac != nil {
		_ = e.EncodeBytes(c.mac)
	}
	out := make([]byte, base64.RawURLEncoding.EncodedLen(buf.Len()))
	base64.RawURLEncoding.Encode(out, buf.Bytes())
	return out, nil
}

// UnmarshalText decodes text made by MarshalText. Empty text gives the zero
// Context. Malformed or oversized text returns an error matching ErrBadContext
// and leaves c unchanged. Whether the context belongs to the Store's cluster,
// and whether its MAC is valid, is checked when it is used.
func (c *Context) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*c = Context{}
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
	if len(vv) == 0 {
		return fmt.Errorf("%w: empty vector", ErrBadContext)
	}
	var mac []byte
	if f == contextFormat {
		if mac, err = d.bytes(); err != nil || len(mac) != contextMACSize {
			return fmt.Errorf("%w: malformed MAC", ErrBadContext)
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
	*c = Context{cluster: uint32(cl), vv: vv, mac: mac}
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

// mac returns the MAC of vv (format contextFormat) under key i. It covers
// the cluster name, the format and the whole vector.
func (k *contextKeys) mac(i int, vv versionVector) []byte {
	h := k.pools[i].Get().(hash.Hash)
	defer k.pools[i].Put(h)
	h.Reset()
	var hdr []byte
	hdr = binary.AppendUvarint(hdr, contextFormat)
	hdr = binary.AppendUvarint(hdr, uint64(len(k.cluster)))
	h.Write(hdr)
	h.Write([]byte(k.cluster))
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	encodeVV(e, vv)
	h.Write(buf.Bytes())
	return h.Sum(nil)[:contextMACSize]
}

// valid reports whether mac is vv's MAC under any of the keys.
func (k *contextKeys) valid(vv versionVector, mac []byte) bool {
	ok := false
	for i := range k.pools {
		ok = hmac.Equal(k.mac(i, vv), mac) || ok
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

// issueContext returns the Context that Get hands out for vv, signed with
// the first secret.
func (s *Store) issueContext(vv versionVector) Context {
	if len(vv) == 0 {
		return Context{}
	}
	return Context{cluster: s.cluster, vv: vv, mac: s.ctxKeys.Load().mac(0, vv)}
}

// checkContext checks a context a caller passed to Put or Delete: issued by
// this cluster, with a valid MAC (a context without one, format 1, only when
// no secret is configured), and within Limits.MaxContextSize.
func (s *Store) checkContext(c Context) error {
	if c.IsZero() {
		return nil
	}
	if c.cluster != s.cluster {
		return fmt.Errorf("%w: issued by another cluster than %q", ErrBadContext, s.cfg.Cluster)
	}
	switch {
	case c.mac == nil && len(s.cfg.Secrets) > 0:
		return fmt.Errorf("%w: the context carries no MAC, and the cluster has a secret", ErrBadContext)
	case c.mac != nil && !s.ctxKeys.Load().valid(c.vv, c.mac):
		return fmt.Errorf("%w: the context's MAC does not match: it was edited, forged, or signed by a secret no longer configured", ErrBadContext)
	}
	return s.checkContextSize(c.vv)
}

// checkContextSize bounds a context's vector by Limits.MaxContextSize (for a
// write forwarded by a peer, whose caller's context that peer checked).
func (s *Store) checkContextSize(vv versionVector) error {
	if n := (Context{vv: vv}).encodedSize(); n > s.cfg.Limits.MaxContextSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadContext, n, s.cfg.Limits.MaxContextSize)
	}
	return nil
}

// encodedSize is the size of c's vector on the wire, checked against
// Limits.MaxContextSize.
func (c Context) encodedSize() int {
	n := 0
	for _, e := range c.vv {
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
