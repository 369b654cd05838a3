// Tests for the stored form of values and of the log position, white-box: every damaged byte is caught, and what the checksum costs.
package bolt

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestValues_EveryFlippedBitCaught stores values (empty, short, 1 KiB) and
// flips each bit of their stored form in turn: each is caught, as is the
// value read under another key, and a stored form cut short.
func TestValues_EveryFlippedBitCaught(t *testing.T) {
	key := []byte("key")
	for _, value := range [][]byte{{}, []byte("v"), bytes.Repeat([]byte("0123456789abcdef"), 64)} {
		stored := appendValue(nil, key, value)
		require.Len(t, stored, valueOverhead+len(value))
		got, err := openValue(key, stored)
		require.NoError(t, err)
		require.Equal(t, value, got)
		require.NotNil(t, got, "an empty value is not absent")
		for i := range len(stored) * 8 {
			b := bytes.Clone(stored)
			b[i/8] ^= 1 << (i % 8)
			_, err := openValue(key, b)
			require.ErrorIs(t, err, errValueChecksum, "bit %d of %d-byte value", i, len(value))
		}
		_, err = openValue([]byte("kez"), stored)
		require.ErrorIs(t, err, errValueChecksum, "under another key")
		for n := range valueOverhead {
			_, err = openValue(key, stored[:n])
			require.ErrorIs(t, err, errValueChecksum, "cut to %d bytes", n)
		}
	}
}

func TestValues_LogPos_RoundTripAndDamage(t *testing.T) {
	p := logPos{lsn: 1 << 40, seg: 1, seed: 0xdeadbeef}
	stored := appendLogPos(nil, p)
	got, err := parseLogPos(stored)
	require.NoError(t, err)
	require.Equal(t, p, got)
	for i := range stored {
		b := bytes.Clone(stored)
		b[i] ^= 0x40
		_, err := parseLogPos(b)
		require.Error(t, err, "byte %d", i)
	}
}

// BenchmarkValues_Checksum is what the checksum costs a 1 KiB value: once
// at its checkpoint (appendValue), on every read from bbolt (openValue).
func BenchmarkValues_Checksum(b *testing.B) {
	key, value := []byte("bench/00000001"), make([]byte, 1024)
	b.Run("append", func(b *testing.B) {
		buf := make([]byte, 0, valueOverhead+len(value))
		b.SetBytes(int64(len(value)))
		for b.Loop() {
			buf = appendValue(buf[:0], key, value)
		}
	})
	b.Run("open", func(b *testing.B) {
		stored := appendValue(nil, key, value)
		b.SetBytes(int64(len(value)))
		for b.Loop() {
			if _, err := openValue(key, stored); err != nil {
				b.Fatal(err)
			}
		}
	})
}
