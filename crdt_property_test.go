// crdt_property_test.go: the convergent types' merges are commutative,
// associative and idempotent, their clocks stay compact, and their encodings
// round-trip and refuse damaged bytes (rapid property tests and a fuzz target).
package dynamo

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

var propActors = []string{"a", "b", "c", "d"}

// genClock draws a compact clock over a few actors, cloud included.
func genClock(t *rapid.T, label string) clock {
	var c clock
	for _, a := range propActors {
		if n := rapid.Uint64Range(0, 6).Draw(t, label+"-vv-"+a); n > 0 {
			c.vv = append(c.vv, vvEntry{a, n})
		}
		for _, k := range rapid.SliceOfN(rapid.Uint64Range(1, 12), 0, 3).Draw(t, label+"-cloud-"+a) {
			c.cloud = append(c.cloud, dot{a, k})
		}
	}
	return c.compact()
}

// clockDots lists every dot of c (the vector's runs expanded).
func clockDots(c clock) []dot {
	var out []dot
	for _, e := range c.vv {
		for k := uint64(1); k <= e.Counter; k++ {
			out = append(out, dot{e.Actor, k})
		}
	}
	return append(out, c.cloud...)
}

// genSet draws a valid set: a clock, and elements whose dots the clock has
// seen (a dot names one write, so within one history a dot's elements are
// fixed: the history function decides them, and each state holds a subset).
func genSet(t *rapid.T, label string, history func(dot) []string) *ORSet[string] {
	c := genClock(t, label)
	elems := map[string][]dot{}
	for _, d := range clockDots(c) {
		for _, e := range history(d) {
			if rapid.Bool().Draw(t, fmt.Sprintf("%s-keep-%s%d-%s", label, d.Actor, d.Counter, e)) {
				elems[e] = append(elems[e], d)
			}
		}
	}
	s := setOf(c, elems)
	if rapid.Bool().Draw(t, label+"-pending") { // a write being built
		s.Add(rapid.SampledFrom([]string{"x", "y", "new"}).Draw(t, label+"-add"))
	}
	return s
}

// setOf builds a set from a clock and each element's dots.
func setOf(c clock, elems map[string][]dot) *ORSet[string] {
	s := &ORSet[string]{clock: c}
	for _, e := range slices.Sorted(maps.Keys(elems)) {
		ds := slices.Clone(elems[e])
		slices.SortFunc(ds, dot.compare)
		s.elems = append(s.elems, setEntry[string]{e, ds})
	}
	return s
}

// dotsOf returns each element's dots.
func dotsOf(s *ORSet[string]) map[string][]dot {
	out := map[string][]dot{}
	for _, x := range s.elems {
		out[x.elem] = x.dots
	}
	return out
}

// genHistory fixes which elements each dot added.
func genHistory(t *rapid.T) func(dot) []string {
	elems := []string{"x", "y", "z"}
	table := map[dot][]string{}
	for _, a := range propActors {
		for k := uint64(1); k <= 12; k++ {
			table[dot{a, k}] = rapid.SliceOfNDistinct(rapid.SampledFrom(elems), 0, 2, rapid.ID[string]).Draw(t, fmt.Sprintf("adds-%s%d", a, k))
		}
	}
	return func(d dot) []string { return table[d] }
}

// setBytes is a canonical form for comparing sets.
func setBytes(t *rapid.T, s *ORSet[string]) string {
	b, err := encodeSet(s)
	require.NoError(t, err)
	return string(b)
}

func TestORSet_Merge_CommutativeAssociativeIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t)
		a, b, c := genSet(t, "a", h), genSet(t, "b", h), genSet(t, "c", h)
		require.Equal(t, setBytes(t, joinSets(a, b)), setBytes(t, joinSets(b, a)), "commutative")
		require.Equal(t, setBytes(t, joinSets(joinSets(a, b), c)), setBytes(t, joinSets(a, joinSets(b, c))), "associative")
		require.Equal(t, setBytes(t, a), setBytes(t, joinSets(a, a)), "idempotent")
		// The merge keeps what either side added and the other has not seen.
		ab := dotsOf(joinSets(a, b))
		for e, ds := range dotsOf(a) {
			for _, d := range ds {
				if !b.clock.covers(d) {
					require.Contains(t, ab[e], d, "an add the other side never saw survives")
				}
			}
		}
	})
}

func TestClock_Compact(t *testing.T) {
	tests := map[string]struct {
		in   clock
		want clock
	}{
		"cloud extends the vector": {
			in:   clock{vv: versionVector{{"a", 2}}, cloud: []dot{{"a", 4}, {"a", 3}}},
			want: clock{vv: versionVector{{"a", 4}}},
		},
		"gap stays in the cloud": {
			in:   clock{vv: versionVector{{"a", 2}}, cloud: []dot{{"a", 5}, {"b", 1}, {"a", 2}}},
			want: clock{vv: versionVector{{"a", 2}, {"b", 1}}, cloud: []dot{{"a", 5}}},
		},
		"empty": {in: clock{}, want: clock{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := tc.in.compact()
			require.Equal(t, tc.want.vv, got.vv)
			require.Equal(t, len(tc.want.cloud), len(got.cloud))
			if len(got.cloud) > 0 {
				require.Equal(t, tc.want.cloud, got.cloud)
			}
		})
	}
	// A sibling minted as a:10 has not seen a:9.
	c := clock{vv: versionVector{{"a", 8}}}.withDot(dot{"a", 10})
	require.False(t, c.covers(dot{"a", 9}))
	require.True(t, c.covers(dot{"a", 10}))
	require.False(t, c.covers(selfDot))
}

func TestClock_Join_IsSetUnion(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genClock(t, "a"), genClock(t, "b")
		j := joinClocks(a, b)
		want := map[dot]bool{}
		for _, d := range append(clockDots(a), clockDots(b)...) {
			want[d] = true
		}
		got := map[dot]bool{}
		for _, d := range clockDots(j) {
			require.False(t, got[d], "dot %v twice: not compact", d)
			got[d] = true
		}
		require.Equal(t, want, got)
		for _, d := range j.cloud {
			require.Greater(t, d.Counter, j.vv.get(d.Actor)+1, "cloud dot %v could extend the vector", d)
		}
	})
}

func TestORSet_Encoding_RoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSet(t, "s", genHistory(t))
		own := dot{"e", rapid.Uint64Range(1, 1<<40).Draw(t, "own")}
		b, err := encodeSet(s)
		require.NoError(t, err)
		got, err := decodeSet[string](b, own)
		require.NoError(t, err)
		// The written set, its self dots resolved to the sibling's dot.
		elems := map[string][]dot{}
		for e, ds := range dotsOf(s) {
			for _, d := range ds {
				if d == selfDot {
					d = own
				}
				elems[e] = append(elems[e], d)
			}
		}
		want := setOf(s.clock.withDot(own), elems)
		require.Equal(t, setBytes(t, want), setBytes(t, got))
		require.Equal(t, s.Elements(), got.Elements())
	})
}

// Dots whose packed form would not fit in 64 bits are written as pairs.
func TestORSet_Encoding_HugeCounters(t *testing.T) {
	vv := versionVector{}
	for _, a := range []string{"a", "b", "c", "d"} {
		vv = append(vv, vvEntry{a, maxCounter})
	}
	huge := dot{"e", maxCounter}
	s := setOf(clock{vv: vv, cloud: []dot{huge}}, map[string][]dot{"x": {huge}, "y": {{"a", maxCounter - 1}, {"b", 3}}, "z": {selfDot}})
	b, err := encodeSet(s)
	require.NoError(t, err)
	got, err := decodeSet[string](b, dot{"f", 1})
	require.NoError(t, err)
	require.Equal(t, []string{"x", "y", "z"}, got.Elements())
	require.Equal(t, map[string][]dot{"x": {huge}, "y": {{"a", maxCounter - 1}, {"b", 3}}, "z": {{"f", 1}}}, dotsOf(got))
	require.True(t, got.clock.covers(huge))
}

func TestORSet_Encoding_Integers(t *testing.T) {
	s := &ORSet[int8]{}
	s.Add(-128, 0, 127)
	b, err := encodeSet(s)
	require.NoError(t, err)
	got, err := decodeSet[int8](b, dot{"a", 1})
	require.NoError(t, err)
	require.Equal(t, []int8{-128, 0, 127}, got.Elements())

	big := &ORSet[int64]{}
	big.Add(300)
	b, err = encodeSet(big)
	require.NoError(t, err)
	_, err = decodeSet[int8](b, dot{"a", 1})
	require.ErrorContains(t, err, "out of range", "an element too big for the type is refused")
	_, err = decodeSet[string](b, dot{"a", 1})
	require.Error(t, err, "an integer element read as a string")
}

func TestCRDT_Decode_RefusesBadValues(t *testing.T) {
	set := setOf(clock{vv: versionVector{{"a", 3}}}, map[string][]dot{"x": {{"a", 2}}, "y": {selfDot}})
	good, err := encodeSet(set)
	require.NoError(t, err)
	_, err = decodeSet[string](good, dot{"b", 1})
	require.NoError(t, err)

	tests := map[string][]byte{
		"empty":            {},
		"not msgpack":      {0xc1},
		"counter as a set": encodeCounter(&Counter{delta: pn{P: 1}}),
		"truncated":        good[:len(good)-1],
		"trailing bytes":   append(slices.Clone(good), 0),
		"huge list":        {0x95, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"unsorted":         mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{3}, []uint64{}, []any{"y", 0, "x", 0}}),
		"unseen dot":       mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{3}, []uint64{}, []any{"x", 5}}),
		"dot below table":  mustEncodeRaw(t, []any{tagORSet, []string{"a", "b"}, []uint64{3, 3}, []uint64{}, []any{"x", 1}}),
		"repeated dot":     mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{3}, []uint64{}, []any{"x", []uint64{0, 2, 0, 2}}}),
		"pair past table":  mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{3}, []uint64{}, []any{"x", []uint64{1, 2}}}),
		"odd pairs":        mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{3}, []uint64{}, []any{"x", []uint64{0, 2, 0}}}),
		"self in cloud":    mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{3}, []uint64{0, 0}, []any{}}),
		"no dots":          mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{3}, []uint64{}, []any{"x", []uint64{}}}),
		"unsorted actors":  mustEncodeRaw(t, []any{tagORSet, []string{"b", "a"}, []uint64{3, 3}, []uint64{}, []any{}}),
		"counter too big":  mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{1 << 63}, []uint64{}, []any{}}),
		"odd element list": mustEncodeRaw(t, []any{tagORSet, []string{"a"}, []uint64{3}, []uint64{}, []any{"x"}}),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := decodeSet[string](b, dot{"b", 1})
			require.Error(t, err)
		})
	}

	_, err = decodeCounter(good, dot{"b", 1})
	require.ErrorContains(t, err, "type tag 1, want 2 (a Counter)")
	_, err = decodeCounter(mustEncodeRaw(t, []any{tagCounter, []string{"a"}, []uint64{5}, []uint64{1}, []uint64{0}, 0, 0}), dot{"a", 5})
	require.ErrorContains(t, err, "include the sibling's own dot")
	_, err = decodeCounter(mustEncodeRaw(t, []any{tagCounter, []string{"a"}, []uint64{5, 6}, []uint64{1}, []uint64{0}, 0, 0}), dot{"b", 1})
	require.Error(t, err, "columns of different lengths")
	_, err = decodeRegister(good)
	require.ErrorContains(t, err, "want 3 (a Register)")
}

func mustEncodeRaw(t *testing.T, v any) []byte {
	p := getEncoder()
	require.NoError(t, p.enc.Encode(v))
	return p.finish()
}

// FuzzCRDT_Decode feeds arbitrary bytes to every decoder: none panics, and
// whatever decodes encodes again.
func FuzzCRDT_Decode(f *testing.F) {
	set := setOf(clock{vv: versionVector{{"a", 3}}, cloud: []dot{{"b", 7}}}, map[string][]dot{"x": {{"a", 2}, {"b", 7}}, "y": {selfDot}})
	b, _ := encodeSet(set)
	f.Add(b)
	f.Add(encodeCounter(&Counter{base: map[string]pnBase{"a": {N: 2, pn: pn{3, 1}}}, delta: pn{P: 1}}))
	f.Add(encodeRegister([]byte("v")))
	f.Fuzz(func(t *testing.T, b []byte) {
		own := dot{"z", 9}
		if s, err := decodeSet[string](b, own); err == nil {
			_, err := encodeSet(s)
			require.NoError(t, err)
		}
		if s, err := decodeSet[int16](b, own); err == nil {
			_, err := encodeSet(s)
			require.NoError(t, err)
		}
		if c, err := decodeCounter(b, own); err == nil {
			_ = encodeCounter(c)
			_ = c.Value()
		}
		_, _ = decodeRegister(b)
	})
}

// genCounter draws a valid counter: per actor a base through some dot, and
// single changes above it. Within one history a dot's change is fixed, and
// two bases through one dot agree.
func genCounter(t *rapid.T, label string, change func(dot) pn) *Counter {
	c := &Counter{base: map[string]pnBase{}, extra: map[dot]pn{}}
	for _, a := range propActors {
		n := rapid.Uint64Range(0, 5).Draw(t, label+"-base-"+a)
		if n > 0 {
			var sum pn
			for k := uint64(1); k <= n; k++ {
				sum = sum.plus(change(dot{a, k}))
			}
			c.base[a] = pnBase{N: n, pn: sum}
		}
		for _, k := range rapid.SliceOfNDistinct(rapid.Uint64Range(n+1, 9), 0, 3, rapid.ID[uint64]).Draw(t, label+"-extra-"+a) {
			c.extra[dot{a, k}] = change(dot{a, k})
		}
	}
	return c
}

func counterEqual(t *rapid.T, want, got *Counter, msg string) {
	norm := func(c *Counter) (map[string]pnBase, map[dot]pn) {
		b, e := maps.Clone(c.base), maps.Clone(c.extra)
		if b == nil {
			b = map[string]pnBase{}
		}
		if e == nil {
			e = map[dot]pn{}
		}
		return b, e
	}
	wb, we := norm(want)
	gb, ge := norm(got)
	require.Equal(t, wb, gb, msg)
	require.Equal(t, we, ge, msg)
	require.Equal(t, want.Value(), got.Value(), msg)
}

func TestCounter_Merge_CommutativeAssociativeIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		changes := map[dot]pn{}
		for _, a := range propActors {
			for k := uint64(1); k <= 9; k++ {
				changes[dot{a, k}] = pn{rapid.Uint64Range(0, 5).Draw(t, "p"), rapid.Uint64Range(0, 5).Draw(t, "m")}
			}
		}
		h := func(d dot) pn { return changes[d] }
		a, b, c := genCounter(t, "a", h), genCounter(t, "b", h), genCounter(t, "c", h)
		counterEqual(t, joinCounters(a, b), joinCounters(b, a), "commutative")
		counterEqual(t, joinCounters(joinCounters(a, b), c), joinCounters(a, joinCounters(b, c)), "associative")
		counterEqual(t, a, joinCounters(a, a), "idempotent")
		// Every change either side knows counts exactly once.
		known := map[dot]bool{}
		for _, x := range []*Counter{a, b} {
			for actor, base := range x.base {
				for k := uint64(1); k <= base.N; k++ {
					known[dot{actor, k}] = true
				}
			}
			for d := range x.extra {
				known[d] = true
			}
		}
		var want uint64
		for d := range known {
			want += changes[d].P - changes[d].M
		}
		require.Equal(t, int64(want), joinCounters(a, b).Value())
	})
}

func TestCounter_Add(t *testing.T) {
	var c Counter
	c.Add(5)
	c.Add(-7)
	require.Equal(t, int64(-2), c.Value())
	c = Counter{}
	c.Add(-1 << 63) // math.MinInt64 does not overflow the decrement
	require.Equal(t, int64(-1<<63), c.Value())
}

func TestRegister_Merge_CommutativeAssociativeIdempotent(t *testing.T) {
	gen := rapid.Custom(func(t *rapid.T) Register[string] {
		if rapid.IntRange(0, 5).Draw(t, "never") == 0 {
			return Register[string]{}
		}
		d := dot{rapid.SampledFrom(propActors).Draw(t, "actor"), rapid.Uint64Range(1, 4).Draw(t, "counter")}
		// One dot, one write: its time and value follow from it.
		return Register[string]{Value: fmt.Sprint(d), Found: d.Counter != 3, Time: time.Unix(0, int64(d.Counter*7%3)), dot: d}
	})
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := gen.Draw(t, "a"), gen.Draw(t, "b"), gen.Draw(t, "c")
		require.Equal(t, mergeRegisters(a, b), mergeRegisters(b, a), "commutative")
		require.Equal(t, mergeRegisters(mergeRegisters(a, b), c), mergeRegisters(a, mergeRegisters(b, c)), "associative")
		require.Equal(t, a, mergeRegisters(a, a), "idempotent")
		m := mergeRegisters(a, b)
		if a.dot.Counter != 0 && b.dot.Counter != 0 {
			require.False(t, a.Time.After(m.Time) || b.Time.After(m.Time), "the latest timestamp wins")
		}
	})
}
