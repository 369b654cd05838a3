// Durable checks, on top of Run, that a disk-backed storage.Storage keeps what it acknowledged across Close and reopen (DESIGN §4).
package storagetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
)

// RunDurable runs Run, then checks that data survives Close and a reopen.
// open must return an open Storage over the files in dir, creating them
// when dir is empty; the suite calls it several times with the same dir and
// closes each Storage before it opens the next. dir is a fresh t.TempDir()
// per subtest.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) storage.Storage) {
	t.Helper()
	Run(t, func(t *testing.T) storage.Storage { return open(t, t.TempDir()) })
	for _, tc := range []struct {
		name string
		test func(t *testing.T, reopen func() storage.Storage)
	}{
		{"Reopen_DataSurvives", testReopenSurvives},
		{"Reopen_FailedUpdateNotPersisted", testReopenFailedUpdate},
		{"Reopen_ConcurrentUpdatesSurvive", testReopenConcurrent},
		{"Reopen_Repeatedly", testReopenRepeatedly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var last storage.Storage
			t.Cleanup(func() {
				if last != nil {
					_ = last.Close()
				}
			})
			tc.test(t, func() storage.Storage {
				t.Helper()
				if last != nil {
					require.NoError(t, last.Close(), "Close before reopen")
				}
				last = open(t, dir)
				require.NotNil(t, last, "open returned a nil Storage")
				return last
			})
		})
	}
}

func testReopenSurvives(t *testing.T, reopen func() storage.Storage) {
	s := reopen()
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB, spans many pages
	want := map[string][]byte{"a": []byte("1"), "b": []byte("2"), "empty": {}, "big": big}
	for k, v := range want {
		require.NoError(t, s.Update([]byte(k), func([]byte) ([]byte, error) { return v, nil }))
	}
	put(t, s, "deleted", "x")
	require.NoError(t, s.Update([]byte("deleted"), func([]byte) ([]byte, error) { return nil, nil }))
	put(t, s, "replaced", "old")
	put(t, s, "replaced", "new")
	want["replaced"] = []byte("new")

	s = reopen()
	for k, v := range want {
		got, err := s.Get([]byte(k))
		require.NoError(t, err, "Get(%q) after reopen", k)
		require.NotNil(t, got, "key %q lost across reopen", k)
		require.True(t, bytes.Equal(v, got), "key %q changed across reopen", k)
	}
	_, ok := get(t, s, "deleted")
	require.False(t, ok, "a deleted key came back after reopen")
	require.Len(t, collect(t, s, ""), len(want))
}

func testReopenFailedUpdate(t *testing.T, reopen func() storage.Storage) {
	s := reopen()
	put(t, s, "k", "keep")
	err := s.Update([]byte("k"), func([]byte) ([]byte, error) { return []byte("lost"), errStop })
	require.ErrorIs(t, err, errStop)
	err = s.Update([]byte("n"), func([]byte) ([]byte, error) { return []byte("lost"), errStop })
	require.ErrorIs(t, err, errStop)

	s = reopen()
	require.Equal(t, []pair{{"k", "keep"}}, collect(t, s, ""))
}

func testReopenConcurrent(t *testing.T, reopen func() storage.Storage) {
	const goroutines, each = 32, 8
	s := reopen()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each*2)
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				errs <- s.Update([]byte("counter"), increment)
				errs <- s.Update(fmt.Appendf(nil, "g%02d", g), increment)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	s = reopen()
	require.Equal(t, uint64(goroutines*each), counter(t, s, "counter"))
	for g := range goroutines {
		require.Equal(t, uint64(each), counter(t, s, fmt.Sprintf("g%02d", g)))
	}
}

func testReopenRepeatedly(t *testing.T, reopen func() storage.Storage) {
	const rounds = 5
	for i := range rounds {
		s := reopen()
		require.Equal(t, uint64(i), func() uint64 {
			if i == 0 {
				_, ok := get(t, s, "counter")
				require.False(t, ok, "a fresh directory must start empty")
				return 0
			}
			return counter(t, s, "counter")
		}())
		require.NoError(t, s.Update([]byte("counter"), increment))
		put(t, s, fmt.Sprintf("round%d", i), "done")
	}
	s := reopen()
	require.Equal(t, uint64(rounds), counter(t, s, "counter"))
	require.Len(t, collect(t, s, "round"), rounds)
}
