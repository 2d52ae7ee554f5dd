//go:build !amd64 || purego

package encoder

// peakLaneFMAs is a scalar multiply-add loop where there is no SIMD kernel.
func peakLaneFMAs(n int) float64 {
	var a, b, c, d float32 = 1, 1, 1, 1
	for i := 0; i < n; i++ {
		a = a*0.999 + 0.001
		b = b*0.999 + 0.001
		c = c*0.999 + 0.001
		d = d*0.999 + 0.001
	}
	sink = a + b + c + d
	return float64(n) * 4
}

var sink float32
