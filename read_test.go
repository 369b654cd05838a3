// read_test.go: how many replicas a read asks (quorum.go readAll): R of
// them first, one more for each that fails and each time ReadHedge passes,
// or all N with ReadAllReplicas.
package dynamo

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport"
)

// readSpy counts the reads a coordinator sends to each address, and makes
// those to one address fail at once or answer only after a delay.
type readSpy struct {
	transport.Transport
	mu    sync.Mutex
	calls map[string]int
	bad   string        // reads to bad fail with ErrUnreachable
	slow  string        // reads to slow wait delay first
	delay time.Duration //
}

func (r *readSpy) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	if m, err := decodeMessage(req, wtLimits); err == nil {
		if _, isGet := m.Body.(*getReq); isGet {
			r.mu.Lock()
			r.calls[addr]++
			bad, slow, delay := r.bad, r.slow, r.delay
			r.mu.Unlock()
			if addr == bad {
				return nil, transport.ErrUnreachable
			}
			if addr == slow {
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		}
	}
	return r.Transport.Call(ctx, addr, req)
}

func (r *readSpy) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.calls {
		out[k] = v
	}
	return out
}

// spyOn restarts node 0 of a 3-node cluster behind a readSpy, with key "k"
// written to all three replicas. It runs inside a synctest bubble.
func spyOn(t *testing.T, change func(*Config)) (*testCluster, *Store, *readSpy) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.AntiEntropy.Interval = -1
		cfg.NoGetCoalescing = true
		if change != nil {
			change(cfg)
		}
	})
	put(t, c.stores[0], "k", "v", Context{}, WithW(3))
	spy := &readSpy{calls: map[string]int{}}
	coord := c.restartWith(0, nil, func(tr transport.Transport) transport.Transport {
		spy.Transport = tr
		return spy
	})
	synctest.Wait() // the restart's own reads (catching up) are done
	spy.mu.Lock()
	clear(spy.calls)
	spy.mu.Unlock()
	return c, coord, spy
}

// A read at R=2 through a replica asks itself and one other replica, the
// other turning from read to read; with ReadAllReplicas it asks both.
func TestRead_AsksR(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, coord, spy := spyOn(t, nil)
		for range 4 {
			vals, _ := get(t, coord, "k")
			require.Equal(t, []string{"v"}, vals)
		}
		synctest.Wait()
		require.Equal(t, map[string]int{nodeID(1): 2, nodeID(2): 2}, spy.counts(),
			"four reads asked one remote replica each, in turn")
	})
	synctest.Test(t, func(t *testing.T) {
		_, coord, spy := spyOn(t, func(cfg *Config) { cfg.ReadAllReplicas = true })
		for range 4 {
			vals, _ := get(t, coord, "k")
			require.Equal(t, []string{"v"}, vals)
		}
		synctest.Wait()
		require.Equal(t, map[string]int{nodeID(1): 4, nodeID(2): 4}, spy.counts())
	})
}

// A replica that fails is replaced at once by the next one: every read
// succeeds at R=2 without waiting, the failing replica asked on its turns.
func TestRead_FailedReplicaReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, coord, spy := spyOn(t, func(cfg *Config) { cfg.ReadHedge = -1 })
		spy.mu.Lock()
		spy.bad = nodeID(1)
		spy.mu.Unlock()
		for range 4 {
			start := time.Now()
			vals, _ := get(t, coord, "k")
			require.Equal(t, []string{"v"}, vals)
			require.Zero(t, time.Since(start), "no read waited")
		}
		synctest.Wait()
		require.Equal(t, map[string]int{nodeID(1): 2, nodeID(2): 4}, spy.counts(),
			"node 1 failed on its two turns and node 2 stood in")
	})
}

// A replica that does not answer within ReadHedge gets company: the read
// asks the next replica and returns with its answer, without waiting for
// the slow one. Without hedging it waits out ReplicaTimeout.
func TestRead_SlowReplicaHedged(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hedge time.Duration
		wait  time.Duration // what the reads that asked node 1 first waited
	}{
		{"hedged", 0, DefaultReadHedge},
		{"longer hedge", 100 * time.Millisecond, 100 * time.Millisecond},
		{"no hedge", -1, 0}, // ReplicaTimeout
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, coord, spy := spyOn(t, func(cfg *Config) { cfg.ReadHedge = tc.hedge })
				spy.mu.Lock()
				spy.slow, spy.delay = nodeID(1), time.Hour
				spy.mu.Unlock()
				wait := tc.wait
				if wait == 0 {
					wait = coord.cfg.ReplicaTimeout
				}
				var waits []time.Duration
				for range 4 {
					start := time.Now()
					vals, _ := get(t, coord, "k")
					require.Equal(t, []string{"v"}, vals)
					waits = append(waits, time.Since(start))
				}
				synctest.Wait()
				require.ElementsMatch(t, []time.Duration{0, 0, wait, wait}, waits)
				require.Equal(t, map[string]int{nodeID(1): 2, nodeID(2): 4}, spy.counts())
			})
		})
	}
}

// A read asks this node first when it is a primary, then the other
// primaries in turn, and a fallback only after every primary: a fallback
// holds hints, not the key, and asking one in place of a reachable
// primary could miss a write W primaries acknowledged (a simulation seed
// found a client's read that missed its own acknowledged write that way).
func TestRead_OrderPrimariesBeforeFallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		s := c.stores[0]
		self := Member{ID: s.cfg.NodeID}
		p2, p3, f1, f2 := Member{ID: "p2"}, Member{ID: "p3"}, Member{ID: "f1"}, Member{ID: "f2"}
		primaries := []Member{p2, self, p3}
		firstOthers := map[string]int{}
		for range 10 {
			order := s.readOrder([]Member{p2, self, f1, p3}, primaries)
			require.Len(t, order, 4)
			require.Equal(t, self, order[0], "this node, a primary, first")
			require.ElementsMatch(t, []Member{p2, p3}, order[1:3], "then the other primaries")
			require.Equal(t, f1, order[3], "the fallback last")
			firstOthers[order[1].ID]++
		}
		require.Equal(t, map[string]int{"p2": 5, "p3": 5}, firstOthers, "the primaries take turns")

		// This node as a fallback is asked after the primaries, in
		// preference order with the other fallbacks.
		order := s.readOrder([]Member{p2, f1, self, f2}, []Member{p2, p3, Member{ID: "p4"}})
		require.Equal(t, []Member{p2, f1, self, f2}, order)
	})
}

// When every replica asked answers alike, a read returns the merged state
// itself, with no copy and no read repair: the caller still owns its
// values, and changing them changes nothing stored, nor what the next read
// returns.
func TestRead_AgreeingReplicas_CallerOwnsValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.NoGetCoalescing = true
			cfg.AntiEntropy.Interval = -1
		})
		put(t, c.stores[0], "k", "v", Context{}, WithW(3))
		synctest.Wait()
		for i := range 3 {
			sibs, _, err := c.stores[i%2].Get(context.Background(), []byte("k"))
			require.NoError(t, err)
			require.Len(t, sibs, 1)
			require.Equal(t, "v", string(sibs[0].Value), "read %d", i)
			sibs[0].Value[0] = 'X' // the caller's bytes
		}
		synctest.Wait()
		for i := range 3 {
			require.Equal(t, []string{"v"}, c.local(i, "k"), "node %d", i)
		}
		require.Zero(t, c.stores[0].Stats().ReadRepairs, "replicas that agree are not repaired")
	})
}

// restartPulling restarts node 0 of c with node 2 cut off, so node 0 still
// has partitions to pull from it and its reads read through to it.
func restartPulling(t *testing.T, c *testCluster) {
	put(t, c.stores[0], "k", "v", Context{}, WithW(3))
	c.net.Isolate(nodeID(2))
	c.stop(0)
	c.start(0, c.storages[0])
	synctest.Wait()
	require.Positive(t, c.stores[0].PendingTransfers(), "node 0 still pulls from the node cut off")
}

// A coordinator still pulling the key's partition reads its own replica on
// a worker, not on the caller's goroutine: its read-through to a silent
// previous owner (up to half the replica timeout) must not outlast the
// caller's deadline. (An adversarial review found the inline read did.)
func TestRead_PullingCoordinator_KeepsCallerDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.AntiEntropy.Interval = -1
			cfg.NoGetCoalescing = true
		})
		restartPulling(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, _ = c.stores[0].Get(ctx, []byte("k"), WithR(2))
		require.LessOrEqual(t, time.Since(start), 50*time.Millisecond, "Get returned after its deadline")
		c.net.Heal()
	})
}

// ... nor hold up a quorum the other replicas meet at once.
func TestRead_PullingCoordinator_QuorumMetByOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.AntiEntropy.Interval = -1
			cfg.NoGetCoalescing = true
			cfg.ReadAllReplicas = true
		})
		restartPulling(t, c)
		start := time.Now()
		sibs, _, err := c.stores[0].Get(context.Background(), []byte("k"), WithR(1))
		require.NoError(t, err)
		require.Len(t, sibs, 1)
		require.Less(t, time.Since(start), 20*time.Millisecond, "node 1 met R=1 at once")
		c.net.Heal()
	})
}
