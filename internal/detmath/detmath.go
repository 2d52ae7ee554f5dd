// Package detmath holds float64 functions that give the same bits on every
// architecture, for values that decide what seedlm writes.
//
// Why not package math: its Log, Log2, Exp … are assembly on some
// architectures and Go on others, and Go may contract x*y + z into one
// fused multiply-add (arm64, ppc64le, s390x, riscv64, amd64 built with
// GOAMD64=v3) where amd64 rounds twice; measured, math.Log2 differs in its
// last bit between amd64 and arm64 on about a third of random inputs. Here
// every product that is added is wrapped in an explicit float64()
// conversion, which the Go specification says forces its rounding, and
// only +, −, ×, ÷ and exact operations (Frexp) are used, so the result is
// the same bits wherever it runs.
package detmath

import "math"

// Log2 is the binary logarithm of x, within a few ulp of math.Log2:
// exact for powers of two, −Inf for 0, NaN for x < 0 and NaN, +Inf for +Inf.
func Log2(x float64) float64 {
	lnm, e, special, ok := reduce(x, 23)
	if !ok {
		return special
	}
	return float64(lnm*math.Log2E) + float64(e)
}

// ln 2 in two parts (fdlibm): e·ln2Hi is exact for the exponents of float64.
const (
	ln2Hi = 6.93147180369123816490e-01
	ln2Lo = 1.90821492927058770002e-10
)

// Log is the natural logarithm of x, within an ulp or two of math.Log,
// with the same special cases as Log2.
func Log(x float64) float64 {
	lnm, e, special, ok := reduce(x, 21)
	if !ok {
		return special
	}
	fe := float64(e)
	return (float64(fe*ln2Hi) + lnm) + float64(fe*ln2Lo)
}

// reduce splits x = m·2^e with m ∈ [√½, √2) and returns ln m from
// 2·atanh(s) = 2·(s + s³/3 + … + s^top/top), s = (m−1)/(m+1), |s| ≤ 0.1716,
// s² ≤ 0.0295 (top 21: terms after it below 2^−53 of the sum; 23: 2^−60).
// ok is false for the special cases, whose result is special.
func reduce(x float64, top int) (lnm float64, e int, special float64, ok bool) {
	switch {
	case x != x || x < 0:
		return 0, 0, math.NaN(), false
	case x == 0:
		return 0, 0, math.Inf(-1), false
	case math.IsInf(x, 1):
		return 0, 0, x, false
	}
	m, e := math.Frexp(x) // x = m·2^e, m ∈ [½, 1); exact, subnormals too
	if m < math.Sqrt2/2 {
		m *= 2 // exact
		e--
	}
	s := (m - 1) / (m + 1)
	s2 := float64(s * s)
	p := 1.0 / float64(top+2)
	for k := top; k >= 1; k -= 2 {
		p = float64(p*s2) + 1/float64(k)
	}
	return 2 * float64(s*p), e, 0, true
}
