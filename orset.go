// orset.go: ORSet, an observed-remove set without tombstones (ORSWOT) whose
// dots are the coordinators' (§4.4, §6.1 shopping cart): its merge, its
// compact encoding, GetSet and UpdateSet.
package dynamo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// ORSet is an observed-remove set: a Remove takes out the adds of the
// element that its read observed, and an Add concurrent with it survives
// (add wins). Unlike a union of siblings, a removed element does not come
// back when a concurrent write still held it. It keeps no tombstones: each
// element carries the dots of the writes that added it, and the set one
// clock of what it has seen (one entry per coordinating actor of the key).
//
// Read one with GetSet and change one with UpdateSet; the dots come from the
// writes' coordinators (see crdt.go), so any number of processes and
// goroutines may update one key concurrently, and a failed update may be
// retried. Store.Delete of a set key is not a removal of its elements: like
// a union cart, the elements a write concurrent with the Delete still holds
// can come back (the paper's "deleted items can resurface"); remove them with UpdateSet.
//
// The zero value is an empty set that has seen nothing. An ORSet is not safe
// for concurrent use.
type ORSet[E Element] struct {
	elems []setEntry[E] // ascending by element
	clock clock         // every dot this set has seen
}

// setEntry is one element and the dots of the writes that added it, sorted
// (selfDot: added by the write being built).
type setEntry[E Element] struct {
	elem E
	dots []dot
}

func (s *ORSet[E]) find(e E) (int, bool) {
	return slices.BinarySearchFunc(s.elems, e, func(x setEntry[E], e E) int { return cmp.Compare(x.elem, e) })
}

// Add adds the elements. In the write being built, each now carries only
// the write's own dot: the adds it had are observed and replaced.
func (s *ORSet[E]) Add(elems ...E) {
	for _, e := range elems {
		if i, ok := s.find(e); ok {
			s.elems[i].dots = []dot{selfDot}
		} else {
			s.elems = slices.Insert(s.elems, i, setEntry[E]{e, []dot{selfDot}})
		}
	}
}

// Remove removes the elements: the adds of them that this set has observed.
// An add it has not seen (made concurrently) survives the merge.
func (s *ORSet[E]) Remove(elems ...E) {
	for _, e := range elems {
		if i, ok := s.find(e); ok {
			s.elems = slices.Delete(s.elems, i, i+1)
		}
	}
}

// Contains reports whether e is in the set.
func (s *ORSet[E]) Contains(e E) bool {
	_, ok := s.find(e)
	return ok
}

// Len returns the number of elements.
func (s *ORSet[E]) Len() int { return len(s.elems) }

// Elements returns the elements in ascending order, in a new slice the
// caller owns.
func (s *ORSet[E]) Elements() []E {
	out := make([]E, len(s.elems))
	for i, x := range s.elems {
		out[i] = x.elem
	}
	return out
}

// joinSets is the ORSWOT merge: an element's dot survives if both sides hold
// it, or if the other side has not seen it (so a side that saw it and lacks
// it removed it). The clocks join. Commutative, associative and idempotent
// for sets whose dots their clocks cover (self dots aside, which no clock
// covers). Neither input is modified; the result may share dot slices.
func joinSets[E Element](a, b *ORSet[E]) *ORSet[E] {
	out := &ORSet[E]{elems: make([]setEntry[E], 0, max(len(a.elems), len(b.elems))), clock: joinClocks(a.clock, b.clock)}
	i, j := 0, 0
	for i < len(a.elems) || j < len(b.elems) {
		var c int
		switch {
		case i == len(a.elems):
			c = 1
		case j == len(b.elems):
			c = -1
		default:
			c = cmp.Compare(a.elems[i].elem, b.elems[j].elem)
		}
		var x setEntry[E]
		switch {
		case c < 0:
			x = setEntry[E]{a.elems[i].elem, mergeDots(a.elems[i].dots, nil, a.clock, b.clock)}
			i++
		case c > 0:
			x = setEntry[E]{b.elems[j].elem, mergeDots(nil, b.elems[j].dots, a.clock, b.clock)}
			j++
		default:
			x = setEntry[E]{a.elems[i].elem, mergeDots(a.elems[i].dots, b.elems[j].dots, a.clock, b.clock)}
			i++
			j++
		}
		if len(x.dots) > 0 {
			out.elems = append(out.elems, x)
		}
	}
	return out
}

// mergeDots merges one element's sorted dots from sides a and b.
func mergeDots(da, db []dot, ca, cb clock) []dot {
	if slices.Equal(da, db) {
		return da
	}
	out := make([]dot, 0, max(len(da), len(db)))
	i, j := 0, 0
	for i < len(da) || j < len(db) {
		var c int
		switch {
		case i == len(da):
			c = 1
		case j == len(db):
			c = -1
		default:
			c = da[i].compare(db[j])
		}
		switch {
		case c < 0:
			if !cb.covers(da[i]) {
				out = append(out, da[i])
			}
			i++
		case c > 0:
			if !ca.covers(db[j]) {
				out = append(out, db[j])
			}
			j++
		default:
			out = append(out, da[i])
			i++
			j++
		}
	}
	return out
}

// resolveSet merges the siblings of a read into one set: each sibling's
// value, its self dots resolved to the sibling's dot, with a clock of what
// its writer saw plus that dot; a tombstone as an empty set that saw only
// its own dot. The result's clock also takes the read's context c.
func resolveSet[E Element](key []byte, st state, c Context) (*ORSet[E], error) {
	vals, err := readValues(key, st, func(sb sibling) (*ORSet[E], error) {
		if sb.Tombstone {
			return &ORSet[E]{clock: clock{}.withDot(sb.Dot)}, nil
		}
		return decodeSet[E](sb.Value, sb.Dot)
	})
	if err != nil {
		return nil, err
	}
	acc := &ORSet[E]{}
	for i, v := range vals {
		if i == 0 {
			acc = v
		} else {
			acc = joinSets(acc, v)
		}
	}
	acc.clock = joinClocks(acc.clock, clock{vv: c.vv})
	return acc, nil
}

// encodeSet is the stored form of a set being written:
//
//	[tag, actors, counters, cloud, [elem, dots, elem, dots, ...]]
//
// with elements ascending, and an element's dots as one integer packed
// against the actor table when it has one dot, as almost all do
// (actorTable.pack; 0 is the write's own dot), else as an array of (actor
// index, counter) pairs. An element costs its own bytes plus one to five;
// the table costs per actor.
func encodeSet[E Element](s *ORSet[E]) ([]byte, error) {
	p := getEncoder()
	err := writeSet(p, s)
	b := p.finish()
	if err != nil {
		return nil, err
	}
	return b, nil
}

func writeSet[E Element](p *pooledEncoder, s *ORSet[E]) error {
	e := p.enc
	beginValue(e, 5, tagORSet)
	t, err := encodeClock(e, s.clock)
	if err != nil {
		return err
	}
	_ = e.EncodeArrayLen(2 * len(s.elems))
	for _, x := range s.elems {
		encodeElem(e, x.elem)
		if len(x.dots) == 1 {
			if p, ok := t.pack(x.dots[0]); ok {
				_ = e.EncodeUint(p)
				continue
			}
		}
		_ = e.EncodeArrayLen(2 * len(x.dots))
		for _, d := range x.dots {
			if err := t.writePair(e, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeSet parses a stored set written by sibling own: its self dots
// become own, and own joins its clock. It checks that elements are sorted
// and unique and that every dot is real and seen by the clock.
func decodeSet[E Element](b []byte, own dot) (*ORSet[E], error) {
	d := newWireDecoder(b)
	extra, err := openValue(d, tagORSet, 4)
	if err != nil {
		return nil, err
	}
	c, t, err := decodeClock(d)
	if err != nil {
		return nil, err
	}
	c = c.withDot(own)
	n, err := listLen(d, maxDecodedList)
	if err != nil || n%2 != 0 {
		return nil, fmt.Errorf("elements: %d entries (%v)", n, err)
	}
	s := &ORSet[E]{elems: make([]setEntry[E], 0, n/2), clock: c}
	single := make([]dot, n/2) // one dot each, for most elements
	var scratch []byte
	for i := range n / 2 {
		el, err := decodeElem[E](d, &scratch)
		if err != nil {
			return nil, err
		}
		if i > 0 && el <= s.elems[i-1].elem {
			return nil, errors.New("elements not sorted")
		}
		ds, err := decodeDots(d, t, own, c, single[i:i+1:i+1])
		if err != nil {
			return nil, fmt.Errorf("element %v: %w", el, err)
		}
		s.elems = append(s.elems, setEntry[E]{el, ds})
	}
	if err := closeValue(d, extra-4); err != nil {
		return nil, err
	}
	return s, nil
}

// decodeDots reads one element's dots: a packed integer, or an array of
// pairs. A single packed dot goes in one, a slice of length 1 the caller
// provides.
func decodeDots(d *wireDecoder, t actorTable, own dot, c clock, one []dot) ([]dot, error) {
	code, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	var ds []dot
	if msgpcode.IsFixedArray(code) || code == msgpcode.Array16 || code == msgpcode.Array32 {
		n, err := listLen(d, maxDecodedList)
		if err != nil || n == 0 || n%2 != 0 {
			return nil, fmt.Errorf("dots: %d entries (%v)", n, err)
		}
		ds = make([]dot, 0, n/2)
		for range n / 2 {
			dt, err := t.readPair(d, own)
			if err != nil {
				return nil, err
			}
			if !c.covers(dt) {
				return nil, fmt.Errorf("dot %s:%d not seen by the set's clock", dt.Actor, dt.Counter)
			}
			ds = append(ds, dt)
		}
	} else {
		p, err := d.DecodeUint64()
		if err != nil {
			return nil, err
		}
		dt, err := t.unpack(p, own)
		if err != nil {
			return nil, err
		}
		if !t.seenByVector(p, dt) && !c.covers(dt) {
			return nil, fmt.Errorf("dot %s:%d not seen by the set's clock", dt.Actor, dt.Counter)
		}
		return append(one[:0], dt), nil
	}
	slices.SortFunc(ds, dot.compare)
	for i := 1; i < len(ds); i++ {
		if ds[i] == ds[i-1] {
			return nil, errors.New("repeated dot")
		}
	}
	return ds, nil
}

// GetSet reads the set stored under key, a quorum read like Get (WithR and
// the other options apply), and merges its siblings. A missing or deleted
// key gives an empty set. Config.Resolver plays no part. The set is the
// caller's; GetSet only reads key. A sibling that is not a set gives an
// error matching ErrResolve.
func GetSet[E Element](ctx context.Context, s *Store, key []byte, opts ...Option) (*ORSet[E], error) {
	st, c, err := s.getState(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	return resolveSet[E](key, st, c)
}

// UpdateSet reads key's set as GetSet does, lets fn change it (Add,
// Remove), and writes it back with the read's context, so the write
// supersedes every sibling it merged. Concurrent updates never block each
// other: their writes become siblings that the next read merges, where a
// Remove holds against the adds it observed and an Add concurrent with a
// Remove wins. An error from fn is returned as it is, and nothing is written.
//
// A quorum failure of the read or the write is retried from the read
// (WithRetries, default 2): adds and removes are idempotent, so a failed
// write that was stored anyway does no harm. UpdateSet returns the set as
// written; the caller owns it, and UpdateSet only reads key. Elements are
// stored as msgpack strings or integers.
func UpdateSet[E Element](ctx context.Context, s *Store, key []byte, fn func(set *ORSet[E]) error, opts ...Option) (*ORSet[E], error) {
	var out *ORSet[E]
	err := updateValue(ctx, s, key, opts, true, func(st state, c Context) ([]byte, error) {
		set, err := resolveSet[E](key, st, c)
		if err != nil {
			return nil, err
		}
		if err := fn(set); err != nil {
			return nil, err
		}
		b, err := encodeSet(set)
		if err != nil {
			return nil, fmt.Errorf("dynamo: encode set %q: %w", key, err)
		}
		out = set
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
