// context.go: §4.1, §4.4 the opaque causal context handed to callers by Get
// and given back to Put, and its text form.
package dynamo

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"hash/fnv"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxContextText is the largest text form UnmarshalText accepts: 64 KiB.
// Limits.MaxContextSize bounds what Put accepts, usually far less.
const MaxContextText = 64 << 10

const contextFormat = 1

// Context is the causal context of a read: the version vector that covers
// every sibling Get returned. Pass it back to Put or Delete so the write
// supersedes exactly what the caller saw; siblings it did not see survive
// beside the write.
//
// A Context is opaque. It round-trips through MarshalText and UnmarshalText
// (URL-safe base64, fit for forms and cookies). The zero Context means "I have
// seen nothing": a write with it supersedes nothing and becomes a sibling of
// whatever the key holds. A Context is immutable and safe to share.
type Context struct {
	cluster uint32 // clusterHash of the issuing Store; 0 for the zero Context
	vv      versionVector
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
	_ = e.EncodeArrayLen(3)
	_ = e.EncodeUint(contextFormat)
	_ = e.EncodeUint(uint64(c.cluster))
	encodeVV(e, c.vv)
	out := make([]byte, base64.RawURLEncoding.EncodedLen(buf.Len()))
	base64.RawURLEncoding.Encode(out, buf.Bytes())
	return out, nil
}

// UnmarshalText decodes text made by MarshalText. Empty text gives the zero
// Context. Malformed or oversized text returns an error matching ErrBadContext
// and leaves c unchanged. Whether the context belongs to the Store's cluster is
// checked when it is used.
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
	if err != nil || f != contextFormat {
		return fmt.Errorf("%w: unknown format", ErrBadContext)
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
	for i := 3; i < fields; i++ {
		if err := d.Skip(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadContext, err)
		}
	}
	if !atEOF(d) {
		return fmt.Errorf("%w: trailing bytes", ErrBadContext)
	}
	*c = Context{cluster: uint32(cl), vv: vv}
	return nil
}

// issueContext returns the Context that Get hands out for vv.
func (s *Store) issueContext(vv versionVector) Context {
	if len(vv) == 0 {
		return Context{}
	}
	return Context{cluster: s.cluster, vv: vv}
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
