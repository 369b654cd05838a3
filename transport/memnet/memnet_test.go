// Tests of memnet: the conformance suite, listening, and every fault it injects.
package memnet_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/transport"
	"github.com/dynamo-kv/dynamo/transport/memnet"
	"github.com/dynamo-kv/dynamo/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// factory makes transports named node-1, node-2, ... on one Network.
type factory struct {
	net *memnet.Network
	n   atomic.Int64
}

func (f *factory) New(t *testing.T) transport.Transport {
	return f.Reopen(t, fmt.Sprintf("node-%d", f.n.Add(1)))
}

func (f *factory) Reopen(t *testing.T, addr string) transport.Transport {
	tr, err := f.net.Listen(addr)
	require.NoError(t, err)
	return tr
}

func (f *factory) MaxFrameSize() int { return f.net.MaxFrameSize() }

func TestMemnet_Conformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Factory {
		return &factory{net: memnet.New(memnet.Options{Seed: 1, MaxFrameSize: 64 << 10})}
	})
}

// cluster listens on each address and serves a handler that counts its
// requests and echoes them with the address in front.
type cluster struct {
	net   *memnet.Network
	nodes map[string]*memnet.Transport
	mu    sync.Mutex
	seen  map[string]int // requests handled, per address
}

func newCluster(t *testing.T, opts memnet.Options, addrs ...string) *cluster {
	c := &cluster{net: memnet.New(opts), nodes: map[string]*memnet.Transport{}, seen: map[string]int{}}
	for _, addr := range addrs {
		tr, err := c.net.Listen(addr)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, tr.Close()) })
		require.NoError(t, tr.Serve(func(_ context.Context, req []byte) ([]byte, error) {
			c.mu.Lock()
			c.seen[addr]++
			c.mu.Unlock()
			return []byte(addr + ":" + string(req)), nil
		}))
		c.nodes[addr] = tr
	}
	return c
}

func (c *cluster) handled(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[addr]
}

// call calls from → to with a one-second (fake) timeout.
func (c *cluster) call(from, to string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.nodes[from].Call(ctx, to, []byte("hi"))
}

// requireLost checks err is what a lost packet gives: unreachable, after the
// caller's deadline.
func requireLost(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, transport.ErrUnreachable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestNetwork_Listen_AddressInUse(t *testing.T) {
	n := memnet.New(memnet.Options{})
	a, err := n.Listen("a")
	require.NoError(t, err)
	_, err = n.Listen("a")
	require.ErrorContains(t, err, "already in use")
	_, err = n.Listen("")
	require.Error(t, err)
	require.NoError(t, a.Close())
	a2, err := n.Listen("a")
	require.NoError(t, err, "the address of a closed transport must be free again")
	require.NoError(t, a2.Close())
}

func TestNetwork_New_DefaultMaxFrameSize(t *testing.T) {
	require.Equal(t, transport.DefaultMaxFrameSize, memnet.New(memnet.Options{}).MaxFrameSize())
	require.Panics(t, func() { memnet.New(memnet.Options{MaxFrameSize: -1}) })
}

func TestNetwork_Partition(t *testing.T) {
	tests := map[string]struct {
		from, to string
		lost     bool
	}{
		"same group":          {"a", "b", false},
		"across groups":       {"a", "c", true},
		"across groups back":  {"c", "b", true},
		"unlisted together":   {"d", "e", false},
		"unlisted to listed":  {"d", "a", true},
		"listed to unlisted":  {"c", "e", true},
		"self in small group": {"c", "c", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, memnet.Options{}, "a", "b", "c", "d", "e")
				c.net.Partition([]string{"a", "b"}, []string{"c"})
				start := time.Now()
				reply, err := c.call(tt.from, tt.to)
				if tt.lost {
					requireLost(t, err)
					require.Equal(t, time.Second, time.Since(start), "a lost call blocks until its deadline")
					c.net.Heal()
					reply, err = c.call(tt.from, tt.to)
				}
				require.NoError(t, err)
				require.Equal(t, tt.to+":hi", string(reply))
			})
		})
	}
}

func TestNetwork_Isolate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, memnet.Options{}, "a", "b", "c")
		c.net.Isolate("b")
		_, err := c.call("a", "b")
		requireLost(t, err)
		_, err = c.call("b", "c")
		requireLost(t, err)
		_, err = c.call("a", "c")
		require.NoError(t, err)
		require.Zero(t, c.handled("b"))
		c.net.Heal()
		_, err = c.call("a", "b")
		require.NoError(t, err)
		require.Equal(t, memnet.Stats{Delivered: 2, Dropped: 2}, c.net.Stats())
	})
}

func TestNetwork_Block_OneWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, memnet.Options{}, "a", "b")
		c.net.Block("a", "b")

		_, err := c.call("a", "b")
		requireLost(t, err)
		require.Zero(t, c.handled("b"), "a request from a to b must be lost")

		_, err = c.call("b", "a")
		requireLost(t, err)
		require.Equal(t, 1, c.handled("a"), "a request from b to a must arrive, and its reply be lost")

		require.Equal(t, memnet.Stats{Delivered: 1, Dropped: 1, RepliesDropped: 1}, c.net.Stats())
	})
}

func TestNetwork_UnknownAddress_FailsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, memnet.Options{}, "a")
		start := time.Now()
		_, err := c.call("a", "nobody")
		require.ErrorIs(t, err, transport.ErrUnreachable)
		require.NotErrorIs(t, err, context.DeadlineExceeded)
		require.Zero(t, time.Since(start))
		require.Equal(t, uint64(1), c.net.Stats().Refused)
	})
}

// outcomes makes 200 sequential calls a → b under drop probability 0.3 and
// returns "." for each delivered call and "x" for each lost one.
func outcomes(t *testing.T, seed int64) string {
	var sb strings.Builder
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, memnet.Options{Seed: seed}, "a", "b")
		c.net.SetDrop(0.3)
		for range 200 {
			_, err := c.call("a", "b")
			if err != nil {
				requireLost(t, err)
				sb.WriteByte('x')
				continue
			}
			sb.WriteByte('.')
		}
		s := c.net.Stats()
		require.Equal(t, uint64(200), s.Delivered+s.Dropped)
		require.Equal(t, int(s.Delivered), c.handled("b"))
	})
	return sb.String()
}

func TestNetwork_SetDrop_DeterministicFromSeed(t *testing.T) {
	first := outcomes(t, 42)
	require.Equal(t, first, outcomes(t, 42), "the same seed must drop the same calls")
	require.NotEqual(t, first, outcomes(t, 43), "another seed should drop other calls")
	lost := strings.Count(first, "x")
	require.True(t, lost > 30 && lost < 90, "%d of 200 calls lost at p=0.3", lost)
}

func TestNetwork_SetDrop_Extremes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, memnet.Options{Seed: 1}, "a", "b")
		c.net.SetDrop(1)
		_, err := c.call("a", "b")
		requireLost(t, err)
		c.net.SetDrop(0)
		_, err = c.call("a", "b")
		require.NoError(t, err)
	})
	n := memnet.New(memnet.Options{})
	for _, p := range []float64{-0.1, 1.1} {
		require.Panics(t, func() { n.SetDrop(p) })
		require.Panics(t, func() { n.SetDuplicate(p) })
	}
	require.Panics(t, func() { n.SetDelay(2*time.Second, time.Second) })
	require.Panics(t, func() { n.SetDelay(-time.Second, time.Second) })
}

func TestNetwork_SetDelay_OnFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, memnet.Options{Seed: 7}, "a", "b")
		c.net.SetDelay(10*time.Millisecond, 20*time.Millisecond)
		distinct := map[time.Duration]bool{}
		for range 20 {
			start := time.Now()
			_, err := c.call("a", "b")
			require.NoError(t, err)
			d := time.Since(start)
			require.GreaterOrEqual(t, d, 10*time.Millisecond)
			require.LessOrEqual(t, d, 20*time.Millisecond)
			distinct[d] = true
		}
		require.Greater(t, len(distinct), 1, "delays should vary")

		// A delay longer than the caller's deadline loses the call to its ctx.
		c.net.SetDelay(2*time.Second, 2*time.Second)
		start := time.Now()
		_, err := c.call("a", "b")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, time.Second, time.Since(start))
	})
}

func TestNetwork_SetDuplicate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, memnet.Options{Seed: 1}, "a", "b")
		c.net.SetDuplicate(1)
		reply, err := c.call("a", "b")
		require.NoError(t, err)
		require.Equal(t, "b:hi", string(reply))
		synctest.Wait() // the duplicate runs in its own goroutine
		require.Equal(t, 2, c.handled("b"))
		require.Equal(t, memnet.Stats{Delivered: 1, Duplicated: 1}, c.net.Stats())
	})
}

func TestTransport_Close_CancelsHandlersAndFreesCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(memnet.Options{})
		a, err := n.Listen("a")
		require.NoError(t, err)
		b, err := n.Listen("b")
		require.NoError(t, err)
		var cancelled atomic.Int32
		require.NoError(t, b.Serve(func(ctx context.Context, _ []byte) ([]byte, error) {
			<-ctx.Done()
			cancelled.Add(1)
			return nil, ctx.Err()
		}))
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := a.Call(context.Background(), "b", nil)
				errs <- err
			}()
		}
		synctest.Wait()
		require.NoError(t, b.Close())
		require.Equal(t, int32(3), cancelled.Load())
		for range 3 {
			require.ErrorIs(t, <-errs, transport.ErrUnreachable)
		}
		require.NoError(t, a.Close())
	})
}

func TestTransport_LostCall_UnblockedByClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, memnet.Options{}, "a", "b")
		c.net.Isolate("b")
		errc := make(chan error, 1)
		go func() {
			_, err := c.nodes["a"].Call(context.Background(), "b", nil)
			errc <- err
		}()
		synctest.Wait()
		require.NoError(t, c.nodes["a"].Close())
		require.True(t, errors.Is(<-errc, transport.ErrClosed))
	})
}
