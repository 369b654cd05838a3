// integrity_test.go: DESIGN §8 input that must never poison a key: edited
// contexts, vectors at their bounds, and damaged stored states.
package dynamo

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// requireConverged runs anti-entropy on every node and requires every
// replica of key to hold the same decodable bytes.
func requireConverged(t *testing.T, c *testCluster, key string) state {
	t.Helper()
	for round := 0; round < 3; round++ {
		for _, s := range c.stores {
			if s != nil {
				_, err := s.AntiEntropy(context.Background())
				require.NoError(t, err)
			}
		}
	}
	var ref []byte
	var st state
	for i, m := range c.stores[0].PreferenceList([]byte(key), c.stores[0].cfg.N) {
		j := int(m.ID[1] - '0')
		raw, err := c.storages[j].Get(c.stores[j].dataKey(c.stores[j].ring.Load(), []byte(key)))
		require.NoError(t, err)
		st, err = decodeState(raw)
		require.NoError(t, err, "replica %s holds an undecodable state", m.ID)
		if i > 0 {
			require.True(t, bytes.Equal(ref, raw), "replica %s differs", m.ID)
		}
		ref = raw
	}
	return st
}

// Reference: issue 12 "permanent poisoning": a context whose counter for the
// coordinator's own actor is at the decoder's bound (2^62) must not make the
// key's state undecodable, even when the context itself is genuine (a valid
// MAC): the Put is refused with ErrBadContext or minted safely, and the key
// stays readable, writable and convergent on every replica.
func TestStore_Context_CounterAtBound_NeverPoisons(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.W = 3 })
	a := c.stores[0]
	ctx := context.Background()
	put(t, a, "k", "v1", Context{})
	_, cx := get(t, a, "k", WithR(3))
	local, err := a.localRead([]byte("k"))
	require.NoError(t, err)
	own := a.ownActor([]byte("k"), local)
	require.NotEmpty(t, own)
	poisoned := a.issueContext(cx.vv.with(own, maxCounter))

	err = a.Put(ctx, []byte("k"), []byte("v2"), poisoned)
	if err != nil {
		require.ErrorIs(t, err, ErrBadContext)
	}
	for i := range c.stores {
		vals, cx := get(t, c.stores[i], "k", WithR(3))
		require.NotEmpty(t, vals, "node %d reads the key", i)
		put(t, c.stores[i], "k", "after"+nodeID(i), cx)
	}
	vals, _ := get(t, a, "k", WithR(3))
	require.Len(t, vals, 1, "each write superseded the last: %v", vals)
	requireConverged(t, c, "k")
}

// A merge whose result the decoder would reject (more siblings than
// maxDecodedSiblings, each side within it) is refused, and the replica keeps
// its decodable state.
func TestStore_LocalMerge_RefusesUndecodableResult(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.N, cfg.R, cfg.W = 1, 1, 1 })
	s := c.stores[0]
	half := func(actor string) state {
		var st state
		for i := range uint64(maxDecodedSiblings/2 + 1) {
			st.VV = st.VV.with(actor, i+1)
			st.Siblings = append(st.Siblings, sibling{Dot: dot{actor, i + 1}, Value: []byte("v")})
		}
		return st
	}
	require.NoError(t, s.localMerge([]byte("k"), half("x")))
	err := s.localMerge([]byte("k"), half("y"))
	require.ErrorIs(t, err, ErrTooManySiblings)
	st, err := s.localRead([]byte("k"))
	require.NoError(t, err, "the replica's state is still decodable")
	require.Len(t, st.Siblings, maxDecodedSiblings/2+1)
}

// Reference: issue 12 item 4: every stored state carries a CRC-32C, so any
// one damaged byte (a flipped bit, a byte overwritten) is detected and the
// state is not served.
func TestWire_State_ChecksumCatchesEveryDamagedByte(t *testing.T) {
	for name, st := range wtStates() {
		enc := encodeState(st)
		for i := range enc {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				b := bytes.Clone(enc)
				b[i] ^= mask
				_, err := decodeState(b)
				require.ErrorIs(t, err, ErrCorrupt, "%s: byte %d of %d xor %#x", name, i, len(enc), mask)
			}
		}
	}
}

// States stored by earlier versions (format 1: no checksum, actors spelled
// out in each sibling) still decode.
func TestWire_State_ReadsFormat1(t *testing.T) {
	b := wtPack(t, 1, []any{"a/01.1", 2, "b/02.7", 1}, []any{
		[]any{"a/01.1", 2, 10, false, []byte("x")},
		[]any{"b/02.7", 1, 20, true, nil},
	})
	st, err := decodeState(b)
	require.NoError(t, err)
	require.Equal(t, "[a/01.1:2 b/02.7:1]{a/01.1:2=x b/02.7:1~}", vcString(st))
	again, err := decodeState(encodeState(st))
	require.NoError(t, err)
	wtRequireSameState(t, st, again)
}

// damage flips one byte in the middle of node i's stored state of key,
// behind its Store's back, as bit rot on its disk would.
func (c *testCluster) damage(i int, key string) {
	c.t.Helper()
	raw := bytes.Clone(c.record(i, key))
	require.NotEmpty(c.t, raw)
	raw[len(raw)-8] ^= 0x20 // inside the value, before the checksum
	c.setRecord(i, key, raw)
}

// Reference: issue 12 item 4: a damaged stored state is never served: the
// replica answers with ErrCorrupt, Get succeeds from the others, read repair
// gives the replica the merged state, and the replica counts the record.
func TestStore_DamagedState_NotServed_RepairedByReadRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := kvCluster(t, 3, 3, 2, 3)
		put(t, c.stores[0], "k", "the value", Context{})
		c.damage(1, "k")

		_, err := c.stores[1].LocalGet([]byte("k"))
		require.ErrorIs(t, err, ErrCorrupt, "the damaged replica does not serve it")
		for i := range c.stores {
			vals, _ := get(t, c.stores[i], "k")
			require.Equal(t, []string{"the value"}, vals, "read through node %d", i)
		}
		synctest.Wait() // read repair
		require.Equal(t, []string{"the value"}, c.local(1, "k"), "repaired")
		require.Equal(t, int64(1), c.stores[1].Stats().CorruptRecords)
		requireConverged(t, c, "k")
	})
}

// Reference: issue 12 item 4: anti-entropy repairs a damaged stored state
// too (the damaged replica's digest differs), whichever side starts it.
func TestStore_DamagedState_RepairedByAntiEntropy(t *testing.T) {
	for _, from := range []int{0, 1} {
		t.Run(fmt.Sprintf("from n%d", from), func(t *testing.T) {
			c := kvCluster(t, 3, 3, 2, 3)
			put(t, c.stores[0], "k", "the value", Context{})
			c.damage(1, "k")
			c.stop(1)
			c.start(1, c.storages[1]) // its hash tree now holds the damaged state's digest
			_, err := c.stores[from].AntiEntropy(context.Background())
			require.NoError(t, err)
			require.Equal(t, []string{"the value"}, c.local(1, "k"), "repaired")
			require.Equal(t, int64(1), c.stores[1].Stats().CorruptRecords)
			requireConverged(t, c, "k")
		})
	}
}

// A damaged record is partial data loss: once repaired from its peers, the
// node's next write of the key takes a fresh epoch (issue 20), since the
// record of the versions it issued for the key may have been lost with it.
func TestStore_DamagedState_NextWriteTakesFreshEpoch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := kvCluster(t, 3, 3, 2, 3)
		put(t, c.stores[0], "k", "v1", Context{})
		before, err := decodeState(c.record(0, "k"))
		require.NoError(t, err)
		c.damage(0, "k")
		_, cx := get(t, c.stores[1], "k", WithR(3-1))
		synctest.Wait() // read repair
		put(t, c.stores[0], "k", "v2", cx)
		after, err := decodeState(c.record(0, "k"))
		require.NoError(t, err)
		require.Len(t, after.Siblings, 1)
		require.NotEqual(t, before.Siblings[0].Dot.Actor, after.Siblings[0].Dot.Actor, "a fresh epoch")
		require.Equal(t, uint64(1), after.Siblings[0].Dot.Counter)
	})
}
