// zipf.go: a Zipf sampler for any exponent s > 0 (s = 0.99 included), by
// rejection-inversion (Hörmann and Derflinger, "Rejection-inversion to
// generate variates from monotone discrete distributions", 1996).
package benchcmd

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// zipf draws ranks 1..n with P(k) proportional to k^-s. math/rand/v2's Zipf
// needs s > 1; YCSB-style hot-key workloads use s = 0.99, so this one takes
// any s > 0, with O(1) memory and time per draw (about 1.1 uniform draws on
// average), whatever n is.
//
// The method: h(x) = x^-s is decreasing, so the integral H of h maps a
// uniform draw u in [H(1.5)-1, H(n+0.5)] to x = H⁻¹(u), and rank k =
// round(x) is accepted when u lies in the part of k's interval that h(k)
// covers; most draws are accepted by the cheap test k-x <= c.
type zipf struct {
	rng  *rand.Rand
	n    float64
	s    float64
	hX1  float64 // H(1.5) - 1: h(1) fills [hX1, H(1.5)]
	hN   float64 // H(n + 0.5)
	skip float64 // the quick-accept bound c
}

// newZipf returns a sampler of ranks 1..n with exponent s.
func newZipf(rng *rand.Rand, s float64, n int) (*zipf, error) {
	if !(s > 0) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("zipf exponent (%v) must be positive and finite", s)
	}
	if n < 1 {
		return nil, fmt.Errorf("zipf needs at least 1 element, got %d", n)
	}
	z := &zipf{rng: rng, n: float64(n), s: s}
	z.hX1 = z.hIntegral(1.5) - 1
	z.hN = z.hIntegral(z.n + 0.5)
	z.skip = 2 - z.hIntegralInverse(z.hIntegral(2.5)-z.h(2))
	return z, nil
}

// rank returns the next rank, in 1..n.
func (z *zipf) rank() int {
	for {
		u := z.hN + z.rng.Float64()*(z.hX1-z.hN) // uniform in (hX1, hN]
		x := z.hIntegralInverse(u)
		k := math.Max(1, math.Min(z.n, math.Floor(x+0.5)))
		if k-x <= z.skip || u >= z.hIntegral(k+0.5)-z.h(k) {
			return int(k)
		}
	}
}

// h is x^-s.
func (z *zipf) h(x float64) float64 { return math.Exp(-z.s * math.Log(x)) }

// hIntegral is H(x) = (x^(1-s) - 1) / (1-s), log(x) at s = 1, computed
// without cancellation near s = 1.
func (z *zipf) hIntegral(x float64) float64 {
	lx := math.Log(x)
	return expm1Over((1-z.s)*lx) * lx
}

// hIntegralInverse is H⁻¹.
func (z *zipf) hIntegralInverse(x float64) float64 {
	t := x * (1 - z.s)
	if t < -1 { // rounding can take it just past the pole
		t = -1
	}
	return math.Exp(log1pOver(t) * x)
}

// expm1Over is (e^x - 1)/x, and its limit 1 at 0.
func expm1Over(x float64) float64 {
	if math.Abs(x) > 1e-8 {
		return math.Expm1(x) / x
	}
	return 1 + x*0.5*(1+x/3*(1+0.25*x))
}

// log1pOver is log(1+x)/x, and its limit 1 at 0.
func log1pOver(x float64) float64 {
	if math.Abs(x) > 1e-8 {
		return math.Log1p(x) / x
	}
	return 1 - x*(0.5-x*(1.0/3-0.25*x))
}
