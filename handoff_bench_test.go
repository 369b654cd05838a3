// handoff_bench_test.go: how long 10k hinted writes take to drain once their
// owner returns, and what foreground puts get meanwhile (the hinted-handoff
// issue's report). Run: go test -run XXX -bench Handoff_Drain -benchtime 1x .
package dynamo

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkHandoff_Drain10k(b *testing.B) {
	for b.Loop() {
		c := newTestCluster(b, 4, func(cfg *Config) { cfg.Partitions = 1024; cfg.AntiEntropy.Interval = -1 })
		c.onBolt(b, b.TempDir())
		owner := nodeID(3)
		c.down(owner)
		value := make([]byte, 1024)
		ctx := context.Background()
		// 10k writes for which the owner is a primary, from 16 writers.
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > 10_000 {
						return
					}
					var key []byte
					for j := i; ; j += 10_000_000 {
						key = strconv.AppendInt([]byte("h-"), j, 10)
						if containsID(c.stores[0].PreferenceList(key, 3), owner) {
							break
						}
					}
					via := c.stores[0].PreferenceList(key, 1)[0].ID
					if via == owner {
						via = c.stores[0].PreferenceList(key, 2)[1].ID
					}
					if err := c.stores[indexOf(via)].Put(ctx, key, value, Context{}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		// The last hints land in the background, after their Puts met W.
		deadline := time.Now().Add(10 * time.Second)
		for c.totalPending() < 10_000 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		pending := c.totalPending()
		if pending < 10_000 {
			b.Fatalf("only %d hints pending", pending)
		}

		foreground := func(stop <-chan struct{}) int64 {
			var ops atomic.Int64
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						key := strconv.AppendInt([]byte("fg-"+strconv.Itoa(w)+"-"), int64(i), 10)
						via := c.stores[i%3]
						if err := via.Put(ctx, key, value, Context{}); err == nil {
							ops.Add(1)
						}
					}
				}()
			}
			<-stop
			wg.Wait()
			return ops.Load()
		}

		start := time.Now()
		c.upAll()
		stop := make(chan struct{})
		done := make(chan int64)
		go func() { done <- foreground(stop) }()
		tick := time.NewTicker(10 * time.Millisecond) // measurement resolution
		for c.totalPending() > 0 {
			<-tick.C
		}
		tick.Stop()
		drain := time.Since(start)
		close(stop)
		during := <-done
		stop2 := make(chan struct{})
		time.AfterFunc(drain, func() { close(stop2) })
		after := foreground(stop2)
		b.ReportMetric(drain.Seconds(), "drain-s")
		b.ReportMetric(float64(pending), "hints")
		b.ReportMetric(float64(during)/drain.Seconds(), "puts/s-during")
		b.ReportMetric(float64(after)/drain.Seconds(), "puts/s-after")
		c.close()
	}
}
