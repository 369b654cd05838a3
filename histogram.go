// histogram.go: fixed-bucket histograms with one atomic counter per bucket,
// cheap enough to stay on in every request path, and their exported snapshot.
package dynamo

import (
	"math"
	"sync/atomic"
	"time"
)

// layout is one histogram's fixed buckets: inclusive upper bounds in the
// recorded unit (nanoseconds, bytes or a count), and the factor that turns
// that unit into the exported one (seconds for latencies).
type layout struct {
	bounds []int64
	scale  float64
}

// Latency buckets double from 50 µs to 13.1 s (19 bounds); size buckets
// quadruple from 1 B to 16 MiB (13 bounds); sibling buckets count 1 to 128.
var (
	latencyLayout  = geometric(50*int64(time.Microsecond), 2, 19, 1e-9)
	sizeLayout     = geometric(1, 4, 13, 1)
	siblingsLayout = &layout{bounds: []int64{0, 1, 2, 3, 4, 5, 8, 16, 32, 64, 128}, scale: 1}
)

func geometric(first, factor int64, n int, scale float64) *layout {
	l := &layout{bounds: make([]int64, n), scale: scale}
	for i, b := 0, first; i < n; i, b = i+1, b*factor {
		l.bounds[i] = b
	}
	return l
}

// histogram counts observations in fixed buckets. Each bucket and the sum
// is an atomic counter: observe takes no lock and allocates nothing. A
// snapshot taken during observations may see a bucket count and the sum
// of slightly different instants; each is exact on its own.
type histogram struct {
	l      *layout
	counts []atomic.Uint64 // len(l.bounds)+1: the last bucket is above every bound
	sum    atomic.Int64
}

func newHistogram(l *layout) *histogram {
	return &histogram{l: l, counts: make([]atomic.Uint64, len(l.bounds)+1)}
}

// observe records v (in the layout's unit); negative values count as 0.
func (h *histogram) observe(v int64) {
	v = max(v, 0)
	lo, hi := 0, len(h.l.bounds) // the first bound >= v
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if h.l.bounds[mid] < v {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	h.counts[lo].Add(1)
	h.sum.Add(v)
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: make([]float64, len(h.l.bounds)), Counts: make([]uint64, len(h.counts))}
	for i, b := range h.l.bounds {
		out.Bounds[i] = float64(b) * h.l.scale
	}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	out.Sum = float64(h.sum.Load()) * h.l.scale
	return out
}

// Histogram is a snapshot of a distribution in fixed buckets. Latencies
// are in seconds, sizes in bytes, sibling counts in siblings. The zero
// Histogram has no buckets and no observations.
type Histogram struct {
	// Bounds are the buckets' inclusive upper bounds, ascending. The same
	// histogram always has the same bounds.
	Bounds []float64 `json:"bounds"`
	// Counts holds one count per bucket, not cumulative: Counts[i] counts
	// the observations above Bounds[i-1] and at most Bounds[i], and the
	// last, Counts[len(Bounds)], those above every bound.
	Counts []uint64 `json:"counts"`
	// Count is the number of observations: the sum of Counts.
	Count uint64 `json:"count"`
	// Sum is the sum of the observed values.
	Sum float64 `json:"sum"`
}

// Cumulative returns, for each bound, the observations at most that bound
// (Prometheus's le buckets); Count is the +Inf bucket. The caller owns the
// slice.
func (h Histogram) Cumulative() []uint64 {
	out := make([]uint64, len(h.Bounds))
	var n uint64
	for i := range h.Bounds {
		n += h.Counts[i]
		out[i] = n
	}
	return out
}

// Mean returns Sum/Count, or 0 without observations.
func (h Histogram) Mean() float64 {
	if h.Count == 0 {
		return 0
	}
	return h.Sum / float64(h.Count)
}

// Quantile returns an upper estimate of the q-quantile (0 <= q <= 1): the
// upper bound of the bucket holding it, +Inf when that is the last bucket,
// and 0 without observations.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(min(max(q, 0), 1) * float64(h.Count)))
	rank = max(rank, 1)
	var n uint64
	for i, c := range h.Counts {
		n += c
		if n >= rank {
			if i < len(h.Bounds) {
				return h.Bounds[i]
			}
			break
		}
	}
	return math.Inf(1)
}
