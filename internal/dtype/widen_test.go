package dtype

import (
	"encoding/binary"
	"math"
	"testing"
)

// TestF16Exhaustive checks every half-precision bit pattern against a
// float64 computation of its value.
func TestF16Exhaustive(t *testing.T) {
	src := make([]byte, 2*65536)
	for i := 0; i < 65536; i++ {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	dst := make([]float32, 65536)
	F16ToFloat32(dst, src)
	for i := 0; i < 65536; i++ {
		sign := 1.0
		if i&0x8000 != 0 {
			sign = -1
		}
		e, m := (i>>10)&0x1f, float64(i&0x3ff)
		var want float64
		switch {
		case e == 0x1f && m == 0:
			want = math.Inf(int(sign))
		case e == 0x1f:
			if !math.IsNaN(float64(dst[i])) {
				t.Fatalf("%#04x: got %v, want NaN", i, dst[i])
			}
			continue
		case e == 0:
			want = sign * m * math.Pow(2, -24)
		default:
			want = sign * (1 + m/1024) * math.Pow(2, float64(e-15))
		}
		if float64(dst[i]) != want || math.Signbit(float64(dst[i])) != (sign < 0) {
			t.Fatalf("%#04x: got %v, want %v", i, dst[i], want)
		}
	}
}

func TestBF16AllLengths(t *testing.T) {
	// Lengths around the 4-wide unrolled loop, each element distinct.
	for n := 0; n < 11; n++ {
		src := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint16(src[2*i:], uint16(0x3f80+i*0x101))
		}
		dst := make([]float32, n)
		BF16ToFloat32(dst, src)
		for i := 0; i < n; i++ {
			want := math.Float32frombits(uint32(0x3f80+i*0x101) << 16)
			if dst[i] != want {
				t.Fatalf("n=%d: dst[%d] = %v, want %v", n, i, dst[i], want)
			}
		}
	}
}

func TestF8Values(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		dtype string
		b     byte
		want  float32
	}{
		{"F8_E4M3", 0x00, 0}, {"F8_E4M3", 0x38, 1}, {"F8_E4M3", 0x7e, 448}, {"F8_E4M3", 0xfe, -448},
		{"F8_E4M3", 0x01, 1.0 / 512}, {"F8_E4M3", 0x7f, nan}, {"F8_E4M3", 0x78, 256},
		{"F8_E5M2", 0x3c, 1}, {"F8_E5M2", 0x7b, 57344}, {"F8_E5M2", 0x7c, float32(math.Inf(1))},
		{"F8_E5M2", 0xfc, float32(math.Inf(-1))}, {"F8_E5M2", 0x7d, nan}, {"F8_E5M2", 0x01, 1.0 / 65536},
		{"F8_E4M3FNUZ", 0x40, 1}, {"F8_E4M3FNUZ", 0x7f, 240}, {"F8_E4M3FNUZ", 0x80, nan}, {"F8_E4M3FNUZ", 0xff, -240},
		{"F8_E5M2FNUZ", 0x40, 1}, {"F8_E5M2FNUZ", 0x7f, 57344}, {"F8_E5M2FNUZ", 0x80, nan},
		{"F8_E8M0", 127, 1}, {"F8_E8M0", 0, float32(math.Ldexp(1, -127))}, {"F8_E8M0", 254, float32(math.Ldexp(1, 127))}, {"F8_E8M0", 255, nan},
	}
	for _, c := range cases {
		dst := make([]float32, 1)
		if err := ToFloat32(c.dtype, dst, []byte{c.b}); err != nil {
			t.Fatal(err)
		}
		if dst[0] != c.want && !(math.IsNaN(float64(c.want)) && math.IsNaN(float64(dst[0]))) {
			t.Errorf("%s %#02x = %v, want %v", c.dtype, c.b, dst[0], c.want)
		}
	}
}

func TestByteLen(t *testing.T) {
	cases := []struct {
		dtype string
		shape []int64
		want  int64
		err   bool
	}{
		{"F32", []int64{}, 4, false},
		{"F32", []int64{0, 5}, 0, false},
		{"BF16", []int64{3, 5}, 30, false},
		{"F4", []int64{3, 2}, 3, false},
		{"F4", []int64{3}, 0, true},
		{"F6_E3M2", []int64{4}, 3, false},
		{"F6_E3M2", []int64{2}, 0, true},
		{"C64", []int64{2}, 16, false},
		{"F64", []int64{1 << 61}, 0, true},
		{"F32", []int64{1 << 40, 1 << 40}, 0, true},
		{"F32", []int64{-2, -2}, 0, true},
		{"X", []int64{1}, 0, true},
	}
	for _, c := range cases {
		got, err := ByteLen(c.dtype, c.shape)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("ByteLen(%s, %v) = %d, %v", c.dtype, c.shape, got, err)
		}
	}
	for _, d := range Names() {
		if _, ok := Bits(d); !ok {
			t.Errorf("DTypes lists %s but DTypeBits does not know it", d)
		}
	}
	if len(Names()) != len(bitsOf) {
		t.Errorf("DTypes has %d names, table %d", len(Names()), len(bitsOf))
	}
}

// BenchmarkBF16ToFloat32 reports input bytes per second (the issue asks for
// at least 1 GB/s).
func BenchmarkBF16ToFloat32(b *testing.B) { benchWiden(b, BF16ToFloat32) }

func BenchmarkF16ToFloat32(b *testing.B) { benchWiden(b, F16ToFloat32) }

func benchWiden(b *testing.B, widen func(dst []float32, src []byte)) {
	const n = 1 << 22 // 8 MiB in, 16 MiB out
	src := make([]byte, 2*n)
	for i := range src {
		src[i] = byte(i * 7)
	}
	dst := make([]float32, n)
	b.SetBytes(2 * n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		widen(dst, src)
	}
}
