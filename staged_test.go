// staged_test.go: a coordinator replicates a write as soon as its Storage
// has settled it (storage.Stager), while its own commit is fsynced
// (coordinator.go mintAndReplicate).
package dynamo

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// stagingStorage is a Storage with a commit the test holds: UpdateStaged
// runs fn, reports the result settled, then waits for gate (if set) and
// fails with fail (if set) or stores the result. Updates take turns, as
// in a committer. As the Stager contract asks, a commit that fails after
// staging fails the storage for good (Failed).
type stagingStorage struct {
	Storage
	turn chan struct{} // one update at a time, as a committer runs them (a channel: synctest sees a wait on it)

	mu     sync.Mutex
	gate   chan struct{}
	fail   error
	failed error
	staged int
}

func (g *stagingStorage) UpdateStaged(key []byte, fn func([]byte) ([]byte, error), staged func()) error {
	g.turn <- struct{}{}
	defer func() { <-g.turn }()
	if err := g.Failed(); err != nil {
		return err
	}
	cur, err := g.Get(key)
	if err != nil {
		return err
	}
	next, err := fn(cur)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.staged++
	gate, fail := g.gate, g.fail
	g.mu.Unlock()
	if staged != nil {
		staged()
	}
	if gate != nil {
		<-gate
	}
	if fail != nil {
		g.mu.Lock()
		g.failed = fail
		g.mu.Unlock()
		return fail
	}
	return g.Storage.Update(key, func([]byte) ([]byte, error) { return next, nil })
}

func (g *stagingStorage) Update(key []byte, fn func([]byte) ([]byte, error)) error {
	return g.UpdateStaged(key, fn, nil)
}

// Failed reports the failure that stopped the storage's writes
// (storage.Failer).
func (g *stagingStorage) Failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed
}

func (g *stagingStorage) set(gate chan struct{}, fail error) {
	g.mu.Lock()
	g.gate, g.fail = gate, fail
	g.mu.Unlock()
}

// stagingCluster is a 3-node cluster whose node 0 runs on a stagingStorage.
func stagingCluster(t *testing.T) (*testCluster, *Store, *stagingStorage) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
	var sg *stagingStorage
	coord := c.restartWith(0, func(st Storage) Storage {
		sg = &stagingStorage{Storage: st, turn: make(chan struct{}, 1)}
		return sg
	}, nil)
	return c, coord, sg
}

// The other replicas store a write while the coordinator's own commit is
// still held; the Put is acknowledged only once that commit is done.
func TestPut_ReplicatesWhileOwnCommitIsFsynced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, coord, sg := stagingCluster(t)
		gate := make(chan struct{})
		sg.set(gate, nil)
		done := make(chan error, 1)
		go func() { done <- coord.Put(context.Background(), []byte("k"), []byte("v"), Context{}, WithW(3)) }()
		synctest.Wait()
		require.Equal(t, []string{"v"}, c.local(1, "k"), "replica 1 stored the write before the coordinator's commit")
		require.Equal(t, []string{"v"}, c.local(2, "k"))
		require.Empty(t, c.local(0, "k"), "the coordinator's own commit is held")
		select {
		case err := <-done:
			t.Fatalf("Put returned before the coordinator's commit: %v", err)
		default:
		}
		close(gate)
		require.NoError(t, <-done)
		require.Equal(t, []string{"v"}, c.local(0, "k"))
	})
}

// A coordinator whose own commit fails after the other replicas took the
// write reports the failure and writes nothing more on that storage: a
// concurrent write of the key, queued behind the failed commit, fails too
// rather than mint the same dot from the state before it. Restarted, the
// node writes under a new epoch: its next write of the key, with an empty
// context, is a sibling of the first on every replica, not a second
// version under the same dot.
func TestPut_FailedOwnCommitAfterStaging_DotNeverReissued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, coord, sg := stagingCluster(t)
		ctx := context.Background()
		gate := make(chan struct{})
		sg.set(gate, errors.New("disk on fire"))
		first := make(chan error, 1)
		go func() { first <- coord.Put(ctx, []byte("k"), []byte("v1"), Context{}) }()
		synctest.Wait()
		require.Equal(t, []string{"v1"}, c.local(1, "k"), "replica 1 took the write")
		second := make(chan error, 1)
		go func() { second <- coord.Put(ctx, []byte("k"), []byte("v2"), Context{}) }()
		synctest.Wait()
		close(gate)
		require.Error(t, <-first)
		require.Error(t, <-second, "a write behind the failed commit must not mint from the state before it")
		synctest.Wait()
		require.Empty(t, c.local(0, "k"))
		require.Equal(t, []string{"v1"}, c.local(1, "k"))

		coord = c.restartWith(0, nil, nil) // the same data, the failing wrapper gone
		require.NoError(t, coord.Put(ctx, []byte("k"), []byte("v3"), Context{}, WithW(3)))
		vals, _ := get(t, coord, "k", WithR(3))
		require.Equal(t, []string{"v1", "v3"}, vals, "two concurrent writes, two siblings")
		synctest.Wait()
		for i := range 3 {
			require.Equal(t, []string{"v1", "v3"}, c.local(i, "k"), "replica %d", i)
			require.Zero(t, c.stores[i].Stats().DotConflicts, "replica %d saw one dot carry two versions", i)
		}
	})
}

// A Storage that is not a Stager keeps the old order: the write is durable
// on the coordinator before any other replica sees it.
func TestPut_WithoutStager_OwnCommitFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		hold := make(chan struct{})
		var held sync.Once
		coord := c.restartWith(0, func(st Storage) Storage {
			return &heldStorage{Storage: st, hold: hold, once: &held}
		}, nil)
		done := make(chan error, 1)
		go func() { done <- coord.Put(context.Background(), []byte("k"), []byte("v"), Context{}) }()
		synctest.Wait()
		require.Empty(t, c.local(1, "k"), "nothing replicated while the coordinator's commit is held")
		close(hold)
		require.NoError(t, <-done)
		synctest.Wait()
		require.Equal(t, []string{"v"}, c.local(1, "k"))
	})
}

// heldStorage holds its first Update of a data key ending in "k" until
// hold closes; the node's own records (identity, epochs) pass.
type heldStorage struct {
	Storage
	hold chan struct{}
	once *sync.Once
}

func (h *heldStorage) Update(key []byte, fn func([]byte) ([]byte, error)) error {
	if bytes.HasSuffix(key, []byte("k")) {
		h.once.Do(func() { <-h.hold })
	}
	return h.Storage.Update(key, fn)
}
