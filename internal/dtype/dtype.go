// Package dtype is the one table of tensor element types seedlm knows (the
// safetensors names; torch checkpoints are mapped onto them): their widths,
// a tensor's byte length, and conversions to float32 (widen.go) and back
// (narrow.go).
package dtype

import (
	"fmt"
	"math"
	"math/bits"
)

// bitsOf is the element width of every dtype name of the current format.
// F4 and F6_* are packed below a byte: like the reference crate, a tensor's
// byte length is numel*bits/8 and a tensor whose bit length is not a whole
// number of bytes is rejected (the reference's MisalignedSlice).
var bitsOf = map[string]int{
	"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
	"U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
	"F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
	"I16": 16, "U16": 16, "F16": 16, "BF16": 16,
	"I32": 32, "U32": 32, "F32": 32,
	"C64": 64, "F64": 64, "I64": 64, "U64": 64,
}

// Bits returns the width in bits of one element of dtype, and false for
// a name the format does not define (names are case-sensitive).
func Bits(dtype string) (int, bool) {
	b, ok := bitsOf[dtype]
	return b, ok
}

// Names lists every dtype name the reader accepts.
func Names() []string {
	return []string{"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
		"F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32",
		"F32", "C64", "F64", "I64", "U64"}
}

// CanFloat32 reports whether ReadFloat32 can convert dtype.
func CanFloat32(dtype string) bool {
	switch dtype {
	case "F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0":
		return true
	}
	return false
}

// NumElements is the product of shape with overflow and sign checks.
func NumElements(shape []int64) (int64, error) {
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %s", d, ShapeString(shape))
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("shape %s overflows 64 bits", ShapeString(shape))
		}
		n = lo
	}
	return int64(n), nil
}

// ByteLen is the exact data length of a tensor: numel*bits/8, with the same
// overflow and sub-byte checks as the reference implementation.
func ByteLen(dtype string, shape []int64) (int64, error) {
	b, ok := bitsOf[dtype]
	if !ok {
		return 0, fmt.Errorf("unknown dtype %q", dtype)
	}
	n, err := NumElements(shape)
	if err != nil {
		return 0, err
	}
	hi, nbits := bits.Mul64(uint64(n), uint64(b))
	if hi != 0 || nbits/8 > math.MaxInt64 {
		return 0, fmt.Errorf("shape %s of %s overflows 64 bits", ShapeString(shape), dtype)
	}
	if nbits%8 != 0 {
		return 0, fmt.Errorf("%d elements of %d-bit %s do not fill whole bytes", n, b, dtype)
	}
	return int64(nbits / 8), nil
}

// Size is the element size in bytes of a dtype whose elements are whole
// bytes; false for unknown names and for the packed sub-byte formats (F4,
// F6_*).
func Size(dtype string) (int, bool) {
	b, ok := bitsOf[dtype]
	if !ok || b%8 != 0 {
		return 0, false
	}
	return b / 8, true
}

// Codable reports whether compress can code a tensor of dtype: the float
// types it reads as float32 and decompress writes back (FromFloat32).
func Codable(dtype string) bool {
	switch dtype {
	case "F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2":
		return true
	}
	return false
}

// ShapeString formats a shape for messages, eliding the middle of a
// (hostile) shape with very many dimensions.
func ShapeString(shape []int64) string {
	if len(shape) > 16 {
		return fmt.Sprintf("%v…(%d dims)…%v", shape[:8], len(shape), shape[len(shape)-4:])
	}
	return fmt.Sprint(shape)
}
