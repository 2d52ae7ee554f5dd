package encoder

import (
	"math"
	"math/big"
	"testing"
)

// TestCeilLog2 checks the exponent bias's ⌈log2 y⌉ at and beside powers of
// two, where math.Ceil(math.Log2(y)) depends on Log2's last bit (which
// differs between amd64 and arm64).
func TestCeilLog2(t *testing.T) {
	for k := -1074; k <= 1023; k++ {
		p := math.Ldexp(1, k)
		if got := ceilLog2(p); got != k {
			t.Fatalf("ceilLog2(2^%d) = %d", k, got)
		}
		if got := ceilLog2(math.Nextafter(p, math.Inf(1))); k < 1023 && got != k+1 {
			t.Fatalf("ceilLog2(next above 2^%d) = %d, want %d", k, got, k+1)
		}
		if got := ceilLog2(math.Nextafter(p, 0)); k > -1073 && got != k {
			t.Fatalf("ceilLog2(next below 2^%d) = %d, want %d", k, got, k)
		}
		if got := ceilLog2(1.5 * p); k < 1023 && got != k+1 {
			t.Fatalf("ceilLog2(1.5·2^%d) = %d, want %d", k, got, k+1)
		}
	}
}

// TestEighthOctaves: each constant is 2^(−j/8) correctly rounded, i.e.
// (x − ½ulp)^8 < 2^−j < (x + ½ulp)^8, in exact big-float arithmetic.
func TestEighthOctaves(t *testing.T) {
	pow8 := func(x *big.Float) *big.Float {
		r := new(big.Float).SetPrec(1000).SetInt64(1)
		for range 8 {
			r.Mul(r, x)
		}
		return r
	}
	for j, x := range eighthOctaves {
		want := new(big.Float).SetPrec(1000).SetMantExp(big.NewFloat(1), -j)
		half := (math.Nextafter(x, 2) - x) / 2
		lo := pow8(new(big.Float).SetPrec(1000).Sub(big.NewFloat(x).SetPrec(1000), big.NewFloat(half)))
		hi := pow8(new(big.Float).SetPrec(1000).Add(big.NewFloat(x).SetPrec(1000), big.NewFloat(half)))
		if lo.Cmp(want) >= 0 || hi.Cmp(want) <= 0 {
			t.Errorf("eighthOctaves[%d] = %v is not 2^(-%d/8) correctly rounded", j, x, j)
		}
	}
}
