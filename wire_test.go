// wire_test.go: round trips and rejects of the root package's encodings: a
// key's stored state (§4.4), the message envelope (DESIGN §8), and the text
// form of a Context; plus fuzz targets that check decoders never panic and
// that whatever decodes re-encodes to the same thing.
package dynamo

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// wtPack encodes vals as one msgpack array, for hand-made malformed input.
func wtPack(t testing.TB, vals ...any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(vals)
	require.NoError(t, err)
	return b
}

// wtSplitArray splits an encoded msgpack array into its length and the bytes
// of its elements.
func wtSplitArray(t testing.TB, b []byte) (int, []byte) {
	t.Helper()
	n, err := msgpack.NewDecoder(bytes.NewReader(b)).DecodeArrayLen()
	require.NoError(t, err)
	var hdr bytes.Buffer
	require.NoError(t, msgpack.NewEncoder(&hdr).EncodeArrayLen(n))
	require.Equal(t, hdr.Bytes(), b[:hdr.Len()], "non-canonical array header")
	return n, b[hdr.Len():]
}

// wtArray32 is a msgpack array32 header claiming n elements.
func wtArray32(n uint32) []byte {
	return []byte{0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// wtRequireSameState requires a and b to hold the same vector and siblings,
// timestamps, tombstones and values included (nil and empty values are the
// same on the wire).
func wtRequireSameState(t require.TestingT, want, got state) {
	require.Equal(t, vcString(want), vcString(got))
	require.Len(t, got.Siblings, len(want.Siblings))
	for i := range want.Siblings {
		w, g := want.Siblings[i], got.Siblings[i]
		require.Equal(t, w.Time, g.Time, "sibling %v", w.Dot)
		require.Equal(t, w.Tombstone, g.Tombstone, "sibling %v", w.Dot)
		require.True(t, bytes.Equal(w.Value, g.Value), "sibling %v: %q vs %q", w.Dot, w.Value, g.Value)
	}
}

// wtStates are well-formed states for round trips and fuzz seeds.
func wtStates() map[string]state {
	multi := vcState("a/01:3 b/02:1 c/03:9", "a/01:2=x", "a/01:3~", "c/03:9=z")
	multi.Siblings[0].Time = 1_700_000_000_000_000_000
	multi.Siblings[2].Time = -5
	return map[string]state{
		"one sibling":                vcState("a:1", "a:1=v"),
		"tombstone":                  vcState("a:2", "a:2~"),
		"empty live value":           {VV: vcVV("a:1"), Siblings: []sibling{{Dot: vcDot("a:1"), Value: []byte{}}}},
		"siblings and tombstone":     multi,
		"vector wider than siblings": vcState("a:7 b:1 c:4", "b:1=y"),
		"binary value":               {VV: vcVV("a:1"), Siblings: []sibling{{Dot: vcDot("a:1"), Value: []byte{0, 0xff, 0xc1, '\n'}}}},
		"largest counter":            {VV: versionVector{{Actor: "a", Counter: maxCounter}}, Siblings: []sibling{{Dot: dot{"a", maxCounter}, Value: []byte("x")}}},
		"longest actor": {
			VV:       versionVector{{Actor: strings.Repeat("x", maxActorLen), Counter: 1}},
			Siblings: []sibling{{Dot: dot{strings.Repeat("x", maxActorLen), 1}, Value: []byte("x")}},
		},
	}
}

func TestWire_State_RoundTrip(t *testing.T) {
	for name, st := range wtStates() {
		t.Run(name, func(t *testing.T) {
			vcRequireWellFormed(t, st)
			enc := encodeState(st)
			require.NotEmpty(t, enc)
			got, err := decodeState(enc)
			require.NoError(t, err)
			wtRequireSameState(t, st, got)
			require.Equal(t, enc, encodeState(got), "the encoding is canonical")

			// The decoded state does not alias the input.
			for i := range enc {
				enc[i] = 0
			}
			wtRequireSameState(t, st, got)
		})
	}
}

// decodeOwnedState decodes the same states, its values subslices of the
// input whose capacity ends with them: an append to one reallocates and
// leaves the input (and the value after it) as it was.
func TestWire_OwnedState_AliasesInputCapped(t *testing.T) {
	for name, st := range wtStates() {
		t.Run(name, func(t *testing.T) {
			enc := encodeState(st)
			before := bytes.Clone(enc)
			got, err := decodeOwnedState(enc)
			require.NoError(t, err)
			wtRequireSameState(t, st, got)
			for i, sb := range got.Siblings {
				if len(sb.Value) == 0 {
					continue
				}
				require.Equal(t, len(sb.Value), cap(sb.Value), "sibling %d's capacity ends with it", i)
				start := &sb.Value[0]
				inside := false
				for j := range enc {
					inside = inside || &enc[j] == start
				}
				require.True(t, inside, "sibling %d's value is a subslice of the input", i)
				grown := append(sb.Value, 0xee, 0xee)
				require.NotSame(t, &grown[0], start, "an append reallocates")
			}
			require.Equal(t, before, enc, "decoding and appending left the input as it was")
			require.Equal(t, enc, encodeState(got))
		})
	}
	marker := []byte(wtMarker)
	st := vcState("a:2 b:1", "b:1=y")
	st.Siblings = append([]sibling{{Dot: vcDot("a:2"), Value: marker}}, st.Siblings...)
	_, err := decodeOwnedState(wtClaim(t, encodeState(st), marker, 1<<20, false))
	require.ErrorIs(t, err, ErrCorrupt, "a value declared longer than the input is refused, not sliced")
}

func TestWire_State_EmptyIsNil(t *testing.T) {
	require.Nil(t, encodeState(state{}))
	for name, b := range map[string][]byte{"nil": nil, "empty": {}} {
		st, err := decodeState(b)
		require.NoError(t, err, name)
		require.True(t, st.empty(), name)
	}
}

// New fields go at the end of the state and sibling arrays; an old decoder
// skips them (DESIGN §8).
func TestWire_State_SkipsUnknownTrailingFields(t *testing.T) {
	b := wtPack(t, 1, []any{"a", 1, "b", 2}, []any{
		[]any{"a", 1, 10, false, []byte("x"), "future sibling field"},
		[]any{"b", 2, 20, true, nil, map[string]int{"f": 1}, 7},
	}, "future state field", []int{1, 2})
	st, err := decodeState(b)
	require.NoError(t, err)
	require.Equal(t, "[a:1 b:2]{a:1=x b:2~}", vcString(st))
	require.Equal(t, int64(20), st.Siblings[1].Time)
}

func TestWire_DecodeState_Rejects(t *testing.T) {
	valid := encodeState(vcState("a:2 b:1", "a:2=x", "b:1=y"))
	sib := func(actor string, counter uint64) []any { return []any{actor, counter, 0, false, []byte("v")} }
	// claimSiblings is a state whose sibling array claims n elements and
	// holds none.
	claimSiblings := func(n uint32) []byte {
		b := wtPack(t, 1, []any{"a", 1})
		b[0] = 0x93 // a fixarray of 3, not wtPack's 2
		return append(b, wtArray32(n)...)
	}
	tests := map[string][]byte{
		"unsorted vector":             wtPack(t, 1, []any{"b", 1, "a", 1}, []any{}),
		"repeated actor in vector":    wtPack(t, 1, []any{"a", 1, "a", 2}, []any{}),
		"zero counter":                wtPack(t, 1, []any{"a", 0}, []any{}),
		"counter above the bound":     wtPack(t, 1, []any{"a", uint64(maxCounter) + 1}, []any{}),
		"empty actor":                 wtPack(t, 1, []any{"", 1}, []any{}),
		"actor too long":              wtPack(t, 1, []any{strings.Repeat("x", maxActorLen+1), 1}, []any{}),
		"odd vector":                  wtPack(t, 1, []any{"a"}, []any{}),
		"vector of the wrong type":    wtPack(t, 1, "a:1", []any{}),
		"counter of the wrong type":   wtPack(t, 1, []any{"a", "one"}, []any{}),
		"sibling not covered":         wtPack(t, 1, []any{"a", 1}, []any{sib("a", 2)}),
		"sibling of an unseen actor":  wtPack(t, 1, []any{"a", 1}, []any{sib("b", 1)}),
		"sibling with a zero counter": wtPack(t, 1, []any{"a", 1}, []any{sib("a", 0)}),
		"siblings not sorted":         wtPack(t, 1, []any{"a", 2}, []any{sib("a", 2), sib("a", 1)}),
		"sibling repeated":            wtPack(t, 1, []any{"a", 2}, []any{sib("a", 1), sib("a", 1)}),
		"sibling too short":           wtPack(t, 1, []any{"a", 1}, []any{[]any{"a", 1, 0, false}}),
		"sibling field of wrong type": wtPack(t, 1, []any{"a", 1}, []any{[]any{"a", 1, 0, "no", []byte("v")}}),
		"sibling not an array":        wtPack(t, 1, []any{"a", 1}, []any{"a:1"}),
		"unknown format":              wtPack(t, 3, []any{"a", 1}, []any{sib("a", 1)}),
		"format 2 without checksum":   wtPack(t, 2, []any{"a", 1}, []any{[]any{0, 1, 0, false, []byte("v")}}),
		"format 2 actor out of range": wtPack(t, 2, []any{"a", 1}, []any{[]any{1, 1, 0, false, []byte("v")}}, uint32(0)),
		"format zero":                 wtPack(t, 0, []any{"a", 1}, []any{sib("a", 1)}),
		"too few elements":            wtPack(t, 1, []any{"a", 1}),
		"empty array":                 wtPack(t),
		"nil":                         {0xc0},
		"not an array":                wtPack(t, 1)[1:], // a bare integer
		"a map":                       func() []byte { b, _ := msgpack.Marshal(map[string]int{"a": 1}); return b }(),
		"trailing bytes":              append(bytes.Clone(valid), 0xc0),
		"two states":                  append(bytes.Clone(valid), valid...),
		"garbage text":                []byte("hello, world"),
		"garbage bytes":               {0xff, 0xfe, 0xfd, 0xc1},
		"siblings beyond the bound":   claimSiblings(maxDecodedSiblings + 1),
		"claims 2^32-1 siblings":      claimSiblings(1<<32 - 1),
		"claims a huge vector":        append([]byte{0x93, 0x01}, wtArray32(1<<31)...),
		"claims many state fields":    append(wtArray32(1<<31), valid[1:]...),
	}
	for i := 1; i < len(valid); i++ {
		tests["truncated to "+strings.Repeat("*", i)] = valid[:i]
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			st, err := decodeState(b)
			require.ErrorIs(t, err, ErrCorrupt)
			require.True(t, st.empty(), "a failed decode returns the zero state")
		})
	}
}

// wtClaim replaces, in enc, the msgpack encoding of marker (bin, or str if
// str is set) with a 32-bit header that claims claim bytes, followed by the
// marker alone: a few bytes of input that declare a huge value.
func wtClaim(t testing.TB, enc, marker []byte, claim uint32, str bool) []byte {
	t.Helper()
	var was bytes.Buffer
	e := msgpack.NewEncoder(&was)
	code := byte(0xc6) // bin32
	if str {
		require.NoError(t, e.EncodeString(string(marker)))
		code = 0xdb // str32
	} else {
		require.NoError(t, e.EncodeBytes(marker))
	}
	require.Equal(t, 1, bytes.Count(enc, was.Bytes()), "marker must occur once")
	hdr := []byte{code, byte(claim >> 24), byte(claim >> 16), byte(claim >> 8), byte(claim)}
	return bytes.Replace(enc, was.Bytes(), append(hdr, marker...), 1)
}

// wtAllocated returns the bytes the process allocated while fn ran.
func wtAllocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const (
	wtClaimed = 256 << 20 // what the hostile input declares
	wtAllowed = 16 << 20  // what decoding a few bytes may allocate
	wtMarker  = "\xab\xcd\xef\x01"
)

// The same for a stored state: a sibling value's length prefix is not
// trusted beyond the bytes present.
func TestWire_DecodeState_DeclaredLengthBeyondInput_NoHugeAllocation(t *testing.T) {
	marker := []byte(wtMarker)
	st := vcState("a:2 b:1", "b:1=y")
	st.Siblings = append([]sibling{{Dot: vcDot("a:2"), Value: marker}}, st.Siblings...)
	enc := wtClaim(t, encodeState(st), marker, wtClaimed, false)
	var err error
	n := wtAllocated(func() { _, err = decodeState(enc) })
	require.ErrorIs(t, err, ErrCorrupt)
	require.Less(t, n, uint64(wtAllowed), "decoding %d bytes allocated %d MiB", len(enc), n>>20)
}

// wtContextText encodes a context body by hand: [format, cluster, vector...].
func wtContextText(t testing.TB, vals ...any) string {
	return base64.RawURLEncoding.EncodeToString(wtPack(t, vals...))
}

var wtURLSafe = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

func TestContext_Text_RoundTrip(t *testing.T) {
	var long versionVector
	for i := range 64 {
		long = append(long, vvEntry{Actor: fmt.Sprintf("%s-%02d/%012x", strings.Repeat("n", 40), i, i), Counter: uint64(i + 1)})
	}
	tests := map[string]Context{
		"zero":            {},
		"one entry":       {cluster: clusterHash(DefaultCluster), vv: vcVV("a/01:1")},
		"several entries": {cluster: clusterHash("prod"), vv: vcVV("a/01:3 b/02:1 c/03:99")},
		"cluster zero":    {cluster: 0, vv: vcVV("a:1")},
		"largest cluster": {cluster: 0xffffffff, vv: vcVV("a:1")},
		"largest counter": {cluster: 1, vv: versionVector{{Actor: "a", Counter: maxCounter}}},
		"64 actors":       {cluster: 1, vv: long},
		"with a MAC":      {cluster: 1, vv: vcVV("a/01:3"), mac: bytes.Repeat([]byte{0xab}, contextMACSize)},
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			text, err := c.MarshalText()
			require.NoError(t, err)
			require.Regexp(t, wtURLSafe, string(text), "fit for forms and cookies")
			require.Equal(t, string(text), c.String())
			require.Equal(t, c.IsZero(), len(text) == 0)

			var got Context
			require.NoError(t, got.UnmarshalText(text))
			require.Equal(t, c.cluster, got.cluster)
			require.Equal(t, vcVVString(c.vv), vcVVString(got.vv))
			require.Equal(t, c.mac, got.mac)
			again, err := got.MarshalText()
			require.NoError(t, err)
			require.Equal(t, text, again)
		})
	}
}

func TestContext_UnmarshalText_Rejects(t *testing.T) {
	valid := Context{cluster: 77, vv: vcVV("a/01:3 b/02:1")}.String()
	tests := map[string]string{
		"not base64":                "!!!not base64!!!",
		"standard base64 symbols":   "k+/k",
		"padding":                   valid + "==",
		"whitespace":                valid[:4] + " " + valid[4:],
		"base64 of garbage":         base64.RawURLEncoding.EncodeToString([]byte("hello, world")),
		"base64 of nothing msgpack": base64.RawURLEncoding.EncodeToString([]byte{0xc1}),
		"unknown format":            wtContextText(t, 3, 77, []any{"a", 1}),
		"format 2 without MAC":      wtContextText(t, 2, 77, []any{"a", 1}),
		"format 2, MAC too short":   wtContextText(t, 2, 77, []any{"a", 1}, make([]byte, contextMACSize-1)),
		"format 2, MAC not bytes":   wtContextText(t, 2, 77, []any{"a", 1}, 5),
		"format zero":               wtContextText(t, 0, 77, []any{"a", 1}),
		"too few fields":            wtContextText(t, 1, 77),
		"cluster beyond 32 bits":    wtContextText(t, 1, uint64(1)<<32, []any{"a", 1}),
		"cluster of wrong type":     wtContextText(t, 1, "prod", []any{"a", 1}),
		"unsorted vector":           wtContextText(t, 1, 77, []any{"b", 1, "a", 1}),
		"repeated actor":            wtContextText(t, 1, 77, []any{"a", 1, "a", 2}),
		"zero counter":              wtContextText(t, 1, 77, []any{"a", 0}),
		"empty actor":               wtContextText(t, 1, 77, []any{"", 1}),
		"odd vector":                wtContextText(t, 1, 77, []any{"a"}),
		"empty vector":              wtContextText(t, 1, 77, []any{}),
		"nil vector":                wtContextText(t, 1, 77, nil),
		"oversized":                 strings.Repeat("A", MaxContextText+1),
		"oversized, valid start":    valid + strings.Repeat("A", MaxContextText),
	}
	for i := 1; i < len(valid); i++ {
		tests["truncated to "+strings.Repeat("*", i)] = valid[:i]
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			c := Context{cluster: 5, vv: vcVV("keep:1")}
			err := c.UnmarshalText([]byte(text))
			require.ErrorIs(t, err, ErrBadContext)
			require.Equal(t, Context{cluster: 5, vv: vcVV("keep:1")}, c, "a failed UnmarshalText leaves c unchanged")
		})
	}
}

// The text form decodes only what MarshalText made: bytes after the context's
// body mean the text was damaged or tampered with (decodeState rejects the
// same thing with ErrCorrupt).
func TestContext_UnmarshalText_RejectsTrailingBytes(t *testing.T) {
	body := wtPack(t, contextFormat, 77, []any{"a", 1}, make([]byte, contextMACSize))
	tests := map[string][]byte{
		"one byte":     append(bytes.Clone(body), 0x00),
		"two contexts": append(bytes.Clone(body), body...),
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			var c Context
			err := c.UnmarshalText([]byte(base64.RawURLEncoding.EncodeToString(raw)))
			require.ErrorIs(t, err, ErrBadContext)
		})
	}
}

func TestContext_UnmarshalText_EmptyIsZero(t *testing.T) {
	c := Context{cluster: 5, vv: vcVV("a:1")}
	require.NoError(t, c.UnmarshalText(nil))
	require.True(t, c.IsZero())
	require.Equal(t, Context{}, c)
}

func FuzzDecodeState(f *testing.F) {
	for _, st := range wtStates() {
		f.Add(encodeState(st))
	}
	f.Add([]byte{})
	f.Add(wtPack(f, 1, []any{"a", 1}, []any{[]any{"a", 1, 0, false, []byte("x"), "extra"}}, "extra"))
	f.Add(wtPack(f, 1, []any{"b", 1, "a", 1}, []any{}))
	f.Add(wtPack(f, 1, []any{}, []any{}))
	f.Add(wtPack(f, 1, nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		vcRequireWellFormed(t, st)
		enc := encodeState(st)
		again, err := decodeState(enc)
		require.NoError(t, err, "re-encoded state does not decode")
		wtRequireSameState(t, st, again)
		require.Equal(t, enc, encodeState(again), "encode(decode(encode(st))) differs")
	})
}

func FuzzContextUnmarshalText(f *testing.F) {
	f.Add("")
	f.Add(Context{cluster: 1, vv: vcVV("a:1")}.String())
	f.Add(Context{cluster: clusterHash("prod"), vv: vcVV("a/01:3 b/02:1 c/03:99")}.String())
	f.Add(wtContextText(f, 1, 77, []any{"b", 1, "a", 1}))
	f.Add(wtContextText(f, 1, 77, []any{}))
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, text string) {
		orig := Context{cluster: 5, vv: vcVV("keep:1")}
		c := orig
		if err := c.UnmarshalText([]byte(text)); err != nil {
			require.ErrorIs(t, err, ErrBadContext)
			require.Equal(t, orig, c, "a failed UnmarshalText changed the context")
			return
		}
		vcRequireWellFormed(t, state{VV: c.vv})
		enc, err := c.MarshalText()
		require.NoError(t, err)
		require.Regexp(t, wtURLSafe, string(enc))
		var again Context
		require.NoError(t, again.UnmarshalText(enc), "re-encoded context does not decode")
		require.Equal(t, c.cluster, again.cluster)
		require.Equal(t, vcVVString(c.vv), vcVVString(again.vv))
		enc2, err := again.MarshalText()
		require.NoError(t, err)
		require.Equal(t, enc, enc2)
	})
}

// The performance issue's memory target: a key with one sibling costs at most
// 100 bytes beyond its key and value, as stored (data key prefix plus encoded
// state), with a realistic actor (node ID, incarnation, epoch).
func TestWire_StoredOverheadPerKey(t *testing.T) {
	actor := "node-12/0123456789ab.1c"
	key := []byte("user:12345:cart")
	value := make([]byte, 1024)
	st := state{VV: versionVector{{actor, 7}}, Siblings: []sibling{{Dot: dot{actor, 7}, Time: 1_795_000_000_000_000_000, Value: value}}}
	r := newRing([]Member{{ID: "a"}}, 1024, 1)
	stored := len(dataKey(r.partition(key), key)) + len(encodeState(st))
	overhead := stored - len(key) - len(value)
	t.Logf("stored bytes beyond key and value, one sibling: %d", overhead)
	require.Less(t, overhead, 100)
}

// currentFormat knows encodeState's output and nothing else: a state of
// the first format (no checksum) is not sent on as it is.
func TestWire_CurrentFormat(t *testing.T) {
	for name, st := range wtStates() {
		require.True(t, currentFormat(encodeState(st)), name)
	}
	require.False(t, currentFormat(nil))
	require.False(t, currentFormat([]byte{0x94}))
	require.False(t, currentFormat(wtPack(t, uint64(stateFormatV1), []any{}, []any{})), "the first format")
	require.False(t, currentFormat(wtPack(t, uint64(stateFormat), []any{}, []any{}, uint32(0), "x")), "five fields")
}
