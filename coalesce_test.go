// coalesce_test.go: hot keys at the coordinator (§4.5): concurrent Gets of
// one key share quorum reads without losing read-your-writes, and
// concurrent Puts of one key reach the storage together.
package dynamo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport"
)

// restartWith restarts node i on its own storage wrapped by wrapS and its
// transport wrapped by wrapT (either may be nil).
func (c *testCluster) restartWith(i int, wrapS func(Storage) Storage, wrapT func(transport.Transport) transport.Transport) *Store {
	c.t.Helper()
	c.stop(i)
	tr, err := c.net.Listen(nodeID(i))
	require.NoError(c.t, err)
	c.trans[i] = tr
	var st Storage = c.storages[i]
	if wrapS != nil {
		st = wrapS(st)
	}
	cfg := c.config(i, st)
	if wrapT != nil {
		cfg.Transport = wrapT(tr)
	}
	s, err := New(cfg)
	require.NoError(c.t, err)
	c.stores[i] = s
	return s
}

// Fifty concurrent Gets of one key through one node cost two quorum reads:
// the first caller's own, and one queued behind it that serves the other 49.
// Each caller owns the values it got.
func TestGet_ConcurrentGetsOfOneKeyCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		put(t, c.stores[0], "hot", "v", Context{}, WithW(3))
		c.net.SetDelay(10*time.Millisecond, 10*time.Millisecond)
		before := c.net.Stats().Delivered

		const callers = 50
		got := make([][]Sibling, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				sibs, _, err := c.stores[0].Get(context.Background(), []byte("hot"))
				require.NoError(t, err)
				got[i] = sibs
			})
		}
		wg.Wait()

		// Node 0 reads itself locally and asks one other replica (R=2).
		require.Equal(t, uint64(2*1), c.net.Stats().Delivered-before, "two quorum reads of one remote replica each")
		require.Equal(t, int64(callers-1), c.stores[0].Stats().CoalescedGets)
		for i := range got {
			require.Len(t, got[i], 1)
			require.Equal(t, "v", string(got[i][0].Value))
		}
		// Callers served by one read hold their own copies.
		var a, b []byte
		for _, sibs := range got {
			switch {
			case a == nil:
				a = sibs[0].Value
			case b == nil:
				b = sibs[0].Value
			}
		}
		a[0] = 'X'
		require.Equal(t, "v", string(b))
	})
}

// gatedTransport holds the replies to reads (kindGet) while hold is set:
// the replicas have answered, the coordinator has not heard yet.
type gatedTransport struct {
	transport.Transport
	mu   sync.Mutex
	hold chan struct{}
}

func (g *gatedTransport) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	reply, err := g.Transport.Call(ctx, addr, req)
	g.mu.Lock()
	hold := g.hold
	g.mu.Unlock()
	if m, derr := decodeMessage(req, wtLimits); derr == nil && hold != nil {
		if _, isGet := m.Body.(*getReq); !isGet {
			return reply, err
		}
		<-hold
	}
	return reply, err
}

func (g *gatedTransport) setHold(h chan struct{}) {
	g.mu.Lock()
	g.hold = h
	g.mu.Unlock()
}

// A Get that starts after a Put was acknowledged sees it, even when a Get of
// the same key that began before the Put is still in flight: the later Get
// must not share the earlier read (whose replicas answered before the Put
// landed), only a read that starts after it was called.
func TestGet_CoalescingKeepsReadYourWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		var gate *gatedTransport
		coord := c.restartWith(0, nil, func(tr transport.Transport) transport.Transport {
			gate = &gatedTransport{Transport: tr}
			return gate
		})
		ctx := context.Background()
		hold := make(chan struct{})
		gate.setHold(hold)

		// G1 reads: node 0 itself and both replicas answer "nothing", and
		// the replies wait at the gate.
		var first []Sibling
		done1 := make(chan struct{})
		go func() {
			defer close(done1)
			var err error
			first, _, err = coord.Get(ctx, []byte("k"))
			require.NoError(t, err)
		}()
		synctest.Wait()

		// The Put is acknowledged after G1's replicas answered.
		require.NoError(t, coord.Put(ctx, []byte("k"), []byte("v"), Context{}))

		// G2 starts after the acknowledgement, while G1 is in flight.
		var second []Sibling
		done2 := make(chan struct{})
		go func() {
			defer close(done2)
			var err error
			second, _, err = coord.Get(ctx, []byte("k"))
			require.NoError(t, err)
		}()
		synctest.Wait()
		require.Equal(t, int64(1), coord.Stats().CoalescedGets, "G2 waits for a read of its own")

		gate.setHold(nil)
		close(hold)
		<-done1
		<-done2
		require.Empty(t, first, "G1's replicas answered before the Put")
		require.Equal(t, []string{"v"}, values(second), "G2 began after the Put was acknowledged")
	})
}

// A caller whose context ends stops waiting for the read it queued for;
// the read still serves the others.
func TestGet_CoalescedCallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		put(t, c.stores[0], "k", "v", Context{}, WithW(3))
		c.net.SetDelay(50*time.Millisecond, 50*time.Millisecond)
		s := c.stores[0]
		var wg sync.WaitGroup
		wg.Go(func() { require.Equal(t, []string{"v"}, mustGet(t, s, context.Background())) })
		synctest.Wait() // the first read is in flight
		wg.Go(func() { require.Equal(t, []string{"v"}, mustGet(t, s, context.Background())) })
		short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := s.Get(short, []byte("k"))
		require.ErrorIs(t, err, ErrReadQuorum)
		require.Equal(t, 10*time.Millisecond, time.Since(start), "it returned when its context ended")
		wg.Wait()
		require.Equal(t, int64(2), s.Stats().CoalescedGets)
	})
}

func mustGet(t *testing.T, s *Store, ctx context.Context) []string {
	sibs, _, err := s.Get(ctx, []byte("k"))
	require.NoError(t, err)
	return values(sibs)
}

// barrierStorage holds each Update of one key until `want` of them are
// inside Update at once. If the Store serialized writes of a key before its
// storage, the barrier would never fill: it gives up after a deadline (in
// real time, as a Store that serialized on a mutex would not let a synctest
// bubble's clock advance) and fails every write it held.
type barrierStorage struct {
	Storage
	suffix  []byte
	want    int32
	arrived atomic.Int32
	full    chan struct{}
	failed  chan struct{}
	once    sync.Once
}

var errBarrier = errors.New("barrier: writes of one key did not reach the storage together")

func newBarrier(suffix string, want int32) *barrierStorage {
	b := &barrierStorage{suffix: []byte(suffix), want: want, full: make(chan struct{}), failed: make(chan struct{})}
	timer := time.AfterFunc(10*time.Second, func() { b.once.Do(func() { close(b.failed) }) })
	go func() {
		<-b.full
		timer.Stop()
	}()
	return b
}

func (b *barrierStorage) Update(key []byte, fn func([]byte) ([]byte, error)) error {
	if bytes.HasSuffix(key, b.suffix) && key[0] == spaceData {
		if b.arrived.Add(1) == b.want {
			b.once.Do(func() { close(b.full) })
		}
		select {
		case <-b.full:
		case <-b.failed:
			return errBarrier
		}
	}
	return b.Storage.Update(key, fn)
}

// Concurrent Puts of one key through its coordinator reach the storage
// together: nothing in the coordinator (minting, epochs, forwarding)
// serializes them; only the storage orders them, in one commit batch.
func TestPut_WritesOfOneKeyAreNotSerialized(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1; cfg.RequestTimeout = 30 * time.Second })
	const writers = 8
	key := "hot-write"
	i := indexOf(c.stores[0].PreferenceList([]byte(key), 1)[0].ID)
	bar := newBarrier(key, writers)
	coord := c.restartWith(i, func(st Storage) Storage { bar.Storage = st; return bar }, nil)
	// The restarted node's catch-up pulls must not merge into the key
	// while it is written (that would be a ninth storage update of it).
	require.NoError(t, coord.WaitReady(t.Context()))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			require.NoError(t, coord.Put(context.Background(), []byte(key), fmt.Appendf(nil, "v%d", w), Context{}))
		})
	}
	wg.Wait()
	require.EqualValues(t, writers, bar.arrived.Load())
	sibs, _, err := coord.Get(context.Background(), []byte(key))
	require.NoError(t, err)
	require.Len(t, sibs, writers, "concurrent blind writes are siblings")
}
