package dtype

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
)

// Widening: every dtype ToFloat32 accepts converts to float32 exactly,
// except F64, which rounds to nearest even.

// ToFloat32 converts little-endian elements of dtype in src to dst. len(dst)
// must be the element count of src.
func ToFloat32(dtype string, dst []float32, src []byte) error {
	b, ok := bitsOf[dtype]
	if !ok || !CanFloat32(dtype) {
		return fmt.Errorf("dtype %s cannot be converted to float32", dtype)
	}
	if int64(len(src))*8 != int64(len(dst))*int64(b) {
		return fmt.Errorf("internal: %d bytes of %s for %d elements", len(src), dtype, len(dst))
	}
	switch dtype {
	case "F32":
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case "F64":
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case "BF16":
		BF16ToFloat32(dst, src)
	case "F16":
		F16ToFloat32(dst, src)
	default:
		t := f8Tables[dtype]
		for i, v := range src {
			dst[i] = t[v]
		}
	}
	return nil
}

// WidenedToInf counts the values of src (little-endian dtype elements) that
// ToFloat32 made ±Inf in dst although they are finite: F64 values beyond
// float32's range. 0 for every other dtype (their range fits).
func WidenedToInf(dtype string, dst []float32, src []byte) int64 {
	if dtype != "F64" {
		return 0
	}
	var n int64
	for i, x := range dst {
		if math.IsInf(float64(x), 0) && !math.IsInf(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])), 0) {
			n++
		}
	}
	return n
}

// BF16ToFloat32 widens little-endian bfloat16 values: the float32 with the
// same top 16 bits, exactly. len(src) must be 2*len(dst).
func BF16ToFloat32(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	i := 0
	// Four elements per step: one 8-byte load keeps the loop memory-bound.
	for ; i+4 <= len(dst); i += 4 {
		v := binary.LittleEndian.Uint64(src[2*i:])
		d := dst[i : i+4 : i+4]
		d[0] = math.Float32frombits(uint32(v) << 16)
		d[1] = math.Float32frombits(uint32(v>>16) << 16)
		d[2] = math.Float32frombits(uint32(v>>32) << 16)
		d[3] = math.Float32frombits(uint32(v>>48) << 16)
	}
	for ; i < len(dst); i++ {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// F16ToFloat32 widens little-endian IEEE half-precision values exactly
// (subnormals, infinities and NaN payloads included).
func F16ToFloat32(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	t := halfTable()
	for i := range dst {
		dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
	}
}

// F16BitsToFloat32 is F16ToFloat32 for halves already read as bit patterns
// (the forward pass keeps F16 weights as []uint16). len(src) ≥ len(dst).
func F16BitsToFloat32(dst []float32, src []uint16) {
	src = src[:len(dst)]
	t := halfTable()
	for i, h := range src {
		dst[i] = t[h]
	}
}

// halfTable maps every half to its float32 value: a 256 KiB table of all
// 65536 halves beats the branchy bit arithmetic.
func halfTable() *[65536]float32 {
	f16Once.Do(func() {
		f16Table = new([65536]float32)
		for i := range f16Table {
			f16Table[i] = math.Float32frombits(halfToBits(uint16(i)))
		}
	})
	return f16Table
}

var (
	f16Once  sync.Once
	f16Table *[65536]float32
)

func halfToBits(h uint16) uint32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN, payload kept
		return sign | 0x7f800000 | mant<<13
	case exp != 0:
		return sign | (exp+127-15)<<23 | mant<<13
	case mant == 0:
		return sign
	}
	// Subnormal half: normalise into a float32 normal.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return sign | e<<23 | (mant&0x3ff)<<13
}

// f8Tables maps every byte of each 8-bit float format to its float32 value.
var f8Tables = map[string]*[256]float32{}

func init() {
	f8Tables["F8_E4M3"] = f8Table(4, 3, 7, func(b uint8) (float32, bool) {
		if b&0x7f == 0x7f { // E4M3FN: only S.1111.111 is NaN, no infinities
			return float32(math.NaN()), true
		}
		return 0, false
	})
	f8Tables["F8_E5M2"] = f8Table(5, 2, 15, func(b uint8) (float32, bool) {
		if b&0x7c == 0x7c { // IEEE-like: all-ones exponent is inf/NaN
			if b&3 == 0 {
				return float32(math.Inf(1 - 2*int(b>>7))), true
			}
			return float32(math.NaN()), true
		}
		return 0, false
	})
	fnuz := func(b uint8) (float32, bool) {
		if b == 0x80 { // FNUZ: the negative-zero pattern is the only NaN
			return float32(math.NaN()), true
		}
		return 0, false
	}
	f8Tables["F8_E4M3FNUZ"] = f8Table(4, 3, 8, fnuz)
	f8Tables["F8_E5M2FNUZ"] = f8Table(5, 2, 16, fnuz)
	var e8m0 [256]float32
	for i := range e8m0 {
		if i == 255 {
			e8m0[i] = float32(math.NaN())
		} else {
			e8m0[i] = float32(math.Ldexp(1, i-127))
		}
	}
	f8Tables["F8_E8M0"] = &e8m0
}

func f8Table(ebits, mbits uint, bias int, special func(uint8) (float32, bool)) *[256]float32 {
	var t [256]float32
	for i := range t {
		b := uint8(i)
		if v, ok := special(b); ok {
			t[i] = v
			continue
		}
		e := int(b>>mbits) & (1<<ebits - 1)
		m := float64(int(b) & (1<<mbits - 1))
		var v float64
		if e == 0 {
			v = math.Ldexp(m, 1-bias-int(mbits))
		} else {
			v = math.Ldexp(m+float64(int(1)<<mbits), e-bias-int(mbits))
		}
		if b&0x80 != 0 {
			v = -v
		}
		t[i] = float32(v)
	}
	return &t
}
