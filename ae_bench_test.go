// ae_bench_test.go: what one anti-entropy round costs for 100k keys at 0%,
// 1% and 10% divergence (the figures the anti-entropy issue asks for).
package dynamo

import (
	"context"
	"fmt"
	"testing"
)

func BenchmarkAntiEntropy_100k(b *testing.B) {
	for _, pct := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("divergent=%d%%", pct), func(b *testing.B) {
			const keys = 100_000
			value := make([]byte, 1024)
			var last SyncResult
			for b.Loop() {
				b.StopTimer()
				c := newTestCluster(b, 2, func(cfg *Config) {
					cfg.N, cfg.R, cfg.W = 2, 1, 1
					cfg.Partitions = DefaultPartitions
					cfg.AntiEntropy.Interval = -1
					cfg.AntiEntropy.KeysPerSecond = 1 << 30
				})
				for i := range keys {
					key := fmt.Sprintf("key-%06d", i)
					st := oneSibling("w/1", 1, string(value), false)
					c.seed(0, key, st)
					if pct == 0 || i%100 >= pct {
						c.seed(1, key, st)
					} else {
						c.seed(1, key, syncStates(st, oneSibling("x/1", 1, "diverged", false)))
					}
				}
				b.StartTimer()
				res, err := c.stores[0].AntiEntropy(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				last = res
				b.StopTimer()
				c.close()
				b.StartTimer()
			}
			b.ReportMetric(float64(last.BytesSent+last.BytesReceived), "wire-bytes")
			b.ReportMetric(float64(last.RoundTrips), "round-trips")
			b.ReportMetric(float64(last.KeysSent+last.KeysReceived), "keys-moved")
		})
	}
}
