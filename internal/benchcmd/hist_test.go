package benchcmd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBucketOf_RangesTile(t *testing.T) {
	next := uint64(0)
	for i := range (64 - subBits) * subCount {
		low, width := bucketRange(i)
		require.Equal(t, next, low, "bucket %d", i)
		require.Equal(t, i, bucketOf(low))
		require.Equal(t, i, bucketOf(low+width-1))
		next = low + width
	}
}

func TestHistogram_Quantile(t *testing.T) {
	tests := map[string]struct {
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		"empty":             {nil, 0.5, 0},
		"one value":         {[]time.Duration{7 * time.Millisecond}, 0.99, 7 * time.Millisecond},
		"small exact":       {[]time.Duration{1, 2, 3, 4}, 0.5, 2},
		"p99 of 1..1000 µs": {seq(1000, time.Microsecond), 0.99, 990 * time.Microsecond},
		"p50 of 1..1000 µs": {seq(1000, time.Microsecond), 0.5, 500 * time.Microsecond},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var h, parts histogram
			for i, v := range tc.values {
				if i%2 == 0 {
					h.record(v)
				} else {
					parts.record(v)
				}
			}
			h.merge(&parts)
			got := h.quantile(tc.q)
			require.InEpsilon(t, float64(tc.want)+1, float64(got)+1, 1.0/subCount, "got %v want %v", got, tc.want)
		})
	}
}

func seq(n int, unit time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * unit
	}
	return out
}
