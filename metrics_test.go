// metrics_test.go: the built-in metrics count what happened: requests by
// outcome, siblings per read, sizes, quorum failures, served requests.
package dynamo

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistogram_Buckets(t *testing.T) {
	h := newHistogram(siblingsLayout)
	for _, v := range []int64{0, 1, 2, 2, 5, 6, 200} {
		h.observe(v)
	}
	s := h.snapshot()
	require.Equal(t, uint64(7), s.Count)
	require.Equal(t, float64(216), s.Sum)
	require.Equal(t, []float64{0, 1, 2, 3, 4, 5, 8, 16, 32, 64, 128}, s.Bounds)
	require.Equal(t, []uint64{1, 1, 2, 0, 0, 1, 1, 0, 0, 0, 0, 1}, s.Counts)
	require.Equal(t, []uint64{1, 2, 4, 4, 4, 5, 6, 6, 6, 6, 6}, s.Cumulative())
	require.Equal(t, float64(2), s.Quantile(0.5))
	require.Equal(t, float64(8), s.Quantile(6.0/7))
	require.True(t, math.IsInf(s.Quantile(1), 1))
	require.Equal(t, float64(0), Histogram{}.Quantile(0.5))
	require.InDelta(t, 216.0/7, s.Mean(), 1e-9)

	l := newHistogram(latencyLayout).snapshot()
	require.InDelta(t, 50e-6, l.Bounds[0], 1e-12)
	require.Greater(t, l.Bounds[len(l.Bounds)-1], 10.0)
	z := newHistogram(sizeLayout).snapshot()
	require.Equal(t, float64(1), z.Bounds[0])
	require.Equal(t, float64(16<<20), z.Bounds[len(z.Bounds)-1])
}

func TestMetrics_CountsRequests(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := context.Background()
	a := c.stores[0]
	for i := range 5 {
		require.NoError(t, a.Put(ctx, []byte{'k', byte(i)}, make([]byte, 100), CausalContext{}))
	}
	_, cc, err := a.Get(ctx, []byte{'k', 0})
	require.NoError(t, err)
	require.NoError(t, a.Delete(ctx, []byte{'k', 0}, cc))
	require.ErrorIs(t, a.Put(ctx, nil, []byte("v"), CausalContext{}), ErrEmptyKey)

	m := a.Metrics()
	require.Equal(t, "n0", m.Node)
	require.Equal(t, uint64(5), m.Count(OpPut, OutcomeOK))
	require.Equal(t, uint64(1), m.Count(OpPut, OutcomeBadInput))
	require.Equal(t, uint64(1), m.Count(OpDelete, OutcomeOK))
	require.Equal(t, uint64(1), m.Count(OpGet, OutcomeOK))
	require.Equal(t, uint64(1), m.Siblings.Count)
	require.Equal(t, uint64(1), m.Siblings.Counts[1]) // one sibling
	require.Equal(t, float64(100), m.ReadBytes.Sum)
	require.Equal(t, uint64(6), m.WriteBytes.Count) // five puts and the bad one
	require.Equal(t, 3, m.Membership.Members)
	require.Equal(t, 3, m.Health.Reachable)
	require.True(t, m.Health.Healthy())
	var served uint64
	for _, s := range c.stores[1:] {
		served += s.Metrics().Served["replicate"]
	}
	require.GreaterOrEqual(t, served, uint64(6)) // each write replicated to both other primaries (N=3)
}

func TestMetrics_QuorumFailureReasons(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := context.Background()
	a := c.stores[0]
	c.members.SetReachable("n1", false)
	c.members.SetReachable("n2", false)
	err := a.Put(ctx, []byte("k"), []byte("v"), CausalContext{}, WithPrimariesOnly())
	require.True(t, errors.Is(err, ErrWriteQuorum), "%v", err)
	m := a.Metrics()
	require.Equal(t, uint64(1), m.Count(OpPut, OutcomeQuorum))
	require.Equal(t, []QuorumFailures{{Op: OpPut, Reason: ReasonUnreachable, Count: 1}}, m.QuorumFailures)
}

// BenchmarkMetrics_Request is what metrics add to one request: a latency
// observation by outcome, and a size or siblings observation.
func BenchmarkMetrics_Request(b *testing.B) {
	m := newMetrics()
	st := state{Siblings: []sibling{{Value: make([]byte, 1024)}}}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			m.observeRead(st)
			m.done(opGet, start, nil)
		}
	})
}
