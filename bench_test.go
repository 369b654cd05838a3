// bench_test.go: benchmarks of the coordinator paths and version sync.
package dynamo

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
)

func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte("key-" + strconv.Itoa(i))
	}
	return keys
}

func benchmarkPutGet(b *testing.B, c *testCluster) {
	ctx := context.Background()
	value := make([]byte, 1024)
	keys := benchKeys(10000)
	b.Run("Put", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			key := strconv.AppendInt([]byte("put-"), int64(i), 10) // fresh keys: blind writes to one key would pile up siblings
			if err := c.stores[i%3].Put(ctx, key, value, Context{}, WithW(2)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	for _, k := range keys {
		if err := c.stores[0].Put(ctx, k, value, Context{}, WithW(3)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Get", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, _, err := c.stores[i%3].Get(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkStore_Memory(b *testing.B) {
	c := newTestCluster(b, 3, func(cfg *Config) { cfg.Partitions = 1024 })
	benchmarkPutGet(b, c)
}

func BenchmarkStore_Bolt(b *testing.B) {
	c := newTestCluster(b, 3, func(cfg *Config) { cfg.Partitions = 1024 })
	c.onBolt(b, b.TempDir())
	benchmarkPutGet(b, c)
}

// BenchmarkStore_Bolt_Parallel measures puts from 16 concurrent clients, where
// group commit shares each fsync among the writes in flight.
func BenchmarkStore_Bolt_Parallel(b *testing.B) {
	c := newTestCluster(b, 3, func(cfg *Config) { cfg.Partitions = 1024 })
	c.onBolt(b, b.TempDir())
	value := make([]byte, 1024)
	var n atomic.Int64
	b.SetParallelism(8) // 16 clients on 2 cores
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			key := strconv.AppendInt([]byte("par-"), i, 10)
			if err := c.stores[i%3].Put(context.Background(), key, value, Context{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSync(b *testing.B) {
	for _, n := range []int{2, 10} {
		b.Run(fmt.Sprintf("siblings=%d", n), func(b *testing.B) {
			var x, y state
			for i := range n {
				// x and y each hold half the siblings and have seen the other's half only partly
				actor := "node-" + strconv.Itoa(i)
				sb := sibling{Dot: dot{actor, 1}, Time: int64(i), Value: make([]byte, 64)}
				if i%2 == 0 {
					x.Siblings = append(x.Siblings, sb)
					x.VV = x.VV.with(actor, 1)
				} else {
					y.Siblings = append(y.Siblings, sb)
					y.VV = y.VV.with(actor, 1)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				st := syncStates(x, y)
				if len(st.Siblings) != n {
					b.Fatal(len(st.Siblings))
				}
			}
		})
	}
}

// BenchmarkCatchUp_100MiB measures how long a node takes to catch up after
// missing 100 values of 1 MiB while it was down (3 nodes on TCP and bbolt,
// N=3): from its restart until its start-up pulls are done. It reports the
// rounds, round trips and bytes the pulls took.
func BenchmarkCatchUp_100MiB(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		c := newTCPCluster(b, "a", "b", "c")
		size := c.stores["a"].cfg.Limits.MaxValueSize
		c.stop("c")
		for i := range 100 {
			if err := c.stores["a"].Put(ctx, fmt.Appendf(nil, "missed-%03d", i), bigValue(i, size), Context{}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		s := c.start("c")
		rounds := 0
		for s.PendingTransfers() > 0 {
			if err := s.TransferRound(ctx); err != nil {
				b.Fatal(err)
			}
			rounds++
		}
		b.StopTimer()
		w := s.Stats().Transfer
		b.ReportMetric(float64(rounds), "rounds")
		b.ReportMetric(float64(w.RoundTrips), "round-trips")
		b.ReportMetric(float64(w.KeysReceived), "keys")
		b.ReportMetric(float64(w.BytesReceived)/(1<<20), "MiB-received")
		b.ReportMetric(float64(w.BytesSent)/(1<<10), "KiB-sent")
		for _, id := range []string{"a", "b", "c"} {
			c.closers[id]()
		}
		b.StartTimer()
	}
}
