package dtype

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Narrowing: from the decoder's float32 output to the dtypes decompress can
// write. Every narrowing conversion rounds to nearest, ties to even, from the
// exact value of the float32 (one rounding, no double rounding).

// FromFloat32 converts w to little-endian bytes of dtype, one of the Codable
// types.
func FromFloat32(dtype string, w []float32) ([]byte, error) {
	size, ok := Size(dtype)
	if !ok || !Codable(dtype) {
		return nil, fmt.Errorf("cannot write coded weights as %s", dtype)
	}
	out := make([]byte, len(w)*size)
	switch dtype {
	case "F64":
		for i, x := range w {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(float64(x)))
		}
	case "F32":
		for i, x := range w {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
	case "BF16":
		for i, x := range w {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(x))
		}
	case "F16":
		for i, x := range w {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToF16(x))
		}
	case "F8_E4M3":
		for i, x := range w {
			out[i] = uint8(roundMini(x, f8e4m3))
		}
	case "F8_E5M2":
		for i, x := range w {
			out[i] = uint8(roundMini(x, f8e5m2))
		}
	}
	return out, nil
}

// Overflowed counts the finite values of w that FromFloat32 wrote to data
// (its output for w) as ±Inf (F16, BF16, F8_E5M2) or saturated (F8_E4M3,
// which has no infinity: ±448): values beyond dtype's range. The output code
// is looked at first, so the common case costs one integer test per value.
func Overflowed(dtype string, w []float32, data []byte) int64 {
	finite := func(x float32) bool { return !math.IsInf(float64(x), 0) && !math.IsNaN(float64(x)) }
	var n int64
	switch dtype {
	case "F16", "BF16":
		inf := uint16(0x7c00)
		if dtype == "BF16" {
			inf = 0x7f80
		}
		for i := range w {
			if binary.LittleEndian.Uint16(data[2*i:])&0x7fff == inf && finite(w[i]) {
				n++
			}
		}
	case "F8_E5M2":
		for i := range w {
			if data[i]&0x7f == 0x7c && finite(w[i]) {
				n++
			}
		}
	case "F8_E4M3":
		for _, x := range w {
			if finite(x) && math.Abs(float64(x)) > 448 {
				n++
			}
		}
	}
	return n
}

// Float32ToBF16 rounds to nearest even; NaN stays a (quiet) NaN.
func Float32ToBF16(x float32) uint16 {
	u := math.Float32bits(x)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep the sign, force a quiet payload
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// Float32ToF16 rounds to nearest even (IEEE binary16, with subnormals and
// overflow to infinity).
func Float32ToF16(x float32) uint16 { return roundMini(x, f16) }

// miniFloat describes a small binary float format.
type miniFloat struct {
	expBits, manBits int
	bias             int
	// ieee: the all-ones exponent is inf/NaN (F16, F8_E5M2). Otherwise
	// (F8_E4M3, "FN"): no infinities, S.1111.111 is NaN, and values
	// beyond the largest finite saturate to it.
	ieee bool
}

var (
	f16    = miniFloat{expBits: 5, manBits: 10, bias: 15, ieee: true}
	f8e5m2 = miniFloat{expBits: 5, manBits: 2, bias: 15, ieee: true}
	f8e4m3 = miniFloat{expBits: 4, manBits: 3, bias: 7}
)

func (f miniFloat) nan() uint16 {
	if f.ieee {
		return uint16((1<<f.expBits-1)<<f.manBits | 1<<(f.manBits-1))
	}
	return uint16(1<<(f.expBits+f.manBits) - 1)
}

func (f miniFloat) inf() uint16 { return uint16((1<<f.expBits - 1) << f.manBits) }

// maxFinite is the code of the largest finite magnitude.
func (f miniFloat) maxFinite() uint16 {
	if f.ieee {
		return f.inf() - 1
	}
	return f.nan() - 1
}

// roundMini rounds x to the nearest value of f, ties to even mantissa.
func roundMini(x float32, f miniFloat) uint16 {
	sign := uint16(0)
	if math.Signbit(float64(x)) {
		sign = 1 << (f.expBits + f.manBits)
	}
	a := math.Abs(float64(x))
	switch {
	case math.IsNaN(a):
		return sign | f.nan()
	case math.IsInf(a, 0):
		if f.ieee {
			return sign | f.inf()
		}
		return sign | f.maxFinite()
	case a == 0:
		return sign
	}
	minExp := 1 - f.bias  // exponent of the smallest normal
	_, e := math.Frexp(a) // a = frac·2^e, frac in [0.5, 1)
	e--                   // a in [2^e, 2^(e+1))
	if e < minExp {
		e = minExp
	}
	// Quantum at this binade; a/q is exact in float64 (a is a float32).
	q := math.Ldexp(1, e-f.manBits)
	r := math.RoundToEven(a / q) // mantissa with the implicit bit, may reach 2^(manBits+1)
	if r == 0 {
		return sign
	}
	m := uint64(r)
	if m >= 1<<(f.manBits+1) { // rounded up into the next binade
		m >>= 1
		e++
	}
	var code uint64
	if m < 1<<f.manBits { // subnormal (only possible at e == minExp)
		code = m
	} else {
		code = uint64(e+f.bias)<<f.manBits | (m - 1<<f.manBits)
	}
	if code > uint64(f.maxFinite()) {
		if f.ieee {
			return sign | f.inf()
		}
		return sign | f.maxFinite()
	}
	return sign | uint16(code)
}
