// Tests for group commit: batching, in-batch visibility, per-request and whole-batch failures, Close.
package bolt_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/bolt"
)

// blocker holds the committer inside the fn of one Update, so that the
// Updates queued meanwhile are all waiting when it lets go.
type blocker struct {
	entered, release chan struct{}
	result           chan error
}

// block starts an Update of key whose fn waits for b.unblock, and returns
// once the committer is inside that fn.
func block(s *bolt.Store, key string) *blocker {
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{}), result: make(chan error, 1)}
	go func() {
		b.result <- s.Update([]byte(key), func([]byte) ([]byte, error) {
			close(b.entered)
			<-b.release
			return []byte("blocker"), nil
		})
	}()
	<-b.entered
	return b
}

// unblock lets the blocked fn return and waits for its Update.
func (b *blocker) unblock(t *testing.T) {
	t.Helper()
	close(b.release)
	require.NoError(t, <-b.result)
}

// enqueued returns a channel that receives once for each Update of s that
// has queued its request.
func enqueued(s *bolt.Store) <-chan struct{} {
	ch := make(chan struct{}, 1024)
	bolt.SetOnEnqueue(s, func() { ch <- struct{}{} })
	return ch
}

// async starts one Update in its own goroutine, waits until it is queued,
// and returns where its result will arrive. Calling it in sequence fixes
// the order of the requests in the queue.
func async(s *bolt.Store, queued <-chan struct{}, key string, fn func([]byte) ([]byte, error)) <-chan error {
	res := make(chan error, 1)
	go func() { res <- s.Update([]byte(key), fn) }()
	<-queued
	return res
}

func u64(b []byte) uint64 {
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func inc(cur []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, u64(cur)+1), nil
}

func TestBolt_GroupCommit_BatchesConcurrentUpdates(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	queued := enqueued(s)
	b := block(s, "first")
	<-queued

	const n = 63
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.Update(fmt.Appendf(nil, "k%02d", i), func([]byte) ([]byte, error) { return []byte("v"), nil })
		})
	}
	for range n {
		<-queued
	}
	b.unblock(t)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	st := s.Stats()
	t.Logf("%d Updates in %d commits", st.Updates, st.Commits)
	require.Equal(t, uint64(n+1), st.Updates)
	require.Less(t, st.Commits, uint64(n+1), "64 concurrent Updates must share commits")
	require.Equal(t, uint64(2), st.Commits, "the 63 queued behind the first must share one commit")
}

func TestBolt_GroupCommit_SameKey_SeesEarlierResults_FnErrorFailsOnlyItself(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	queued := enqueued(s)
	b := block(s, "first")
	<-queued

	errOwn := errors.New("this request refuses")
	seen := make([]uint64, 6) // written by the committer, read after each Update returns
	fns := []func([]byte) ([]byte, error){
		inc,
		inc,
		func(cur []byte) ([]byte, error) { return []byte("never stored"), errOwn },
		inc,
		func([]byte) ([]byte, error) { return nil, nil }, // delete
		inc,
	}
	var results []<-chan error
	for i, fn := range fns {
		results = append(results, async(s, queued, "counter", func(cur []byte) ([]byte, error) {
			seen[i] = u64(cur)
			return fn(cur)
		}))
	}
	b.unblock(t)
	for i, res := range results {
		err := <-res
		if i == 2 {
			require.ErrorIs(t, err, errOwn)
			continue
		}
		require.NoError(t, err, "request %d", i)
	}
	require.Equal(t, []uint64{0, 1, 2, 2, 3, 0}, seen, "each fn must see the results of the fns before it")
	v, err := s.Get([]byte("counter"))
	require.NoError(t, err)
	require.Equal(t, uint64(1), u64(v))
	require.Equal(t, uint64(2), s.Stats().Commits)
}

func TestBolt_GroupCommit_CommitFails_EveryRequestGetsTheError(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	errDisk := errors.New("injected: fsync failed")
	var commits int
	bolt.SetBeforeCommit(s, func() error { // runs on the committer only
		commits++
		if commits == 2 {
			return errDisk
		}
		return nil
	})
	queued := enqueued(s)
	b := block(s, "first")
	<-queued

	errOwn := errors.New("refused")
	var results []<-chan error
	for i := range 5 {
		results = append(results, async(s, queued, fmt.Sprintf("k%d", i), func([]byte) ([]byte, error) {
			if i == 3 {
				return nil, errOwn
			}
			return []byte("v"), nil
		}))
	}
	b.unblock(t)
	for i, res := range results {
		err := <-res
		if i == 3 {
			require.ErrorIs(t, err, errOwn, "a request whose fn failed keeps its own error")
			continue
		}
		require.ErrorIs(t, err, errDisk, "request %d", i)
	}

	// Nothing of the failed batch is visible, then or after a reopen, and the
	// Store keeps working.
	require.NoError(t, s.ForEach([]byte("k"), func(k, _ []byte) error {
		return fmt.Errorf("key %q of a failed commit is visible", k)
	}))
	set(t, s, "after", "ok")
	require.NoError(t, s.Close())
	s = open(t, dir, nil)
	var keys []string
	require.NoError(t, s.ForEach(nil, func(k, _ []byte) error { keys = append(keys, string(k)); return nil }))
	require.Equal(t, []string{"after", "first"}, keys)
}

func TestBolt_GroupCommit_MaxBatch_BoundsBatches(t *testing.T) {
	s := open(t, t.TempDir(), &bolt.Options{MaxBatch: 4})
	queued := enqueued(s)
	b := block(s, "first")
	<-queued

	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Update(fmt.Appendf(nil, "k%02d", i), inc); err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	for range 4 { // the queue holds MaxBatch; the rest wait for room
		<-queued
	}
	b.unblock(t)
	wg.Wait()
	st := s.Stats()
	require.Equal(t, uint64(n+1), st.Updates)
	require.GreaterOrEqual(t, st.Commits, uint64(1+n/4), "no batch may hold more than MaxBatch Updates")
}

func TestBolt_Close_FailsQueuedUpdates_CommitsBatchInFlight(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	quitting := make(chan struct{})
	bolt.SetOnQuit(s, func() { close(quitting) })
	queued := enqueued(s)
	b := block(s, "first")
	<-queued

	var results []<-chan error
	for i := range 10 {
		results = append(results, async(s, queued, fmt.Sprintf("k%d", i), func([]byte) ([]byte, error) {
			return []byte("never"), nil
		}))
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	<-quitting
	b.unblock(t) // the batch in flight still commits
	require.NoError(t, <-closed)
	for _, res := range results {
		require.ErrorIs(t, <-res, storage.ErrClosed)
	}

	s = open(t, dir, nil)
	var keys []string
	require.NoError(t, s.ForEach(nil, func(k, _ []byte) error { keys = append(keys, string(k)); return nil }))
	require.Equal(t, []string{"first"}, keys, "Updates failed with ErrClosed must not be applied")
}

// TestBolt_Close_RacingUpdates_AckedIffDurable closes the Store while many
// goroutines update it: every Update returns nil or ErrClosed, and after a
// reopen exactly the acknowledged ones are there.
func TestBolt_Close_RacingUpdates_AckedIffDurable(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, &bolt.Options{MaxBatch: 8})
	const goroutines, each = 16, 50
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	started := make(chan struct{}, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			started <- struct{}{}
			for i := range each {
				key := fmt.Sprintf("g%02d-%03d", g, i)
				err := s.Update([]byte(key), func([]byte) ([]byte, error) { return []byte("v"), nil })
				if err != nil {
					if !errors.Is(err, storage.ErrClosed) {
						t.Errorf("Update racing Close: %v, want ErrClosed", err)
					}
					return
				}
				mu.Lock()
				acked[key] = true
				mu.Unlock()
			}
		})
	}
	for range goroutines {
		<-started
	}
	require.NoError(t, s.Close())
	wg.Wait()

	s = open(t, dir, nil)
	stored := map[string]bool{}
	require.NoError(t, s.ForEach(nil, func(k, _ []byte) error { stored[string(k)] = true; return nil }))
	require.Equal(t, acked, stored)
	t.Logf("%d of %d Updates acknowledged before Close", len(acked), goroutines*each)
}
