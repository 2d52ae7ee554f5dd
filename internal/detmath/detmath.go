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
	switch {
	case x != x || x < 0:
		return math.NaN()
	case x == 0:
		return math.Inf(-1)
	case math.IsInf(x, 1):
		return x
	}
	m, e := math.Frexp(x) // x = m·2^e, m ∈ [½, 1); exact, subnormals too
	if m < math.Sqrt2/2 {
		m *= 2 // exact
		e--
	}
	// m ∈ [√½, √2): ln m = 2·atanh(s) = 2·(s + s³/3 + s⁵/5 + …) with
	// s = (m−1)/(m+1), |s| ≤ 0.1716, s² ≤ 0.0295: the terms after s^23 are
	// below 2^−60 of the sum.
	s := (m - 1) / (m + 1)
	s2 := float64(s * s)
	p := 1.0 / 25
	for k := 23; k >= 1; k -= 2 {
		p = float64(p*s2) + 1/float64(k)
	}
	lnm := 2 * float64(s*p)
	return float64(lnm*math.Log2E) + float64(e)
}
