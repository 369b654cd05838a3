// Tests for the map-backed Store: the conformance suite plus its size helpers.
package memory_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMemory_Conformance(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Storage { return memory.New() })
}

// plainStorage hides the Store's optional interfaces, so the suite checks
// the fallbacks of storage.UpdateBatch and storage.DeletePrefix.
type plainStorage struct{ s *memory.Store }

func (p plainStorage) Get(k []byte) ([]byte, error) { return p.s.Get(k) }
func (p plainStorage) Update(k []byte, fn func([]byte) ([]byte, error)) error {
	return p.s.Update(k, fn)
}
func (p plainStorage) ForEach(prefix []byte, fn func(k, v []byte) error) error {
	return p.s.ForEach(prefix, fn)
}
func (p plainStorage) Close() error { return p.s.Close() }

func TestMemory_Conformance_WithoutBatches(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Storage { return plainStorage{memory.New()} })
}

func TestMemory_LenAndBytes(t *testing.T) {
	s := memory.New()
	set := func(key, value string) {
		require.NoError(t, s.Update([]byte(key), func([]byte) ([]byte, error) {
			if value == "-" {
				return nil, nil
			}
			return []byte(value), nil
		}))
	}
	set("ab", "cde")
	set("f", "")
	require.Equal(t, 2, s.Len())
	require.Equal(t, 2+3+1, s.Bytes())
	set("ab", "z")
	require.Equal(t, 2+1+1, s.Bytes())
	set("ab", "-")
	require.Equal(t, 1, s.Len())
	require.Equal(t, 1, s.Bytes())
	require.NoError(t, s.Close())
	require.Zero(t, s.Len())
	require.Zero(t, s.Bytes())
}

func TestMemory_ForEach_ToleratesUpdateFromFn(t *testing.T) {
	s := memory.New()
	for _, k := range []string{"a", "b"} {
		require.NoError(t, s.Update([]byte(k), func([]byte) ([]byte, error) { return []byte(k), nil }))
	}
	// The interface forbids it, but a map must not deadlock when it happens.
	require.NoError(t, s.ForEach(nil, func(k, _ []byte) error {
		return s.Update(append(k, '2'), func([]byte) ([]byte, error) { return []byte("x"), nil })
	}))
	require.Equal(t, 4, s.Len())
}
