package model

import (
	"math"
	"sync"
)

// The package's own exp, log, sin and cos, in float64. Why not package
// math: its functions may be assembly on one architecture and Go on
// another, and Go may fuse a*b+c into one FMA on arm64 but not on amd64, so
// their last bit can differ across machines; one flipped bit in a softmax
// can change a sampled token. Here every product is wrapped in an explicit
// float64() conversion, which the Go spec says prevents fusion, so the
// results are the same bits everywhere. Accuracy is a few ulp, far below the
// float32 the results are used at.

const (
	ln2Hi = 6.93147180369123816490e-01 // high 32 bits of ln 2 (k·ln2Hi is exact)
	ln2Lo = 1.90821492927058770002e-10
	log2e = 1.44269504088896338700e+00
)

// expDet is e^x: x = (32k + j)·ln2/32 + r with |r| ≤ ln2/64, e^x =
// 2^k · 2^(j/32) · e^r, the 32 table values computed once by the long
// series (expSeries), e^r by a degree-6 Taylor polynomial (< 3e−16).
func expDet(x float64) float64 {
	switch {
	case x != x:
		return x
	case x > 709.78:
		return math.Inf(1)
	case x < -745.2:
		return 0
	}
	n := math.Floor(float64(x*(32*log2e)) + 0.5)
	r := (x - float64(n*(ln2Hi/32))) - float64(n*(ln2Lo/32))
	ni := int64(n)
	j, k := ni&31, ni>>5 // n = 32k + j, 0 ≤ j < 32
	p := 1.0 / 720
	for _, c := range [...]float64{1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1, 1} {
		p = float64(p*r) + c
	}
	v := float64(p * exp2Table()[j])
	if k > -1022 && k < 1024 {
		return float64(v * math.Float64frombits(uint64(k+1023)<<52))
	}
	return math.Ldexp(v, int(k))
}

var (
	exp2Once sync.Once
	exp2Tab  [32]float64
)

// exp2Table holds 2^(j/32), j < 32, from the long series.
func exp2Table() *[32]float64 {
	exp2Once.Do(func() {
		for j := range exp2Tab {
			exp2Tab[j] = expSeries(float64(j) * (math.Ln2 / 32))
		}
	})
	return &exp2Tab
}

// expSeries is e^x for |x| ≤ ln 2 by its Taylor series to x^20 (exact to
// the last bit or two); only used to build exp2Table.
func expSeries(x float64) float64 {
	p := 1.0
	for k := 20; k >= 1; k-- {
		p = float64(float64(p*x)/float64(k)) + 1
	}
	return p
}

// logDet is ln x for x > 0 (NaN otherwise, +Inf for +Inf).
func logDet(x float64) float64 {
	switch {
	case x != x || x < 0:
		return math.NaN()
	case x == 0:
		return math.Inf(-1)
	case math.IsInf(x, 1):
		return x
	}
	m, e := math.Frexp(x) // x = m·2^e, m ∈ [0.5, 1)
	if m < math.Sqrt2/2 {
		m *= 2
		e--
	}
	// ln m = 2·atanh(s), s = (m−1)/(m+1), |s| ≤ 0.172.
	s := (m - 1) / (m + 1)
	s2 := float64(s * s)
	p := 1.0 / 23
	for k := 21; k >= 1; k -= 2 {
		p = float64(p*s2) + 1/float64(k)
	}
	lm := 2 * float64(s*p)
	fe := float64(e)
	return (float64(fe*ln2Hi) + lm) + float64(fe*ln2Lo)
}

// π/2 in three parts (fdlibm): the first two have 33 significant bits, so
// k·part is exact for |k| < 2^20.
const (
	pio2a = 1.57079632673412561417e+00
	pio2b = 6.07710050630396597660e-11
	pio2c = 2.02226624879595063154e-21
	twoPi = 6.36619772367581382433e-01 // 2/π
)

// sinCosDet returns sin x and cos x for |x| < 2^19·π (RoPE angles are
// position × frequency ≤ context length).
func sinCosDet(x float64) (sin, cos float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) >= 1<<20 {
		return math.NaN(), math.NaN()
	}
	k := math.Floor(float64(x*twoPi) + 0.5)
	r := ((x - float64(k*pio2a)) - float64(k*pio2b)) - float64(k*pio2c) // |r| ≤ π/4
	r2 := float64(r * r)
	s := sinPoly(r, r2)
	c := cosPoly(r2)
	switch int64(k) & 3 {
	case 0:
		return s, c
	case 1:
		return c, -s
	case 2:
		return -s, -c
	default:
		return -c, s
	}
}

// sinPoly is sin r for |r| ≤ π/4, r2 = r·r.
func sinPoly(r, r2 float64) float64 {
	// sin r = r·(1 − r²/3! + r⁴/5! − …), to r^17.
	coef := [...]float64{1.0 / 355687428096000, -1.0 / 1307674368000, 1.0 / 6227020800, -1.0 / 39916800,
		1.0 / 362880, -1.0 / 5040, 1.0 / 120, -1.0 / 6, 1}
	p := coef[0]
	for _, c := range coef[1:] {
		p = float64(p*r2) + c
	}
	return float64(r * p)
}

// cosPoly is cos r for |r| ≤ π/4.
func cosPoly(r2 float64) float64 {
	coef := [...]float64{1.0 / 6402373705728000, -1.0 / 20922789888000, 1.0 / 87178291200, -1.0 / 479001600,
		1.0 / 3628800, -1.0 / 40320, 1.0 / 720, -1.0 / 24, 0.5}
	p := coef[0]
	for _, c := range coef[1:] {
		p = float64(p*r2) + c
	}
	// 1 − r²/2 + …: the last coefficient above is +½, so subtract.
	return 1 - float64(r2*p)
}
