// Tests for the io_uring log syncer.

//go:build linux

package bolt

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// newTestURing sets up a ring, or reports why this kernel cannot; the
// Store then syncs directly, which the DirectSync conformance run covers.
func newTestURing(t *testing.T) *uring {
	t.Helper()
	u, err := newURing()
	if err != nil {
		t.Logf("io_uring unavailable here, so the Store syncs directly: %v", err)
		return nil
	}
	t.Cleanup(u.close)
	return u
}

func TestURing_Fdatasync_SyncsAndReportsErrors(t *testing.T) {
	u := newTestURing(t)
	if u == nil {
		return
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	for i := range 100 {
		_, err := f.WriteAt([]byte("record"), int64(i*6))
		require.NoError(t, err)
		require.NoError(t, u.fdatasync(f), "sync %d", i)
	}
	// A descriptor that is not open must come back as the kernel's error,
	// not as success and not as a hang.
	require.NoError(t, f.Close())
	err = u.fdatasync(f)
	require.Error(t, err)
	require.True(t, errors.Is(err, unix.EBADF) || errors.Is(err, os.ErrClosed), "got %v", err)
}

func TestURing_ConcurrentCallers_Serialised(t *testing.T) {
	u := newTestURing(t)
	if u == nil {
		return
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for w := range 8 {
		f, err := os.Create(filepath.Join(dir, string(rune('a'+w))))
		require.NoError(t, err)
		t.Cleanup(func() { _ = f.Close() })
		wg.Go(func() {
			for range 50 {
				if _, err := f.Write([]byte("x")); err != nil {
					errs <- err
					return
				}
				errs <- u.fdatasync(f)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestURing_StoreUsesIt_UnlessDirectSync(t *testing.T) {
	if newTestURing(t) == nil {
		return
	}
	s, err := Open(filepath.Join(t.TempDir(), "a.db"), nil)
	require.NoError(t, err)
	require.NotNil(t, s.ring, "io_uring works here, so the Store must sync through it")
	require.NoError(t, s.Update([]byte("k"), func([]byte) ([]byte, error) { return []byte("v"), nil }))
	require.NoError(t, s.Close())

	d, err := Open(filepath.Join(t.TempDir(), "b.db"), &Options{DirectSync: true})
	require.NoError(t, err)
	require.Nil(t, d.ring)
	require.NoError(t, d.Close())
}
