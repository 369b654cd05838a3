// counter.go: Counter, a PN-counter on coordinator dots (§4.4): per-actor
// sums of increments and decrements, their merge and encoding, GetCounter
// and UpdateCounter.
package dynamo

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// Counter is a PN-counter: the increments and decrements of any number of
// concurrent writers all count, each once. Read one with GetCounter and
// change one with UpdateCounter.
//
// Every write's change is tagged with the write's dot, minted by its
// coordinator (see crdt.go). A write stores, per coordinating actor of the
// key, the sums of every change whose dot its read had seen (the actor's
// dots 1..n, for n the read's context), plus its own change; so the value
// stays one entry per actor, however many writes there were. Readers add a
// sibling's own change unless another sibling's sums already include it.
//
// Store.Delete of a counter key resets what the Delete observed, but a write
// concurrent with the Delete keeps what it had seen. To subtract, Add a
// negative amount.
//
// The zero value is a counter at 0 that has seen nothing. A Counter is not
// safe for concurrent use.
type Counter struct {
	base  map[string]pnBase // per actor: the changes of its dots 1..N
	extra map[dot]pn        // changes of single writes beyond their actor's base
	delta pn                // the change being written
	seen  versionVector     // the read's context: its sums are stored through it
}

// pn is a change: the sum of increments and the sum of decrements, each
// wrapping modulo 2^64.
type pn struct{ P, M uint64 }

func (x pn) plus(y pn) pn { return pn{x.P + y.P, x.M + y.M} }

// pnBase is an actor's sums through its N-th dot.
type pnBase struct {
	N uint64
	pn
}

// Value returns the counter's value: increments minus decrements, in
// int64 arithmetic that wraps around.
func (c *Counter) Value() int64 {
	sum := c.delta.P - c.delta.M
	for _, b := range c.base {
		sum += b.P - b.M
	}
	for _, x := range c.extra {
		sum += x.P - x.M
	}
	return int64(sum)
}

// Add adds delta (negative to decrement) to the change being written.
func (c *Counter) Add(delta int64) {
	if delta >= 0 {
		c.delta.P += uint64(delta)
	} else {
		c.delta.M += uint64(-(delta + 1)) + 1 // no overflow at math.MinInt64
	}
}

// joinCounters merges two read counters (their pending changes are not
// merged: neither has one). Per actor the base through the higher dot
// wins; two bases through the same dot agree unless a Delete reset one, and
// then the smaller sums win. Changes of single dots are united and dropped
// once a base includes them. Commutative, associative and idempotent.
func joinCounters(a, b *Counter) *Counter {
	out := &Counter{base: maps.Clone(a.base), extra: maps.Clone(a.extra), seen: join(a.seen, b.seen)}
	if out.base == nil {
		out.base = map[string]pnBase{}
	}
	if out.extra == nil {
		out.extra = map[dot]pn{}
	}
	for actor, y := range b.base {
		x, ok := out.base[actor]
		switch {
		case !ok || y.N > x.N:
			out.base[actor] = y
		case y.N == x.N:
			out.base[actor] = pnBase{N: x.N, pn: pn{min(x.P, y.P), min(x.M, y.M)}}
		}
	}
	for d, y := range b.extra {
		if x, ok := out.extra[d]; ok {
			y = pn{max(x.P, y.P), max(x.M, y.M)} // one dot, one change, unless a disk lied
		}
		out.extra[d] = y
	}
	for d := range out.extra {
		if d.Counter <= out.base[d.Actor].N {
			delete(out.extra, d)
		}
	}
	return out
}

// resolveCounter merges the siblings of a read: each sibling's sums, and
// its own change under its dot. A tombstone contributes nothing: the next
// write stores sums through the read's context c without what the Delete
// superseded, so a Delete resets what it observed (a write concurrent with
// it keeps what it had seen).
func resolveCounter(key []byte, st state, c Context) (*Counter, error) {
	vals, err := readValues(key, st, func(sb sibling) (*Counter, error) {
		if sb.Tombstone {
			return &Counter{}, nil
		}
		return decodeCounter(sb.Value, sb.Dot)
	})
	if err != nil {
		return nil, err
	}
	acc := &Counter{}
	for _, v := range vals {
		acc = joinCounters(acc, v)
	}
	acc.seen = join(acc.seen, c.vv)
	return acc, nil
}

// stored returns the per-actor sums the next write stores: for each actor,
// through the highest of its dots this counter has seen.
func (c *Counter) stored() (actors []string, sums []pnBase) {
	all := map[string]pnBase{}
	for _, e := range c.seen {
		all[e.Actor] = pnBase{N: e.Counter}
	}
	for a, b := range c.base {
		x := all[a]
		all[a] = pnBase{N: max(x.N, b.N), pn: b.pn}
	}
	for d, ch := range c.extra {
		x := all[d.Actor]
		all[d.Actor] = pnBase{N: max(x.N, d.Counter), pn: x.pn.plus(ch)}
	}
	actors = slices.Sorted(maps.Keys(all))
	for _, a := range actors {
		sums = append(sums, all[a])
	}
	return actors, sums
}

// encodeCounter is the stored form of a counter being written:
//
//	[tag, actors, dots, increments, decrements, own increment, own decrement]
//
// with one entry per actor in each list: the actor's sums through its
// dots-th dot.
func encodeCounter(c *Counter) []byte {
	actors, sums := c.stored()
	p := getEncoder()
	e := p.enc
	beginValue(e, 7, tagCounter)
	_ = e.EncodeArrayLen(len(actors))
	for _, a := range actors {
		_ = e.EncodeString(a)
	}
	for _, field := range []func(pnBase) uint64{
		func(b pnBase) uint64 { return b.N },
		func(b pnBase) uint64 { return b.P },
		func(b pnBase) uint64 { return b.M },
	} {
		_ = e.EncodeArrayLen(len(sums))
		for _, b := range sums {
			_ = e.EncodeUint(field(b))
		}
	}
	_ = e.EncodeUint(c.delta.P)
	_ = e.EncodeUint(c.delta.M)
	return p.finish()
}

// decodeCounter parses a stored counter written by sibling own, whose own
// change becomes a change under own.
func decodeCounter(b []byte, own dot) (*Counter, error) {
	d := newWireDecoder(b)
	extra, err := openValue(d, tagCounter, 6)
	if err != nil {
		return nil, err
	}
	n, err := listLen(d, maxDecodedActors)
	if err != nil {
		return nil, fmt.Errorf("actors: %w", err)
	}
	actors := make([]string, n)
	for i := range actors {
		if actors[i], err = d.str(); err != nil {
			return nil, err
		}
		if actors[i] == "" || len(actors[i]) > maxActorLen || (i > 0 && actors[i-1] >= actors[i]) {
			return nil, fmt.Errorf("bad actor %q", actors[i])
		}
	}
	cols := make([][]uint64, 3)
	for k := range cols {
		if m, err := listLen(d, n); err != nil || m != n {
			return nil, fmt.Errorf("%d sums for %d actors (%v)", m, n, err)
		}
		cols[k] = make([]uint64, n)
		for i := range n {
			if cols[k][i], err = d.DecodeUint64(); err != nil {
				return nil, err
			}
		}
	}
	c := &Counter{base: make(map[string]pnBase, n), extra: map[dot]pn{}}
	for i, a := range actors {
		if cols[0][i] == 0 || cols[0][i] > maxCounter {
			return nil, fmt.Errorf("actor %q: dot %d out of range", a, cols[0][i])
		}
		c.base[a] = pnBase{N: cols[0][i], pn: pn{cols[1][i], cols[2][i]}}
	}
	var ch pn
	if ch.P, err = d.DecodeUint64(); err != nil {
		return nil, err
	}
	if ch.M, err = d.DecodeUint64(); err != nil {
		return nil, err
	}
	if err := closeValue(d, extra-6); err != nil {
		return nil, err
	}
	if own.Counter <= c.base[own.Actor].N {
		return nil, fmt.Errorf("sums through %s:%d include the sibling's own dot", own.Actor, c.base[own.Actor].N)
	}
	if ch != (pn{}) {
		c.extra[own] = ch
	}
	return c, nil
}

// GetCounter reads the counter stored under key, a quorum read like Get,
// and merges its siblings. A missing key reads as 0. Config.Resolver plays
// no part; GetCounter only reads key. A sibling that is not a counter gives
// an error matching ErrResolve.
func GetCounter(ctx context.Context, s *Store, key []byte, opts ...Option) (*Counter, error) {
	st, c, err := s.getState(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	return resolveCounter(key, st, c)
}

// UpdateCounter reads key's counter as GetCounter does, lets fn change it
// (Add), and writes it back with the read's context. Concurrent updates
// never block each other, and every one that is stored counts once.
//
// A quorum failure of the read is retried (WithRetries, default 2), but not
// one of the write: a failed write may still have been stored on some
// replica and surface later, and a retry would then count twice. The caller
// decides. UpdateCounter returns the counter as written, which the caller
// owns; it only reads key.
func UpdateCounter(ctx context.Context, s *Store, key []byte, fn func(c *Counter) error, opts ...Option) (*Counter, error) {
	var out *Counter
	err := updateValue(ctx, s, key, opts, false, func(st state, c Context) ([]byte, error) {
		cnt, err := resolveCounter(key, st, c)
		if err != nil {
			return nil, err
		}
		if err := fn(cnt); err != nil {
			return nil, err
		}
		out = cnt
		return encodeCounter(cnt), nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
