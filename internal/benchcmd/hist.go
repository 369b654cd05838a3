// hist.go: a log-linear latency histogram in the manner of HdrHistogram.
package benchcmd

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: every power of two is cut into
// 2^subBits equal buckets, so a recorded value is known within 1/2^subBits
// (under 0.8%) of itself, and values below 2^subBits ns exactly.
const subBits = 7

const subCount = 1 << subBits

// histogram counts durations in log-linear buckets. The zero value is empty
// and ready to use; it is not safe for concurrent use (each client has its
// own, merged after the run).
type histogram struct {
	counts []uint64 // allocated on first record
	total  uint64
	max    time.Duration
}

// bucketOf returns the index of v's bucket. Values below subCount have a
// bucket each; above, the bucket of v is set by its leading subBits+1 bits.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - subBits // >= 1
	return e*subCount + int(v>>(e-1)) - subCount
}

// bucketRange returns the smallest value in bucket i and the bucket's width.
func bucketRange(i int) (low, width uint64) {
	if i < subCount {
		return uint64(i), 1
	}
	e := i / subCount
	m := uint64(i%subCount + subCount)
	return m << (e - 1), 1 << (e - 1)
}

func (h *histogram) record(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint64, (64-subBits+1)*subCount)
	}
	h.counts[bucketOf(uint64(max(d, 0)))]++
	h.total++
	h.max = max(h.max, d)
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, len(o.counts))
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the duration below which a fraction q of the recorded
// values lie, as the middle of its bucket (never above the largest value
// recorded). It is 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := min(max(uint64(math.Ceil(q*float64(h.total))), 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, width := bucketRange(i)
			return min(time.Duration(low+width/2), h.max)
		}
	}
	return h.max
}
