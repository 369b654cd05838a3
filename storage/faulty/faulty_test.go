// Tests for the fault-injecting wrapper: conformance when healthy, and injected faults that never apply a write.
package faulty_test

import (
	"errors"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/faulty"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFaulty_Conformance_Healthy(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Storage { return faulty.Wrap(memory.New()) })
}

func TestFaulty_Conformance_Healed(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Storage {
		s := faulty.Wrap(memory.New())
		s.FailUpdates(syscall.EIO)
		s.FailGets(nil)
		s.FailForEach(nil)
		s.FailUpdatesAfter(3, nil)
		s.Heal()
		return s
	})
}

func put(s storage.Storage, key, value string) error {
	return s.Update([]byte(key), func([]byte) ([]byte, error) { return []byte(value), nil })
}

func TestFaulty_FailUpdates_NeverApplied(t *testing.T) {
	inner := memory.New()
	s := faulty.Wrap(inner)
	require.NoError(t, put(s, "k", "acked"))

	s.FailUpdates(syscall.EIO)
	called := false
	err := s.Update([]byte("k"), func([]byte) ([]byte, error) { called = true; return []byte("lost"), nil })
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorIs(t, err, faulty.ErrInjected)
	require.False(t, called, "a failed Update must not reach the inner Storage")
	require.ErrorIs(t, put(s, "new", "lost"), syscall.EIO)

	v, err := inner.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, "acked", string(v))
	require.Equal(t, 1, inner.Len())

	// Reads still work while only writes fail.
	v, err = s.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, "acked", string(v))

	s.Heal()
	require.NoError(t, put(s, "k", "healed"))
	v, err = s.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, "healed", string(v))
	updates, injected := s.Stats()
	require.Equal(t, 2, updates)
	require.Equal(t, 2, injected)
}

func TestFaulty_FailUpdates_NilErr_MatchesErrInjected(t *testing.T) {
	s := faulty.Wrap(memory.New())
	s.FailUpdates(nil)
	require.ErrorIs(t, put(s, "k", "v"), faulty.ErrInjected)
}

func TestFaulty_FailUpdatesAfter(t *testing.T) {
	tests := map[string]struct {
		n, wantOK int
	}{
		"zero fails at once": {n: 0, wantOK: 0},
		"three then fail":    {n: 3, wantOK: 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			inner := memory.New()
			s := faulty.Wrap(inner)
			errDisk := errors.New("disk full")
			s.FailUpdatesAfter(tc.n, errDisk)
			ok := 0
			for i := range 10 {
				err := put(s, string(rune('a'+i)), "v")
				if err == nil {
					ok++
					continue
				}
				require.ErrorIs(t, err, errDisk)
				require.ErrorIs(t, err, faulty.ErrInjected)
			}
			require.Equal(t, tc.wantOK, ok)
			require.Equal(t, tc.wantOK, inner.Len(), "only the acknowledged Updates may be stored")
		})
	}
}

func TestFaulty_FailUpdatesAfter_Concurrent_ExactlyN(t *testing.T) {
	inner := memory.New()
	s := faulty.Wrap(inner)
	s.FailUpdatesAfter(50, syscall.ENOSPC)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	for g := range 16 {
		wg.Go(func() {
			for i := range 10 {
				key := string([]byte{byte('a' + g), byte('0' + i)})
				err := put(s, key, "v")
				if err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Errorf("Update: %v, want ENOSPC", err)
					}
					continue
				}
				mu.Lock()
				acked[key] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, acked, 50)
	stored := map[string]bool{}
	require.NoError(t, inner.ForEach(nil, func(k, _ []byte) error { stored[string(k)] = true; return nil }))
	require.Equal(t, acked, stored)
}

func TestFaulty_FailGetsAndForEach(t *testing.T) {
	s := faulty.Wrap(memory.New())
	require.NoError(t, put(s, "k", "v"))

	s.FailGets(syscall.EIO)
	v, err := s.Get([]byte("k"))
	require.ErrorIs(t, err, syscall.EIO)
	require.Nil(t, v)
	require.NoError(t, s.ForEach(nil, func(_, _ []byte) error { return nil }), "FailGets must not fail ForEach")

	s.FailForEach(storage.ErrCorrupt)
	err = s.ForEach(nil, func(_, _ []byte) error {
		t.Error("fn called despite the ForEach fault")
		return nil
	})
	require.ErrorIs(t, err, storage.ErrCorrupt)
	require.ErrorIs(t, err, faulty.ErrInjected)

	s.Heal()
	v, err = s.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, "v", string(v))
}

func TestFaulty_Close_ClosesInner(t *testing.T) {
	inner := memory.New()
	s := faulty.Wrap(inner)
	require.Same(t, inner, s.Inner())
	s.FailUpdates(syscall.EIO)
	require.NoError(t, s.Close())
	_, err := inner.Get([]byte("k"))
	require.ErrorIs(t, err, storage.ErrClosed)
}
