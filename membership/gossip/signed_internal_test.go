// Table tests of sealed records (§4.8), no network: what verify refuses, how a view merges seals, and the bounds of every decoder.

package gossip

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeSigner signs as node id with a hash, and verifies any fakeSigner's
// signature: enough to test what the gossip side checks.
type fakeSigner struct{ id string }

func (f fakeSigner) Sign(msg []byte) ([]byte, [][]byte, error) {
	sum := sha256.Sum256(append([]byte(f.id), msg...))
	return sum[:], [][]byte{[]byte(f.id)}, nil
}

func (fakeSigner) Verify(msg, sig []byte, chain [][]byte, _ time.Time) (string, error) {
	sum := sha256.Sum256(append(bytes.Clone(chain[0]), msg...))
	if !bytes.Equal(sum[:], sig) {
		return "", errors.New("fake signature mismatch")
	}
	return string(chain[0]), nil
}

func TestOpenSealed_Verify(t *testing.T) {
	now := time.Now()
	rec := entry{ID: "a", Addr: "x", Incarnation: 5, GossipAddr: "g:1", Zone: "z"}
	own, err := sealEntry(fakeSigner{"a"}, rec, now)
	require.NoError(t, err)
	byOther, err := sealEntry(fakeSigner{"m"}, rec, now)
	require.NoError(t, err)
	future, err := sealEntry(fakeSigner{"a"}, rec, now.Add(maxSignedAhead+time.Minute))
	require.NoError(t, err)
	removal, err := seal(fakeSigner{"r"}, sealRemoval, own.wire, now)
	require.NoError(t, err)
	ofRemoval, err := seal(fakeSigner{"r"}, sealRemoval, removal.wire, now)
	require.NoError(t, err)
	unknownKind, err := seal(fakeSigner{"a"}, 9, own.wire, now)
	require.NoError(t, err)
	tampered := func() []byte {
		env, err := decodeEnvelope(own.wire)
		require.NoError(t, err)
		changed := rec
		changed.Left = true
		body, err := encode(0, changed)
		require.NoError(t, err)
		env.Body = body[1:]
		w, err := encodeEnvelope(env)
		require.NoError(t, err)
		return w
	}()

	for name, tc := range map[string]struct {
		wire        []byte
		openErr     error // from openSealed
		verifyErr   error // from verify
		remover     string
		left        bool
		signedAtOff time.Duration
	}{
		"own record":         {wire: own.wire},
		"signed by another":  {wire: byOther.wire, verifyErr: errForged},
		"dated in future":    {wire: future.wire, verifyErr: errForged},
		"tampered body":      {wire: tampered, left: true, verifyErr: errForged},
		"removal":            {wire: removal.wire, remover: "r", left: true},
		"removal of removal": {wire: ofRemoval.wire, openErr: errMalformed},
		"unknown kind":       {wire: unknownKind.wire, openErr: errMalformed},
		"empty":              {wire: nil, openErr: errMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			o, err := openSealed(tc.wire)
			if tc.openErr != nil {
				require.ErrorIs(t, err, tc.openErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, rec.ID, o.rec.ID)
			require.Equal(t, tc.left, o.rec.Left)
			remover, err := o.verify(fakeSigner{}, now)
			if tc.verifyErr != nil {
				require.ErrorIs(t, err, tc.verifyErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.remover, remover)
		})
	}
}

func TestView_MergeSealed(t *testing.T) {
	rec := func(inc uint64, left bool) entry { return entry{ID: "a", Addr: "x", Incarnation: inc, Left: left} }
	s := func(at int64, b string) sealed { return sealed{wire: []byte(b), at: at} }
	for name, tc := range map[string]struct {
		old, new entry
		os, ns   sealed
		takes    bool
	}{
		"later incarnation":         {rec(1, false), rec(2, false), s(9, "o"), s(1, "n"), true},
		"earlier incarnation":       {rec(2, false), rec(1, true), s(1, "o"), s(9, "n"), false},
		"leave of same incarnation": {rec(1, false), rec(1, true), s(9, "o"), s(1, "n"), true},
		"join after its leave":      {rec(1, true), rec(1, false), s(1, "o"), s(9, "n"), false},
		"later seal":                {rec(1, false), rec(1, false), s(1, "o"), s(2, "n"), true},
		"earlier seal":              {rec(1, false), rec(1, false), s(2, "o"), s(1, "n"), false},
		"same time, larger bytes":   {rec(1, false), rec(1, false), s(1, "a"), s(1, "b"), true},
		"same seal":                 {rec(1, false), rec(1, false), s(1, "a"), s(1, "a"), false},
	} {
		t.Run(name, func(t *testing.T) {
			var v view
			require.True(t, v.mergeSealed(tc.old, tc.os))
			require.Equal(t, tc.takes, v.mergeSealed(tc.new, tc.ns))
			want := tc.old
			if tc.takes {
				want = tc.new
			}
			require.Equal(t, want, v.records["a"])
		})
	}
}

// hostile are payloads a peer may send: deep nesting, huge counts and
// lengths, truncation. Every decoder must refuse them with an error.
func hostile(t testing.TB) map[string][]byte {
	deep := func(tag byte, depth int) []byte {
		// An entry whose seventh field (one a later release might append)
		// nests arrays depth deep.
		b := []byte{tag, 0x97, 0xa1, 'a', 0xa1, 'x', 0x01, 0xc2, 0xa0, 0xa0}
		b = append(b, bytes.Repeat([]byte{0x91}, depth)...)
		return append(b, 0xc0)
	}
	own, err := sealEntry(fakeSigner{"a"}, entry{ID: "a", Addr: "x", Incarnation: 1}, time.Unix(1, 0))
	require.NoError(t, err)
	return map[string][]byte{
		"deep entry field":        deep(msgEntryV1, 1<<20),
		"deep meta field":         deep(metaV1, maxSkipDepth+1),
		"deep map field":          append([]byte{msgEntryV1, 0x97, 0xa1, 'a', 0xa1, 'x', 0x01, 0xc2, 0xa0, 0xa0}, append(bytes.Repeat([]byte{0x81, 0xa0}, 1<<16), 0xc0)...),
		"state count 2^32-1":      {stateV1, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"sealed count 2^32-1":     {signedStateV1, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"entry fields 2^32-1":     {msgEntryV1, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a'},
		"ID announced 4 GiB":      {msgEntryV1, 0x94, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"skipped field 1 GiB":     {msgEntryV1, 0x97, 0xa1, 'a', 0xa1, 'x', 0x01, 0xc2, 0xa0, 0xa0, 0xdb, 0x4a, 0x3b, 0x69, 0x83},
		"sealed announced 4 GiB":  {signedStateV1, 0x91, 0xc6, 0xff, 0xff, 0xff, 0xff},
		"envelope of 9 certs":     append([]byte{msgSignedV1, 0x95, 0x01, 0xc4, 0x00, 0x00, 0xc4, 0x00, 0x99}, bytes.Repeat([]byte{0xc4, 0x00}, 9)...),
		"truncated sealed record": append([]byte{msgSignedV1}, own.wire[:len(own.wire)-1]...),
		"trailing bytes":          append(append([]byte{msgSignedV1}, own.wire...), 0x00),
	}
}

func TestDecoders_RefuseHostilePayloads(t *testing.T) {
	for name, b := range hostile(t) {
		t.Run(name, func(t *testing.T) {
			require.Error(t, decodeAny(b))
		})
	}
}

// decodeAny runs the decoder b's tag names, as a node receiving b would.
func decodeAny(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", errMalformed)
	}
	switch b[0] {
	case metaV1, msgEntryV1:
		_, err := decodeEntry(b[0], b)
		return err
	case stateV1:
		_, err := decodeState(b)
		return err
	case msgSignedV1:
		_, err := openSealed(b[1:])
		return err
	case signedStateV1:
		wires, err := decodeSealedState(b)
		for _, w := range wires {
			if _, err := openSealed(w); err != nil {
				return err
			}
		}
		return err
	}
	return fmt.Errorf("%w: layout %d", errMalformed, b[0])
}

// FuzzDecode feeds every gossip decoder (node metadata, a broadcast record,
// a sealed record, a push/pull state of either kind) arbitrary bytes: none
// may panic or recurse without bound, and what decodes encodes back to the
// same records.
func FuzzDecode(f *testing.F) {
	for _, b := range hostile(f) {
		f.Add(b)
	}
	e := entry{ID: "a", Addr: "127.0.0.1:7000", Incarnation: 7, GossipAddr: "127.0.0.1:7946", Zone: "z"}
	for _, v := range []struct {
		tag byte
		v   any
	}{{metaV1, metaRecord(e)}, {msgEntryV1, e}, {stateV1, []entry{e, {ID: "b", Left: true}}}} {
		b, err := encode(v.tag, v.v)
		require.NoError(f, err)
		f.Add(b)
	}
	own, err := sealEntry(fakeSigner{"a"}, e, time.Unix(1, 0))
	require.NoError(f, err)
	removal, err := seal(fakeSigner{"r"}, sealRemoval, own.wire, time.Unix(2, 0))
	require.NoError(f, err)
	state, err := encode(signedStateV1, [][]byte{own.wire, removal.wire})
	require.NoError(f, err)
	f.Add(sealedMessage(own.wire))
	f.Add(sealedMessage(removal.wire))
	f.Add(state)

	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeAny(b)
		if len(b) > 0 && b[0] == stateV1 {
			records, err := decodeState(b)
			if err != nil {
				return
			}
			again, err := encode(stateV1, records)
			require.NoError(t, err)
			back, err := decodeState(again)
			require.NoError(t, err)
			require.Equal(t, records, back)
		}
		if len(b) > 0 && b[0] == msgSignedV1 {
			o, err := openSealed(b[1:])
			if err != nil {
				return
			}
			// What opens verifies only if signed by its owner.
			if _, err := o.verify(fakeSigner{}, time.Now()); err == nil {
				require.Equal(t, o.rec.ID, string(o.owner.Chain[0]))
			}
		}
	})
}
