// tamper.go: clients that pass contexts through their text form and edit it
// at random (SECURITY "untrusted caller data", issue 12): an edited context
// must be refused with dynamo.ErrBadContext and change nothing.
package dynamotest

import (
	"context"
	"errors"
	"slices"

	"github.com/dynamo-kv/dynamo"
)

// base64URL is the alphabet of a context's text form.
const base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// tamperedAdd is an add done by hand, the way Modify does it (Get, merge the
// siblings, add the element, Put with the context; up to three tries while
// quorums fail), with the context round-tripped through its text form and
// edited one time in three first. It is the operation's goroutine.
func (s *sim) tamperedAdd(ctx context.Context, o *op, st *dynamo.Store, key []byte) error {
	var err error
	for try := range 3 {
		err = s.tamperedAddOnce(ctx, o, st, key, try)
		if err == nil || !(errors.Is(err, dynamo.ErrReadQuorum) || errors.Is(err, dynamo.ErrWriteQuorum)) {
			return err
		}
	}
	return err
}

func (s *sim) tamperedAddOnce(ctx context.Context, o *op, st *dynamo.Store, key []byte, try int) error {
	next, value, c, err := s.readAdd(ctx, o, st, key)
	if err != nil {
		return err
	}
	text, _ := c.MarshalText()
	o.ctxBytes = max(o.ctxBytes, len(text))
	// The choices depend on the seed, the operation and the try only, so
	// they replay whatever the goroutines' interleaving.
	h := mix64(uint64(s.cfg.Seed)*0x9e3779b97f4a7c15 + uint64(o.id)*31 + uint64(try))
	if len(text) > 0 && h%3 == 0 {
		bad := slices.Clone(text)
		i := (h >> 8) % uint64(len(bad))
		j := (bytesIndex(base64URL, bad[i]) + 1 + int((h>>32)%63)) % 64
		bad[i] = base64URL[j]
		var forged dynamo.Context
		if forged.UnmarshalText(bad) == nil && forged.String() != c.String() {
			err := st.Put(ctx, key, value, forged)
			if err == nil { // accepted: it wrote next
				o.attempts = append(o.attempts, attempt{at: s.now(), set: slices.Clone(next)})
				o.forged++
				return nil
			}
			if !errors.Is(err, dynamo.ErrBadContext) {
				o.forged++ // refused, but not for its context
			}
			o.tampered++
		}
	}
	var back dynamo.Context
	if err := back.UnmarshalText(text); err != nil {
		return err
	}
	o.attempts = append(o.attempts, attempt{at: s.now(), set: slices.Clone(next)})
	return st.Put(ctx, key, value, back)
}

func bytesIndex(alphabet string, b byte) int {
	for i := range len(alphabet) {
		if alphabet[i] == b {
			return i
		}
	}
	return 0
}
