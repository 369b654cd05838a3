// message_test.go: DESIGN §8 round trips and rejects of every message kind:
// the envelope, per-kind bodies with their bounds, fields of other versions
// skipped (to a bounded depth), and fuzz targets per kind.
package dynamo

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// wtLimits are the wire limits of a Store with the default Limits over the
// default frame.
var wtLimits = limitsFor(DefaultConfig().withDefaults().Limits, 16<<20)

// wtBodies are well-formed bodies of each kind, some of several shapes.
func wtBodies() map[string]body {
	st := encodeState(vcState("a:1", "a:1=v"))
	return map[string]body{
		"get":                &getReq{Key: []byte("k")},
		"get, flags":         &getReq{Key: []byte("k"), Flags: flagNoReadThrough | flagWantActor},
		"get-reply":          &getReply{State: st, Actor: "n1/0a.3"},
		"get-reply, absent":  &getReply{},
		"replicate":          &replicateReq{Key: []byte{0, 1, 2}, State: st},
		"replicate as hint":  &replicateReq{Key: []byte("k"), State: st, HintFor: "n3"},
		"ack":                &ackReply{},
		"ack of a put":       &ackReply{Dot: dot{"n1/0a.3", 7}},
		"put, dotted":        &putReq{Key: []byte("k"), Value: []byte("v"), Context: vcVV("a/01:3"), W: 2, ContextDot: dot{"b/02", 5}},
		"ping":               &pingReq{},
		"put":                &putReq{Key: []byte("cart"), Value: []byte("milk"), Context: vcVV("a/01:3 b/02:1"), W: 2, TimeoutMS: 1500, PrimariesOnly: true, ReqID: 77},
		"delete":             &putReq{Key: []byte("cart"), Tombstone: true, Context: vcVV("a/01:4"), W: 3, TimeoutMS: 1},
		"error":              &errorReply{Code: codeWriteQuorum, Msg: "n2: timeout", Need: 2, Got: 1},
		"error, bare":        &errorReply{Code: codeProtocol, Msg: "bad"},
		"ranges, implicit":   &rangesReq{RingHash: 0xfeed, Ranges: []uint32{0, 4, 4, 9}},
		"ranges, explicit":   &rangesReq{Explicit: true, Runs: []uint32{0, 3, 7, 9}, Ranges: []uint32{0, 5}},
		"hashes":             &hashesReply{Hashes: []uint64{1, 1 << 63}},
		"keys":               &keysReq{Parts: []uint32{3, 5, 8}, After: []byte("m")},
		"key list":           &keyListReply{Keys: [][]byte{[]byte("a"), []byte("b")}, Digests: []uint64{9, 10}, Whole: 1},
		"exchange":           &exchangeReq{Keys: [][]byte{[]byte("a"), []byte("b")}, States: [][]byte{st, nil}},
		"exchange, push":     &exchangeReq{Keys: [][]byte{[]byte("a")}, States: [][]byte{st}, PushOnly: true},
		"states":             &statesReply{States: [][]byte{nil, st}},
		"purge":              &purgeReq{Key: []byte("k"), Digest: 42},
		"fold":               &foldReq{Key: []byte("k"), Entries: vcVV("a/01.1:3")},
		"key at its limit":   &getReq{Key: bytes.Repeat([]byte("k"), wtLimits.key)},
		"value at its limit": &putReq{Key: []byte("k"), Value: make([]byte, wtLimits.value), W: 1},
	}
}

// wtNorm prints b's fields, for comparisons: nil and empty slices print
// alike, as they mean the same on the wire.
func wtNorm(t testing.TB, b body) string {
	t.Helper()
	return fmt.Sprintf("%+v", b)
}

func TestMessage_RoundTrip(t *testing.T) {
	for name, b := range wtBodies() {
		t.Run(name, func(t *testing.T) {
			enc := encodeMessage(0xdeadbeef, "n7", b)
			m, err := decodeMessage(enc, wtLimits)
			require.NoError(t, err)
			require.Equal(t, uint32(0xdeadbeef), m.Cluster)
			require.Equal(t, "n7", m.From)
			require.Equal(t, b.kind(), m.Body.kind())
			require.Equal(t, enc, encodeMessage(m.Cluster, m.From, m.Body), "the encoding is canonical")
		})
	}
}

// A message of a newer version with more fields than this node knows
// decodes, its extra fields skipped, in the envelope and in the body; one
// with fewer body fields gets zero values (DESIGN §8).
func TestMessage_OtherFieldCounts(t *testing.T) {
	put := wtBodies()["put"]
	enc := encodeMessage(9, "n1", put)
	future := []any{"a field from the future", []any{1, "x", map[string]int{"y": 2}}, nil, 3.5, []byte{1}}

	t.Run("more in the envelope", func(t *testing.T) {
		n, rest := wtSplitArray(t, enc)
		var b bytes.Buffer
		e := msgpack.NewEncoder(&b)
		require.NoError(t, e.EncodeArrayLen(n+len(future)))
		b.Write(rest)
		for _, v := range future {
			require.NoError(t, e.Encode(v))
		}
		m, err := decodeMessage(b.Bytes(), wtLimits)
		require.NoError(t, err)
		require.Equal(t, wtNorm(t, put), wtNorm(t, m.Body))
	})
	t.Run("more in the body", func(t *testing.T) {
		var body bytes.Buffer
		put.encode(msgpack.NewEncoder(&body))
		n, fields := wtSplitArray(t, body.Bytes())
		var b bytes.Buffer
		e := msgpack.NewEncoder(&b)
		require.NoError(t, e.Encode([]any{protocolVersion, uint8(kindPut), 9, "n1"}))
		raw := b.Bytes()
		raw[0]++ // five envelope fields, not four
		b.Reset()
		b.Write(raw)
		require.NoError(t, e.EncodeArrayLen(n+len(future)))
		b.Write(fields)
		for _, v := range future {
			require.NoError(t, e.Encode(v))
		}
		m, err := decodeMessage(b.Bytes(), wtLimits)
		require.NoError(t, err)
		require.Equal(t, wtNorm(t, put), wtNorm(t, m.Body))
	})
	t.Run("fewer in the body", func(t *testing.T) {
		m, err := decodeMessage(wtPack(t, protocolVersion, uint8(kindPut), 9, "n1", []any{[]byte("k")}), wtLimits)
		require.NoError(t, err)
		require.Equal(t, wtNorm(t, &putReq{Key: []byte("k")}), wtNorm(t, m.Body))
	})
}

func TestMessage_Rejects(t *testing.T) {
	valid := encodeMessage(9, "n1", wtBodies()["put"])
	_, rest := wtSplitArray(t, valid)
	env := func(k kind, body ...any) []byte { return wtPack(t, protocolVersion, uint8(k), 9, "n1", body) }
	long := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	tests := map[string][]byte{
		"empty input":               {},
		"nil":                       {0xc0},
		"garbage text":              []byte("GET / HTTP/1.1\r\n\r\n"),
		"garbage bytes":             {0xff, 0xfe, 0xc1},
		"not an array":              {0x01},
		"envelope of four":          wtPack(t, protocolVersion, uint8(kindPing), 9, "n1"),
		"protocol 1":                wtPack(t, 1, uint8(kindGet), 9, []byte("k"), nil, nil, false),
		"newer protocol":            wtPack(t, protocolVersion+1, uint8(kindPing), 9, "n1", []any{}),
		"protocol zero":             wtPack(t, 0, uint8(kindPing), 9, "n1", []any{}),
		"version of the wrong type": wtPack(t, "2", uint8(kindPing), 9, "n1", []any{}),
		"unknown kind":              wtPack(t, protocolVersion, 200, 9, "n1", []any{}),
		"kind zero":                 wtPack(t, protocolVersion, 0, 9, "n1", []any{}),
		"kind of the wrong type":    wtPack(t, protocolVersion, "get", 9, "n1", []any{}),
		"cluster beyond 32 bits":    wtPack(t, protocolVersion, uint8(kindPing), uint64(1)<<32, "n1", []any{}),
		"sender too long":           wtPack(t, protocolVersion, uint8(kindPing), 9, strings.Repeat("n", maxNodeIDLen+1), []any{}),
		"body not an array":         wtPack(t, protocolVersion, uint8(kindPing), 9, "n1", "body"),
		"key of the wrong type":     env(kindGet, 42),
		"no key":                    env(kindGet),
		"empty key":                 env(kindGet, []byte{}),
		"key too long":              env(kindGet, long(wtLimits.key+1)),
		"exchange key too long":     env(kindAEExchange, [][]byte{long(wtLimits.key + 1)}, [][]byte{nil}),
		"exchange lists differ":     env(kindAEExchange, [][]byte{[]byte("a"), []byte("b")}, [][]byte{nil}),
		"exchange empty key":        env(kindAEExchange, [][]byte{{}}, [][]byte{nil}),
		"exchange of too many keys": env(kindAEExchange, make([][]byte, maxBatchList+1), make([][]byte, maxBatchList+1)),
		"key list lengths differ":   env(kindAEKeyList, [][]byte{[]byte("a")}, []uint64{}),
		"value too long":            env(kindPut, []byte("k"), long(wtLimits.value+1)),
		"context too long":          env(kindPut, []byte("k"), nil, false, wtLongVV(wtLimits.context)),
		"context not sorted":        env(kindPut, []byte("k"), nil, false, []any{"b", 1, "a", 1}),
		"context with a zero":       env(kindPut, []byte("k"), nil, false, []any{"a", 0}),
		"context of the wrong type": env(kindPut, []byte("k"), nil, false, "a:1"),
		"negative W":                env(kindPut, []byte("k"), nil, false, nil, -1),
		"put dot without actor":     env(kindPut, []byte("k"), nil, false, nil, 1, 1, false, 0, "", 3),
		"put dot without counter":   env(kindPut, []byte("k"), nil, false, nil, 1, 1, false, 0, "a", 0),
		"put dot actor too long":    env(kindPut, []byte("k"), nil, false, nil, 1, 1, false, 0, strings.Repeat("a", maxActorLen+1), 3),
		"put dot beyond the limit":  env(kindPut, []byte("k"), nil, false, nil, 1, 1, false, 0, "a", uint64(maxCounter)+1),
		"put dot over the context":  env(kindPut, []byte("k"), nil, false, wtLongVV(wtLimits.context-70), 1, 1, false, 0, strings.Repeat("a", 100), 3),
		"ack dot without counter":   env(kindAck, "a", 0),
		"ack dot without actor":     env(kindAck, "", 2),
		"negative count":            env(kindError, 1, "m", -2),
		"message too long":          env(kindError, 1, strings.Repeat("m", maxMsgLen+1)),
		"actor too long":            env(kindGetReply, nil, strings.Repeat("a", maxActorLen+1)),
		"odd range list":            env(kindAERanges, false, nil, 0, []uint32{1}),
		"too many ranges":           env(kindAERanges, false, nil, 0, make([]uint32, maxRangeList+2)),
		"too many parts":            env(kindAEKeys, make([]uint32, maxPartsListed+1)),
		"part beyond 32 bits":       env(kindAEKeys, []uint64{1 << 32}),
		"purge without a digest":    env(kindPurge, []byte("k"), 0),
		"claims 2^31 fields":        append(wtArray32(1<<31), rest...),
		"claims 2^31 body fields":   append(wtPack(t, protocolVersion, uint8(kindPing), 9, "n1")[:len(wtPack(t, protocolVersion, uint8(kindPing), 9, "n1"))], wtArray32(1<<31)...),
		"trailing byte":             append(bytes.Clone(valid), 0x00),
		"two messages":              append(bytes.Clone(valid), valid...),
	}
	tests["claims 2^31 body fields"][0]++ // five envelope fields
	for i := 1; i < len(valid); i++ {
		tests["truncated to "+strings.Repeat("*", i)] = valid[:i]
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := decodeMessage(b, wtLimits)
			require.ErrorIs(t, err, ErrProtocol)
			require.Nil(t, m)
		})
	}
}

// wtLongVV is a vector whose text form exceeds n bytes.
func wtLongVV(n int) []any {
	var out []any
	for i := 0; vvTextSize(make(versionVector, len(out)/2)) <= n; i++ {
		out = append(out, fmt.Sprintf("%060d", i), 1)
	}
	return out
}

// SECURITY: decoders have depth limits. A field of a newer version is
// skipped whatever its type, but a frame of nested arrays, however deep,
// is refused with an error, not a stack overflow (msgpack's own Skip
// recurses once per level).
func TestMessage_DeepNesting_Refused(t *testing.T) {
	const depth = 16 << 20 // a whole frame of one-element arrays
	nested := bytes.Repeat([]byte{0x91}, depth)
	nested = append(nested, 0xc0)
	t.Run("envelope", func(t *testing.T) {
		b := wtPack(t, protocolVersion, uint8(kindPing), 9, "n1", []any{})
		b[0]++ // a sixth, nested field
		_, err := decodeMessage(append(b, nested...), wtLimits)
		require.ErrorIs(t, err, ErrProtocol)
		require.ErrorContains(t, err, "nested deeper")
	})
	t.Run("body", func(t *testing.T) {
		b := wtPack(t, protocolVersion, uint8(kindPing), 9, "n1")
		b[0]++
		_, err := decodeMessage(append(append(b, 0x91), nested...), wtLimits)
		require.ErrorIs(t, err, ErrProtocol)
	})
	t.Run("state", func(t *testing.T) {
		b := wtPack(t, 1, []any{"a", 1}, []any{})
		b[0]++ // a fourth, nested field
		_, err := decodeState(append(b, nested...))
		require.ErrorIs(t, err, ErrCorrupt)
	})
	t.Run("within the depth, skipped", func(t *testing.T) {
		b := wtPack(t, protocolVersion, uint8(kindPing), 9, "n1", []any{})
		b[0]++
		ok := append(bytes.Repeat([]byte{0x91}, maxSkipDepth-1), 0xc0)
		m, err := decodeMessage(append(b, ok...), wtLimits)
		require.NoError(t, err)
		require.IsType(t, &pingReq{}, m.Body)
	})
}

// A peer (before any cluster check) must not make a node allocate what a
// length prefix claims when the input holds only a few bytes.
func TestMessage_DeclaredLengthBeyondInput_NoHugeAllocation(t *testing.T) {
	marker := []byte(wtMarker)
	tests := map[string]struct {
		b   body
		str bool
	}{
		"key":            {b: &getReq{Key: marker}},
		"state":          {b: &replicateReq{Key: []byte("k"), State: marker}},
		"value":          {b: &putReq{Key: []byte("k"), Value: marker}},
		"keys element":   {b: &exchangeReq{Keys: [][]byte{marker}, States: [][]byte{nil}}},
		"states element": {b: &statesReply{States: [][]byte{marker}}},
		"msg":            {b: &errorReply{Msg: string(marker)}, str: true},
		"hint target":    {b: &replicateReq{Key: []byte("k"), HintFor: string(marker)}, str: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			enc := wtClaim(t, encodeMessage(9, "n1", tc.b), marker, wtClaimed, tc.str)
			var err error
			n := wtAllocated(func() { _, err = decodeMessage(enc, wtLimits) })
			require.ErrorIs(t, err, ErrProtocol)
			require.Less(t, n, uint64(wtAllowed), "decoding %d bytes allocated %d MiB", len(enc), n>>20)
		})
	}
}

func TestMessage_Kind_String(t *testing.T) {
	tests := map[kind]string{
		kindGet: "get", kindGetReply: "get-reply", kindReplicate: "replicate",
		kindAck: "ack", kindPut: "put", kindError: "error", kindInvalid: "kind(0)", 200: "kind(200)",
	}
	for k, want := range tests {
		require.Equal(t, want, k.String())
	}
}

// fuzzMessage checks that decodeMessage never panics, that what it refuses
// is a protocol error, and that what it accepts re-encodes canonically.
func fuzzMessage(t *testing.T, b []byte) {
	m, err := decodeMessage(b, wtLimits)
	if err != nil {
		require.ErrorIs(t, err, ErrProtocol)
		require.Nil(t, m)
		return
	}
	enc := encodeMessage(m.Cluster, m.From, m.Body)
	again, err := decodeMessage(enc, wtLimits)
	require.NoError(t, err, "re-encoded message does not decode")
	require.Equal(t, wtNorm(t, m.Body), wtNorm(t, again.Body))
	require.Equal(t, enc, encodeMessage(again.Cluster, again.From, again.Body), "encode(decode(encode(m))) differs")
}

// wtFuzzSeeds adds, for each body of kind k (all kinds when k is 0), its
// encoding, its truncations at a few points, a deeply nested trailing
// field, and a count that claims far more than is there.
func wtFuzzSeeds(f *testing.F, k kind) {
	for _, b := range wtBodies() {
		if k != 0 && b.kind() != k {
			continue
		}
		enc := encodeMessage(9, "n1", b)
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
		f.Add(enc[:len(enc)-1])
		deep := bytes.Clone(enc)
		deep[0]++
		f.Add(append(deep, append(bytes.Repeat([]byte{0x91}, 4096), 0xc0)...))
		f.Add(append(bytes.Clone(enc[:len(enc)-1]), wtArray32(1<<30)...))
	}
}

func FuzzDecodeMessage(f *testing.F) {
	wtFuzzSeeds(f, 0)
	f.Add([]byte{})
	f.Add(wtPack(f, protocolVersion, uint8(kindPut), 9, "n1", []any{[]byte("k"), nil, false, []any{"b", 1, "a", 1}}))
	f.Fuzz(fuzzMessage)
}

// One target per request kind, so each fuzzes its own body's decoder.
func FuzzDecodeMessage_Get(f *testing.F)       { wtFuzzSeeds(f, kindGet); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_GetReply(f *testing.F)  { wtFuzzSeeds(f, kindGetReply); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_Replicate(f *testing.F) { wtFuzzSeeds(f, kindReplicate); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_Put(f *testing.F)       { wtFuzzSeeds(f, kindPut); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_Error(f *testing.F)     { wtFuzzSeeds(f, kindError); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_Ranges(f *testing.F)    { wtFuzzSeeds(f, kindAERanges); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_Keys(f *testing.F)      { wtFuzzSeeds(f, kindAEKeys); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_KeyList(f *testing.F)   { wtFuzzSeeds(f, kindAEKeyList); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_Exchange(f *testing.F)  { wtFuzzSeeds(f, kindAEExchange); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_States(f *testing.F)    { wtFuzzSeeds(f, kindAEStates); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_Purge(f *testing.F)     { wtFuzzSeeds(f, kindPurge); f.Fuzz(fuzzMessage) }
func FuzzDecodeMessage_Fold(f *testing.F)      { wtFuzzSeeds(f, kindFold); f.Fuzz(fuzzMessage) }

// A forwarded put refused at decode keeps its reason: the sender gets
// ErrValueTooLarge or ErrBadContext, as when the receiver checked them
// itself, and a hostile sender the same; nothing is stored.
func TestMessage_OversizedPut_KeepsItsReason(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.N, cfg.R, cfg.W = 1, 1, 1 })
	s := c.stores[0]
	long := versionVector{}
	for i := 0; vvTextSize(long) <= s.cfg.Limits.MaxContextSize; i++ {
		long = append(long, vvEntry{Actor: fmt.Sprintf("%0100d", i), Counter: 1})
	}
	tests := map[string]struct {
		b    *putReq
		want error
	}{
		"value":   {&putReq{Key: []byte("k"), Value: make([]byte, s.cfg.Limits.MaxValueSize+1), W: 1}, ErrValueTooLarge},
		"context": {&putReq{Key: []byte("k"), Value: []byte("v"), W: 1, Context: long}, ErrBadContext},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			raw, err := s.handle(t.Context(), s.encode(tc.b))
			require.NoError(t, err)
			_, err = s.reply(Member{ID: "n0"}, raw)
			require.ErrorIs(t, err, tc.want)
		})
	}
	vals, _ := get(t, s, "k")
	require.Empty(t, vals, "nothing was stored")
}
