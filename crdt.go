// crdt.go: convergent data types on §4.4 versioning: whose dots they use,
// their causal clocks, and the read-modify-write loop that GetSet, UpdateSet,
// the counter and the register share.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"reflect"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// # Convergent types: whose actor?
//
// An observed-remove set tags every add with a dot, a unique event name
// (actor, counter), and a remove drops exactly the dots it saw. Dots must be
// unique per key, and a clock that says "A:9" must have seen every A-dot up
// to 9. Dots minted by clients break both easily: two concurrent updates in
// one process that share an actor both mint A:10 for different elements, and
// a failed write followed by a retry can reissue a dot (Riak's kv679).
//
// Client actors can be made safe (one actor per sequential writer, updates
// serialized per actor and key, counters never reused after a failed write),
// but only by rules the library cannot check. So the types here mint no dots
// of their own. Every write already gets a
// dot from its coordinator (mint.go): unique per key, durable before any
// other replica sees it, with per-key epochs after a lost disk. A value
// written by UpdateSet records its new adds as "added by this write" (the
// self dot, a placeholder), and a reader resolves the placeholder to the dot
// of the sibling that holds the value. The value also records the clock its
// writer had seen (the read's context), so each sibling's causal past is
// exactly (stored clock) plus (its own dot). A dotted version vector with one
// extra dot is not a version vector: a sibling minted as A:10 has not
// necessarily seen A:9 (a concurrent write through the same coordinator), and
// treating it as if it had would drop A:9's adds. The clock type below keeps
// such dots apart.
//
// Merging the siblings of a read is then the ORSWOT merge of their values:
// a dot survives if both sides hold it, or if the other side has not seen it.
// The merged clock is the join of the siblings' clocks and dots, joined with
// the read's context (which covers them all, and covers the dots of siblings
// a write or a Delete superseded). The next write stores that clock. Since
// it joins the values' own clocks, it stays right even for an actor the
// key's context no longer lists.
//
// Dots are the siblings' identities, so they are the same on every replica
// and survive read repair, hinted handoff, anti-entropy and transfers. A
// tombstone (Store.Delete) has no value and so no stored clock: it counts as
// a sibling that removes nothing, and the next write after it records the
// Delete's context, so a Delete removes what it observed unless a write
// concurrent with it is merged first (the paper's union behaviour). Remove
// elements with UpdateSet instead. A purged key starts again from nothing,
// under fresh actor epochs.

// Element is what an ORSet holds: strings and integers, which compare and
// encode exactly (floats are excluded: NaN is not equal to itself).
type Element interface {
	~string | ~int | ~int8 | ~int16 | ~int32 | ~int64 |
		~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uintptr
}

// Type tags: the first element of every encoded convergent value, so a key
// read as the wrong type fails clearly. ONLY APPEND TO THIS LIST.
const (
	tagORSet    = 1
	tagCounter  = 2
	tagRegister = 3
)

// selfDot stands, in a value being written, for the dot its coordinator will
// mint. Real dots have a non-empty actor and a counter of at least 1.
var selfDot = dot{}

// clock is a set of dots: a version vector (every dot of an actor up to its
// counter) plus a cloud of single dots beyond it. Kept compact: the cloud is
// sorted, unique, and holds no dot the vector covers or could absorb. The
// zero value is the empty set.
type clock struct {
	vv    versionVector
	cloud []dot
}

// covers reports whether d is in c. The self dot never is.
func (c clock) covers(d dot) bool {
	if d.Counter == 0 {
		return false
	}
	if c.vv.covers(d) {
		return true
	}
	_, ok := slices.BinarySearchFunc(c.cloud, d, dot.compare)
	return ok
}

// withDot returns c plus d. The self dot is never added.
func (c clock) withDot(d dot) clock {
	if d.Counter == 0 || c.covers(d) {
		return c
	}
	return clock{vv: c.vv, cloud: append(slices.Clip(c.cloud), d)}.compact()
}

// joinClocks returns the union of a and b. Neither is modified.
func joinClocks(a, b clock) clock {
	if len(a.cloud) == 0 && len(b.cloud) == 0 {
		return clock{vv: join(a.vv, b.vv)}
	}
	cloud := make([]dot, 0, len(a.cloud)+len(b.cloud))
	cloud = append(append(cloud, a.cloud...), b.cloud...)
	return clock{vv: join(a.vv, b.vv), cloud: cloud}.compact()
}

// compact sorts the cloud, drops the dots the vector covers and moves the
// dots that extend it into it (sorted by actor, then counter, so one pass
// absorbs a whole run). It may reorder c.cloud in place.
func (c clock) compact() clock {
	if len(c.cloud) == 0 {
		return clock{vv: c.vv}
	}
	slices.SortFunc(c.cloud, dot.compare)
	vv := c.vv
	var cloud []dot
	for _, d := range c.cloud {
		switch n := vv.get(d.Actor); {
		case d.Counter <= n:
		case d.Counter == n+1:
			vv = vv.with(d.Actor, d.Counter)
		case len(cloud) == 0 || cloud[len(cloud)-1] != d:
			cloud = append(cloud, d)
		}
	}
	return clock{vv: vv, cloud: cloud}
}

// actorTable numbers the actors of a clock for compact dots: sorted, so one
// clock always gets the same table.
type actorTable struct {
	names []string
	index map[string]int
	seen  []uint64 // when decoded: each actor's counter in the clock's vector
}

// seenByVector reports whether the vector of the decoded clock covers d,
// the index-based equivalent of clock.vv.covers for d = unpack(p).
func (t actorTable) seenByVector(p uint64, d dot) bool {
	n := uint64(len(t.names))
	return n > 0 && p >= n && d.Counter <= t.seen[p%n]
}

func newActorTable(c clock) actorTable {
	names := make([]string, 0, len(c.vv)+len(c.cloud))
	for _, e := range c.vv {
		names = append(names, e.Actor)
	}
	for _, d := range c.cloud {
		names = append(names, d.Actor)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	t := actorTable{names: names, index: make(map[string]int, len(names))}
	for i, n := range names {
		t.index[n] = i
	}
	return t
}

// pack turns a dot into one integer: 0 for the self dot, else
// counter*len(names) + index, which is at least len(names). It reports false
// when the dot does not fit in 64 bits (a counter beyond 2^64/actors) or its
// actor is not in the table: such dots are written as pairs (writePair).
func (t actorTable) pack(d dot) (uint64, bool) {
	if d == selfDot {
		return 0, true
	}
	i, ok := t.index[d.Actor]
	hi, lo := bits.Mul64(d.Counter, uint64(len(t.names)))
	p, carry := bits.Add64(lo, uint64(i), 0)
	return p, ok && hi == 0 && carry == 0 && d.Counter > 0
}

// unpack reverses pack; 0 gives self.
func (t actorTable) unpack(p uint64, self dot) (dot, error) {
	if p == 0 {
		return self, nil
	}
	n := uint64(len(t.names))
	if n == 0 || p < n {
		return dot{}, fmt.Errorf("packed dot %d out of range", p)
	}
	return dot{Actor: t.names[p%n], Counter: p / n}, nil
}

// writePair writes a dot as two integers, its actor's index and its
// counter; the self dot is 0, 0.
func (t actorTable) writePair(e *msgpack.Encoder, d dot) error {
	if d == selfDot {
		_ = e.EncodeUint(0)
		_ = e.EncodeUint(0)
		return nil
	}
	i, ok := t.index[d.Actor]
	if !ok {
		return fmt.Errorf("dot %s:%d has no actor in the clock", d.Actor, d.Counter)
	}
	_ = e.EncodeUint(uint64(i))
	_ = e.EncodeUint(d.Counter)
	return nil
}

// readPair reads what writePair wrote; the self dot gives self.
func (t actorTable) readPair(d *wireDecoder, self dot) (dot, error) {
	i, err := d.DecodeUint64()
	if err != nil {
		return dot{}, err
	}
	c, err := d.DecodeUint64()
	if err != nil {
		return dot{}, err
	}
	switch {
	case c == 0 && i == 0:
		return self, nil
	case c == 0 || c > maxCounter || i >= uint64(len(t.names)):
		return dot{}, fmt.Errorf("dot %d:%d out of range", i, c)
	}
	return dot{Actor: t.names[i], Counter: c}, nil
}

// encodeClock writes c as [actors, counters, cloud]: the cloud as pairs
// (writePair), and counter 0 for an actor only in the cloud. It returns the
// actor table dots refer to.
func encodeClock(e *msgpack.Encoder, c clock) (actorTable, error) {
	t := newActorTable(c)
	_ = e.EncodeArrayLen(len(t.names))
	for _, n := range t.names {
		_ = e.EncodeString(n)
	}
	_ = e.EncodeArrayLen(len(t.names))
	for _, n := range t.names {
		_ = e.EncodeUint(c.vv.get(n))
	}
	_ = e.EncodeArrayLen(2 * len(c.cloud))
	for _, d := range c.cloud {
		if err := t.writePair(e, d); err != nil {
			return t, err
		}
	}
	return t, nil
}

// decodeClock reads what encodeClock wrote, checking it: actors sorted,
// unique and bounded, counters bounded, cloud dots real.
func decodeClock(d *wireDecoder) (clock, actorTable, error) {
	var c clock
	var t actorTable
	n, err := listLen(d, maxDecodedActors)
	if err != nil {
		return c, t, fmt.Errorf("actors: %w", err)
	}
	t = actorTable{names: make([]string, 0, n), index: make(map[string]int, n)}
	for i := range n {
		a, err := d.str()
		if err != nil {
			return c, t, err
		}
		if a == "" || len(a) > maxActorLen || (i > 0 && t.names[i-1] >= a) {
			return c, t, fmt.Errorf("bad actor table entry %q", a)
		}
		t.names = append(t.names, a)
		t.index[a] = i
	}
	if m, err := listLen(d, n); err != nil || m != n {
		return c, t, fmt.Errorf("counters: %d for %d actors (%v)", m, n, err)
	}
	t.seen = make([]uint64, n)
	for i, a := range t.names {
		v, err := d.DecodeUint64()
		if err != nil {
			return c, t, err
		}
		if v > maxCounter {
			return c, t, fmt.Errorf("counter %d of %q out of range", v, a)
		}
		if v > 0 {
			c.vv = append(c.vv, vvEntry{a, v})
		}
		t.seen[i] = v
	}
	m, err := listLen(d, maxDecodedList)
	if err != nil || m%2 != 0 {
		return c, t, fmt.Errorf("cloud: %d entries (%v)", m, err)
	}
	for range m / 2 {
		dt, err := t.readPair(d, selfDot)
		if err != nil || dt == selfDot {
			return c, t, fmt.Errorf("bad cloud dot (%v)", err)
		}
		c.cloud = append(c.cloud, dt)
	}
	return c.compact(), t, nil
}

// listLen reads an array header and bounds it by limit and by the bytes
// left (every entry takes at least one), so a hostile length never
// allocates. A nil array has length 0.
func listLen(d *wireDecoder, limit int) (int, error) {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, nil
	}
	if n > limit || n > d.r.Len() {
		return 0, fmt.Errorf("list of %d entries", n)
	}
	return n, nil
}

// beginValue writes a convergent value's header: an array of fields whose
// first is the type tag.
func beginValue(e *msgpack.Encoder, fields, tag int) {
	_ = e.EncodeArrayLen(fields)
	_ = e.EncodeUint(uint64(tag))
}

// openValue reads a value's header, checks its tag and returns the number of
// fields after it (at least min).
func openValue(d *wireDecoder, tag, min int) (int, error) {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n < 1 {
		return 0, errors.New("value without a type tag")
	}
	got, err := d.DecodeUint64()
	if err != nil {
		return 0, err
	}
	if got != uint64(tag) {
		return 0, fmt.Errorf("value has type tag %d, want %d (%s)", got, tag, tagName(tag))
	}
	if n < 1+min {
		return 0, fmt.Errorf("value of %d fields", n)
	}
	return n - 1, nil
}

// closeValue skips fields a later format may add and checks nothing trails.
func closeValue(d *wireDecoder, extra int) error {
	for range extra {
		if err := d.Skip(); err != nil {
			return err
		}
	}
	if !atEOF(d) {
		return errors.New("trailing bytes")
	}
	return nil
}

func tagName(tag int) string {
	switch tag {
	case tagORSet:
		return "an ORSet"
	case tagCounter:
		return "a Counter"
	case tagRegister:
		return "a Register"
	}
	return "unknown"
}

// encodeElem and decodeElem write and read one set element: strings as msgpack
// strings, integers as msgpack integers, range-checked on the way in.
func encodeElem[E Element](e *msgpack.Encoder, v E) {
	if s, ok := any(v).(string); ok { // the common case, without reflection
		_ = e.EncodeString(s)
		return
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		_ = e.EncodeString(rv.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		_ = e.EncodeInt(rv.Int())
	default:
		_ = e.EncodeUint(rv.Uint())
	}
}

func decodeElem[E Element](d *wireDecoder, scratch *[]byte) (E, error) {
	var v E
	if p, ok := any(&v).(*string); ok { // the common case, without reflection
		s, err := readString(d, scratch)
		*p = s
		return v, err
	}
	rv := reflect.ValueOf(&v).Elem()
	switch rv.Kind() {
	case reflect.String:
		s, err := readString(d, scratch)
		if err != nil {
			return v, err
		}
		rv.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := d.DecodeInt64()
		if err != nil {
			return v, err
		}
		if rv.OverflowInt(n) {
			return v, fmt.Errorf("element %d out of range for %v", n, rv.Type())
		}
		rv.SetInt(n)
	default:
		n, err := d.DecodeUint64()
		if err != nil {
			return v, err
		}
		if rv.OverflowUint(n) {
			return v, fmt.Errorf("element %d out of range for %v", n, rv.Type())
		}
		rv.SetUint(n)
	}
	return v, nil
}

// readString reads a str or bin value through a scratch buffer, so the
// string is the only allocation. Its length is bounded by the bytes left.
func readString(d *wireDecoder, scratch *[]byte) (string, error) {
	n, err := d.DecodeBytesLen()
	if err != nil || n <= 0 {
		return "", err
	}
	if n > d.r.Len() {
		return "", fmt.Errorf("length %d exceeds the %d bytes left", n, d.r.Len())
	}
	if cap(*scratch) < n {
		*scratch = make([]byte, n)
	}
	b := (*scratch)[:n]
	if _, err := io.ReadFull(d.r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// readValues decodes each sibling of st with decode (tombstones get
// tombstone), so the caller can fold them. A value that does not decode is
// an ErrResolve naming the key.
func readValues[V any](key []byte, st state, decode func(sb sibling) (V, error)) ([]V, error) {
	out := make([]V, 0, len(st.Siblings))
	for i, sb := range st.Siblings {
		v, err := decode(sb)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q, sibling %d of %d: %w", ErrResolve, key, i+1, len(st.Siblings), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// updateValue is the read-modify-write loop of the convergent types: read
// the key's state (a quorum read), let build turn it into the value to write,
// and Put that with the read's context. A failed read is retried
// (WithRetries, default 2), and so is a failed write when retryWrites: a
// failed write may still have been stored, which only an idempotent update
// may repeat.
func updateValue(ctx context.Context, s *Store, key []byte, opts []Option, retryWrites bool, build func(st state, c Context) ([]byte, error)) error {
	o, err := s.options(opts)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := func() error {
			st, c, err := s.getState(ctx, key, opts)
			if err != nil {
				return err
			}
			value, err := build(st, c)
			if err != nil {
				return err
			}
			return s.Put(ctx, key, value, c, opts...)
		}()
		retry := errors.Is(err, ErrReadQuorum) || (retryWrites && errors.Is(err, ErrWriteQuorum))
		if err == nil || !retry || attempt >= o.retries || ctx.Err() != nil {
			return err
		}
	}
}
