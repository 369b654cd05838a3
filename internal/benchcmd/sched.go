// sched.go: how long goroutines waited to run, from runtime/metrics.
package benchcmd

import (
	"runtime/metrics"
	"time"
)

// schedLatency is the name of the runtime's histogram of the time
// goroutines spent runnable before they ran.
const schedLatency = "/sched/latencies:seconds"

// schedSample reads the scheduling-latency histogram.
func schedSample() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: schedLatency}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	return s[0].Value.Float64Histogram()
}

// schedQuantile returns quantile q of the waits recorded between two
// samples of the histogram (0 when there are none).
func schedQuantile(before, after *metrics.Float64Histogram, q float64) time.Duration {
	if before == nil || after == nil || len(before.Counts) != len(after.Counts) {
		return 0
	}
	var total uint64
	for i := range after.Counts {
		total += after.Counts[i] - before.Counts[i]
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var seen uint64
	for i := range after.Counts {
		seen += after.Counts[i] - before.Counts[i]
		if seen > want {
			// Buckets[i+1] is the bucket's upper bound.
			return time.Duration(after.Buckets[i+1] * float64(time.Second))
		}
	}
	return 0
}
