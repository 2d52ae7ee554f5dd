package encoder

import (
	"math"
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
