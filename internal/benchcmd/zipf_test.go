package benchcmd

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// zipfPMF returns the exact probabilities of ranks 1..n.
func zipfPMF(s float64, n int) []float64 {
	p := make([]float64, n)
	var sum float64
	for k := 1; k <= n; k++ {
		p[k-1] = math.Pow(float64(k), -s)
		sum += p[k-1]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// TestZipf_MatchesPMF draws from the sampler and compares the counts per
// rank with the exact distribution by a chi-square statistic (seeded, so
// deterministic), over exponents below, at and above 1.
func TestZipf_MatchesPMF(t *testing.T) {
	tests := map[string]struct {
		s float64
		n int
	}{
		"s=0.99 n=10":   {0.99, 10},
		"s=0.99 n=1000": {0.99, 1000},
		"s=0.5 n=50":    {0.5, 50},
		"s=1 n=50":      {1, 50},
		"s=2 n=50":      {2, 50},
		"s=0.99 n=1":    {0.99, 1},
	}
	const draws = 400_000
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			z, err := newZipf(rand.New(rand.NewPCG(7, 11)), tc.s, tc.n)
			require.NoError(t, err)
			counts := make([]float64, tc.n)
			for range draws {
				k := z.rank()
				require.True(t, k >= 1 && k <= tc.n, "rank %d outside 1..%d", k, tc.n)
				counts[k-1]++
			}
			// Pool the tail so that every cell expects at least 20 draws.
			pmf := zipfPMF(tc.s, tc.n)
			var chi2, expTail, gotTail float64
			cells := 0
			for i, p := range pmf {
				exp := p * draws
				if exp < 20 {
					expTail += exp
					gotTail += counts[i]
					continue
				}
				chi2 += (counts[i] - exp) * (counts[i] - exp) / exp
				cells++
			}
			if expTail > 0 {
				chi2 += (gotTail - expTail) * (gotTail - expTail) / expTail
				cells++
			}
			// For k degrees of freedom the 0.999 quantile is below k+4.5*sqrt(2k)+10.
			dof := float64(max(cells-1, 1))
			require.Less(t, chi2, dof+4.5*math.Sqrt(2*dof)+10, "chi-square over %d cells", cells)
			require.InDelta(t, pmf[0], counts[0]/draws, 0.005, "share of rank 1")
		})
	}
}

// TestZipf_HotShare checks the skew the bench relies on: at s = 0.99 over
// 10,000 keys the hottest key takes about a tenth of the draws.
func TestZipf_HotShare(t *testing.T) {
	z, err := newZipf(rand.New(rand.NewPCG(1, 2)), 0.99, 10_000)
	require.NoError(t, err)
	hot := 0
	for range 100_000 {
		if z.rank() == 1 {
			hot++
		}
	}
	require.InDelta(t, zipfPMF(0.99, 10_000)[0], float64(hot)/100_000, 0.005)
	require.Greater(t, hot, 8_000)
}

func TestNewZipf_RejectsBadParameters(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		_, err := newZipf(rng, s, 10)
		require.Error(t, err, "s=%v", s)
	}
	_, err := newZipf(rng, 0.99, 0)
	require.Error(t, err)
}
