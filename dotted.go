// dotted.go: §4.4 the dotted causal context a Put hands back (DESIGN §2.1):
// PutReturning, the context it issues, and the dot's wire form.
package dynamo

import (
	"context"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// PutReturning is Put that also returns the causal context of the version it
// wrote, so that the caller can overwrite the key again without a Get in
// between: a chain of PutReturning calls, each with the context the previous
// one returned, supersedes one version with the next and creates no
// siblings.
//
// The returned context covers exactly what c covered plus the new version,
// never a sibling the caller did not see: a version another client wrote
// concurrently (stored beside the new one at the replicas) stays uncovered,
// so the next write with the returned context keeps it as a sibling, and a
// Get shows it. Such a context may be dotted: a version vector plus the new
// version's dot, which the vector cannot cover without also covering
// concurrent versions. A dotted context round-trips through MarshalText like
// any other, and its MAC covers the dot.
//
// On error the returned context is the zero CausalContext; as with Put, the
// write may still have been stored by some replicas, and the caller should
// Get the key before writing it again. PutReturning only reads key and
// value; the caller may reuse them afterwards. A replica of an older release
// that coordinates the write (it was forwarded there) does not report the
// version's dot: then the returned context is c, and the next write with it
// becomes a sibling of this one, as after a Put.
func (s *Store) PutReturning(ctx context.Context, key, value []byte, c CausalContext, opts ...Option) (CausalContext, error) {
	if len(value) > s.cfg.Limits.MaxValueSize {
		return CausalContext{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrValueTooLarge, len(value), s.cfg.Limits.MaxValueSize)
	}
	if value == nil {
		value = []byte{}
	}
	d, err := s.write(ctx, write{op: "put", value: value}, key, c, opts)
	if err != nil {
		return CausalContext{}, err
	}
	return s.returnedContext(c, d), nil
}

// returnedContext is the context PutReturning hands back after a write with
// context c created the version d: c's vector, with c's own dot folded in
// when the vector stays contiguous, plus d, folded in the same way or kept
// as the context's dot. A dot of c that cannot be folded is left out: the
// write superseded it wherever the vector of its replicas covers it, and a
// context that covers less is never wrong, at worst it leaves a sibling.
// A zero d (a peer that does not report dots) returns c unchanged.
func (s *Store) returnedContext(c CausalContext, d dot) CausalContext {
	if d.Counter == 0 {
		return c
	}
	vv := c.vv
	if c.dot.Counter != 0 && vv.get(c.dot.Actor) == c.dot.Counter-1 {
		vv = vv.with(c.dot.Actor, c.dot.Counter)
	}
	if vv.get(d.Actor) == d.Counter-1 {
		return s.issueContext(vv.with(d.Actor, d.Counter))
	}
	return CausalContext{cluster: s.cluster, vv: vv, dot: d, mac: s.ctxKeys.Load().mac(0, vv, d)}
}

// encodeDot writes d as two msgpack values: its actor and its counter.
func encodeDot(e *msgpack.Encoder, d dot) {
	_ = e.EncodeString(d.Actor)
	_ = e.EncodeUint(d.Counter)
}

// decodeDot reads a dot written by encodeDot, held to the bounds of a
// vector's entry (decodeVV): a non-empty actor of at most maxActorLen bytes
// and a counter in 1..maxCounter.
func decodeDot(d *wireDecoder) (dot, error) {
	a, err := d.str()
	if err != nil {
		return dot{}, err
	}
	c, err := d.DecodeUint64()
	if err != nil {
		return dot{}, err
	}
	if a == "" || len(a) > maxActorLen || c == 0 || c > maxCounter {
		return dot{}, fmt.Errorf("bad dot %q:%d", a, c)
	}
	return dot{Actor: a, Counter: c}, nil
}

// checkOptDot reports what is wrong with a dot decoded from two fields of
// a body, where the zero dot (empty actor, counter 0) means none.
func checkOptDot(d dot) error {
	if (d.Actor == "") != (d.Counter == 0) || len(d.Actor) > maxActorLen || d.Counter > maxCounter {
		return fmt.Errorf("%w: bad dot %q:%d", ErrProtocol, d.Actor, d.Counter)
	}
	return nil
}

// dotTextSize is the size of a context's dot, counted against
// Limits.MaxContextSize like a vector's entry; 0 for no dot.
func dotTextSize(d dot) int {
	if d.Counter == 0 {
		return 0
	}
	return len(d.Actor) + 9
}
