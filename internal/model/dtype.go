package model

import (
	"math"
	"sync"
)

// F32ToBF16 rounds to the nearest bfloat16, ties to even; NaN stays a quiet
// NaN.
func F32ToBF16(x float32) uint16 {
	u := math.Float32bits(x)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// F32ToF16 rounds to the nearest IEEE half, ties to even, with subnormals,
// overflow to infinity and NaN kept.
func F32ToF16(x float32) uint16 {
	u := math.Float32bits(x)
	sign := uint16(u>>16) & 0x8000
	u &= 0x7fffffff
	switch {
	case u > 0x7f800000:
		return sign | 0x7e00
	case u >= 0x477ff000: // ≥ 65520 rounds to infinity
		return sign | 0x7c00
	case u >= 0x38800000: // normal half (≥ 2^−14): drop 13 mantissa bits
		u += 0x0fff + (u>>13)&1
		return sign | uint16((u-0x38000000)>>13)
	case u < 0x33000000: // below 2^−25: rounds to zero
		return sign
	}
	// Subnormal half: count units of 2^−24.
	e := u >> 23
	m := u&0x7fffff | 0x800000
	shift := 126 - e
	r := m >> shift
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && r&1 == 1) {
		r++
	}
	return sign | uint16(r)
}

var (
	f16Once sync.Once
	f16Tab  *[65536]float32
)

// f16Table maps every half to its float32 value.
func f16Table() *[65536]float32 {
	f16Once.Do(func() {
		t := new([65536]float32)
		for i := range t {
			h := uint32(i)
			sign := (h >> 15) << 31
			exp := (h >> 10) & 0x1f
			mant := h & 0x3ff
			var v float32
			switch {
			case exp == 0:
				v = float32(math.Ldexp(float64(mant), -24))
			case exp == 31 && mant == 0:
				v = float32(math.Inf(1))
			case exp == 31:
				v = math.Float32frombits(0x7fc00000 | mant<<13)
			default:
				v = math.Float32frombits((exp+112)<<23 | mant<<13)
			}
			t[i] = math.Float32frombits(math.Float32bits(v) | sign)
		}
		f16Tab = t
	})
	return f16Tab
}
