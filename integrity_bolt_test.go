// integrity_bolt_test.go: DESIGN §8 a byte flipped in a value on a real
// bbolt file: the node still starts, never serves the damaged value,
// discards it, counts it and takes the key back from its peers.
package dynamo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStore_Bolt_FlippedValueByte_DiscardedAndRepaired(t *testing.T) {
	c := newTCPCluster(t, "a", "b", "c")
	ctx := context.Background()
	a := c.stores["a"]
	value := func(i int) []byte { return fmt.Appendf(nil, "value-%03d-%s", i, bytes.Repeat([]byte("x"), 64)) }
	for i := range 20 {
		require.NoError(t, a.Put(ctx, fmt.Appendf(nil, "k%03d", i), value(i), Context{}, WithW(3)))
	}
	c.stop("c") // Close checkpoints every value into bbolt
	path := filepath.Join(c.dir, "c.db")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	at := bytes.Index(raw, value(7))
	require.Positive(t, at, "the value is in the bbolt file")
	raw[at+3] ^= 0x20
	require.NoError(t, os.WriteFile(path, raw, 0o600))

	s := c.start("c") // a damaged value does not stop the start
	c.members.SetReachable("c", true)
	require.True(t, s.rep.awaitIndexes(ctx))
	require.EqualValues(t, 1, s.Stats().CorruptRecords, "the walk after start-up found, discarded and counted it")
	require.NoError(t, s.VerifyHashes(ctx), "the discarded value's digest is out of the hash read from the storage")
	sibs, err := s.LocalGet([]byte("k007"))
	require.NoError(t, err)
	require.Empty(t, sibs, "the damaged value is never served")

	_, err = a.AntiEntropy(ctx)
	require.NoError(t, err)
	sibs, err = s.LocalGet([]byte("k007"))
	require.NoError(t, err)
	require.Len(t, sibs, 1)
	require.Equal(t, value(7), sibs[0].Value, "anti-entropy took the key back from the peers")
	require.NoError(t, s.VerifyHashes(ctx))
	for i := range 20 {
		got, _, err := s.Get(ctx, fmt.Appendf(nil, "k%03d", i), WithR(3))
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, value(i), got[0].Value)
	}
}
