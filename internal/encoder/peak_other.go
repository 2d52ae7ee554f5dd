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

// peakMAC16s is a scalar int16 multiply-add loop where there is no SIMD
// kernel.
func peakMAC16s(n int) float64 {
	var a, b, c, d int32 = 1, 2, 3, 4
	for i := 0; i < n; i++ {
		a += int32(int16(i)) * 3
		b += int32(int16(i)) * 5
		c += int32(int16(i)) * 7
		d += int32(int16(i)) * 9
	}
	sinkI = a + b + c + d
	return float64(n) * 4
}

var sinkI int32
