// staged.go: the conformance check of storage.Stager, for a Storage that
// reports a result staged before it is durable (DESIGN §4.5).
package storagetest

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
)

// testStaged: UpdateStaged reports each result that fn returned, once and
// before it returns; never one that fn refused; and concurrent staged
// updates of one key each apply exactly once, as Updates do.
func testStaged(t *testing.T, s storage.Storage) {
	st, ok := s.(storage.Stager)
	if !ok {
		t.Skip("not a storage.Stager")
	}
	var reported atomic.Int64
	err := st.UpdateStaged([]byte("k"), func([]byte) ([]byte, error) { return nil, errStop }, func() { reported.Add(1) })
	require.ErrorIs(t, err, errStop)
	require.Zero(t, reported.Load(), "a result fn refused is not staged")

	const goroutines, each = 16, 10
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				var mine atomic.Bool
				err := st.UpdateStaged([]byte("k"), increment, func() {
					assert.False(t, mine.Swap(true), "staged twice for one update")
					reported.Add(1)
				})
				assert.NoError(t, err)
				assert.True(t, mine.Load(), "UpdateStaged returned before staging its result")
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(goroutines*each), reported.Load())
	require.Equal(t, uint64(goroutines*each), counter(t, s, "k"))
}
