// health_test.go: a Storage that fails for good makes the node report it
// on Err and in Health, and refuse writes with ErrStorageFailed.
package dynamo

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// failingStorage is a Storage that can be made to fail for good, as
// storage/bolt does after an fsync error (storage.Failer).
type failingStorage struct {
	Storage
	err atomic.Pointer[error]
}

func (f *failingStorage) fail(err error) { f.err.Store(&err) }

func (f *failingStorage) Failed() error {
	if e := f.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (f *failingStorage) Update(key []byte, fn func([]byte) ([]byte, error)) error {
	if err := f.Failed(); err != nil {
		return err
	}
	return f.Storage.Update(key, fn)
}

func failingCluster(t *testing.T) (*testCluster, *failingStorage) {
	var fs *failingStorage
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.NodeID == "n0" {
			fs = &failingStorage{Storage: cfg.Storage}
			cfg.Storage = fs
		}
	})
	return c, fs
}

var errEIO = errors.New("fsync: input/output error")

func TestHealth_StorageFailureRefusesWrites(t *testing.T) {
	c, fs := failingCluster(t)
	n0 := c.stores[0]
	ctx := context.Background()
	put(t, n0, "before", "v", Context{})
	require.True(t, n0.Health().Healthy())
	select {
	case err := <-n0.Err():
		t.Fatalf("Err reported %v before any failure", err)
	default:
	}

	fs.fail(errEIO)
	err := n0.Put(ctx, []byte("k"), []byte("v"), Context{})
	require.ErrorIs(t, err, ErrStorageFailed)
	require.ErrorIs(t, err, errEIO)
	select {
	case err := <-n0.Err():
		require.ErrorIs(t, err, ErrStorageFailed)
		require.ErrorIs(t, err, errEIO)
	case <-time.After(10 * time.Second):
		t.Fatal("Err reported nothing")
	}
	// Refused at once from now on, Deletes too; reads still served.
	require.ErrorIs(t, n0.Put(ctx, []byte("k2"), []byte("v"), Context{}), ErrStorageFailed)
	require.ErrorIs(t, n0.Delete(ctx, []byte("before"), Context{}), ErrStorageFailed)
	sibs, _, err := n0.Get(ctx, []byte("before"))
	require.NoError(t, err)
	require.Len(t, sibs, 1)

	h := n0.Health()
	require.False(t, h.Healthy())
	require.Contains(t, h.Fatal, "input/output error")
	m := n0.Metrics()
	require.Equal(t, uint64(2), m.Count(OpPut, OutcomeStorageFailed))
	require.Equal(t, uint64(1), m.Count(OpDelete, OutcomeStorageFailed))
	require.True(t, c.stores[1].Health().Healthy())
}

func TestHealth_NoticesFailureWithoutWrites(t *testing.T) {
	c, fs := failingCluster(t)
	n0 := c.stores[0]
	fs.fail(errEIO) // as a failed background checkpoint would
	h := n0.Health()
	require.ErrorIs(t, h.Err, ErrStorageFailed)
	select {
	case err := <-n0.Err():
		require.ErrorIs(t, err, errEIO)
	default:
		t.Fatal("Health noticed the failure but Err reported nothing")
	}
	require.ErrorIs(t, n0.Put(context.Background(), []byte("k"), []byte("v"), Context{}), ErrStorageFailed)
}
