package model

import "math"

// The package's own exp, sin and cos, in float64 (log is detmath.Log, for
// the same reason). Why not package math: its functions may be assembly on
// one architecture and Go on another, and Go may fuse a*b+c into one FMA on arm64 but not on amd64, so
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

// expDet is e^x: x = (64k + j)·ln2/64 + r with |r| ≤ ln2/128, e^x =
// 2^k · 2^(j/64) · e^r, the 64 table values computed once by the long
// series (expSeries), e^r by a degree-5 Taylor polynomial (< 1e−15).
func expDet(x float64) float64 {
	if !(x > -745.2) { // also NaN
		if x != x {
			return x
		}
		return 0
	}
	if x > 709.78 {
		return math.Inf(1)
	}
	// n = round(x·64/ln2), by truncation of x·64/ln2 ± ½.
	t := float64(x * (64 * log2e))
	if t < 0 {
		t -= 0.5
	} else {
		t += 0.5
	}
	ni := int64(t)
	n := float64(ni)
	r := (x - float64(n*(ln2Hi/64))) - float64(n*(ln2Lo/64))
	p := float64(float64(float64(float64(float64(r*(1.0/120))+1.0/24)*r)+1.0/6)*r) + 0.5
	p = float64(float64(float64(p*r)+1)*r) + 1
	j, k := ni&63, ni>>6 // n = 64k + j, 0 ≤ j < 64
	v := float64(p * exp2Tab[j])
	if k > -1022 && k < 1024 {
		return float64(v * math.Float64frombits(uint64(k+1023)<<52))
	}
	return math.Ldexp(v, int(k))
}

// exp2Tab holds 2^(j/64), j < 64, from the long series.
var exp2Tab = func() (t [64]float64) {
	for j := range t {
		t[j] = expSeries(float64(j) * (math.Ln2 / 64))
	}
	return t
}()

// expSeries is e^x for |x| ≤ ln 2 by its Taylor series to x^20 (exact to
// the last bit or two); only used to build exp2Table.
func expSeries(x float64) float64 {
	p := 1.0
	for k := 20; k >= 1; k-- {
		p = float64(float64(p*x)/float64(k)) + 1
	}
	return p
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
