package dtype

import (
	"encoding/binary"
	"math"
	"math/rand"
	"testing"
)

// decodeMini is the exact value of a code of f (NaN and inf included).
func decodeMini(code uint16, f miniFloat) float64 {
	sign := 1.0
	if code>>(f.expBits+f.manBits)&1 == 1 {
		sign = -1
	}
	mag := code & (1<<(f.expBits+f.manBits) - 1)
	if f.ieee && mag >= f.inf() {
		if mag == f.inf() {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	if !f.ieee && mag == f.nan() {
		return math.NaN()
	}
	return sign * f.value(mag)
}

// checkNearestEven checks that code is the correctly rounded value of x:
// no representable finite value is nearer, and on a tie the mantissa is
// even.
func checkNearestEven(t *testing.T, x float32, code uint16, f miniFloat, name string) {
	t.Helper()
	got := decodeMini(code, f)
	xv := float64(x)
	maxv := f.value(f.maxFinite())
	if math.IsNaN(xv) {
		if !math.IsNaN(got) {
			t.Fatalf("%s(%v) = %v, want NaN", name, x, got)
		}
		return
	}
	if math.IsInf(got, 0) {
		// Overflow: only when |x| is at least max + half an ulp.
		ulp := maxv - f.value(f.maxFinite()-1)
		if math.Abs(xv) < maxv+ulp/2 {
			t.Fatalf("%s(%v) = %v, want finite", name, x, got)
		}
		return
	}
	if !f.ieee && math.Abs(xv) > maxv {
		if math.Abs(got) != maxv {
			t.Fatalf("%s(%v) = %v, want saturation to ±%v", name, x, got, maxv)
		}
		return
	}
	d := math.Abs(got - xv)
	mag := code & (1<<(f.expBits+f.manBits) - 1)
	for _, nb := range []uint16{mag - 1, mag + 1} {
		if nb > f.maxFinite() || (mag == 0 && nb == 0xffff) {
			continue
		}
		v := math.Copysign(f.value(nb), got)
		if mag == 0 {
			v = math.Copysign(f.value(nb), xv)
		}
		dn := math.Abs(v - xv)
		if dn < d || (dn == d && mag&1 == 1) {
			t.Fatalf("%s(%v) = %v (code %#x), but %v is nearer or the even tie", name, x, got, code, v)
		}
	}
}

func TestRoundMiniNearestEven(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	formats := []struct {
		name string
		f    miniFloat
	}{{"f16", f16}, {"f8e4m3", f8e4m3}, {"f8e5m2", f8e5m2}}
	for _, ff := range formats {
		f := ff.f
		n := uint16(1) << (f.expBits + f.manBits + 1)
		// Every representable value and every midpoint between neighbours.
		for c := uint16(0); c < n/2; c++ {
			if c > f.maxFinite() {
				break
			}
			v := f.value(c)
			if got := roundMini(float32(v), f); decodeMini(got, f) != v {
				t.Fatalf("%s: %v does not round-trip (code %#x → %#x)", ff.name, v, c, got)
			}
			if got := roundMini(float32(-v), f); decodeMini(got, f) != -v || got>>(f.expBits+f.manBits) != 1 {
				t.Fatalf("%s: -%v does not round-trip", ff.name, v)
			}
			if c < f.maxFinite() {
				mid := (v + f.value(c+1)) / 2
				if float64(float32(mid)) == mid {
					checkNearestEven(t, float32(mid), roundMini(float32(mid), f), f, ff.name)
				}
			}
		}
		for i := 0; i < 200000; i++ {
			x := float32(rng.NormFloat64() * math.Ldexp(1, rng.Intn(40)-20))
			checkNearestEven(t, x, roundMini(x, f), f, ff.name)
		}
		for _, x := range []float32{0, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e30, -1e30, 1e-30} {
			checkNearestEven(t, x, roundMini(x, f), f, ff.name)
		}
	}
}

func TestF16AgainstReader(t *testing.T) {
	// Every F16 bit pattern widened by the I/O package and narrowed back
	// must be identical (NaNs stay NaN).
	for c := 0; c < 1<<16; c++ {
		b := []byte{byte(c), byte(c >> 8)}
		dst := make([]float32, 1)
		F16ToFloat32(dst, b)
		got := Float32ToF16(dst[0])
		if math.IsNaN(float64(dst[0])) {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#04x → %#04x", c, got)
			}
			continue
		}
		if got != uint16(c) {
			t.Fatalf("f16 %#04x → %v → %#04x", c, dst[0], got)
		}
	}
}

func TestBF16(t *testing.T) {
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above the tie
		{0x7f7fffff, 0x7f80}, // max float32 rounds to inf
		{0xff800000, 0xff80}, // -inf
		{0x00000001, 0x0000}, // tiny subnormal
		{0x80000000, 0x8000}, // -0
	}
	for _, c := range cases {
		if got := Float32ToBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("bf16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if got := Float32ToBF16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("bf16(NaN) = %#04x, not a NaN", got)
	}
	// Against the generic rounding for random values.
	bf := miniFloat{expBits: 8, manBits: 7, bias: 127, ieee: true}
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 200000; i++ {
		x := math.Float32frombits(rng.Uint32())
		if math.IsNaN(float64(x)) {
			continue
		}
		if a, b := Float32ToBF16(x), roundMini(x, bf); a != b {
			t.Fatalf("bf16(%v): bit trick %#04x, generic %#04x", x, a, b)
		}
	}
}

func TestEncodeFloatsSizes(t *testing.T) {
	w := []float32{1, -2, 0.5}
	for dt, size := range map[string]int{"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1} {
		b, err := FromFloat32(dt, w)
		if err != nil || len(b) != size*len(w) {
			t.Fatalf("%s: %d bytes, %v", dt, len(b), err)
		}
		back := make([]float32, len(w))
		if err := ToFloat32(dt, back, b); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if back[i] != w[i] {
				t.Fatalf("%s: %v → %v", dt, w, back)
			}
		}
	}
	if _, err := FromFloat32("I64", w); err == nil {
		t.Fatal("I64 accepted")
	}
}

// FuzzRoundToNearestEven: every narrowing conversion decompress writes is
// the correctly rounded value.
func FuzzRoundToNearestEven(f *testing.F) {
	for _, x := range []uint32{0, 0x3f808000, 0x7f7fffff, 0x33800000, 0x477fe000, 0x43e00000} {
		f.Add(x)
	}
	bf := miniFloat{expBits: 8, manBits: 7, bias: 127, ieee: true}
	f.Fuzz(func(t *testing.T, bits uint32) {
		x := math.Float32frombits(bits)
		checkNearestEven(t, x, roundMini(x, f16), f16, "f16")
		checkNearestEven(t, x, roundMini(x, f8e4m3), f8e4m3, "f8e4m3")
		checkNearestEven(t, x, roundMini(x, f8e5m2), f8e5m2, "f8e5m2")
		if !math.IsNaN(float64(x)) && Float32ToBF16(x) != roundMini(x, bf) {
			t.Fatalf("bf16(%v): %#04x vs %#04x", x, Float32ToBF16(x), roundMini(x, bf))
		}
	})
}

// TestOverflowed: a finite value beyond the dtype's range is counted once
// FromFloat32 made it ±Inf (or saturated it, F8_E4M3); values in range and
// values that were ±Inf or NaN already are not.
func TestOverflowed(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, c := range []struct {
		dtype string
		w     []float32
		want  int64
	}{
		{"F16", []float32{1, 65504, 65520, -7e4, inf, nan}, 2},
		{"BF16", []float32{1, 3e38, math.MaxFloat32, -inf}, 1},
		{"F8_E5M2", []float32{57344, 61440, -1e5, 0.5}, 2},
		{"F8_E4M3", []float32{448, 449, -500, inf}, 2},
		{"F32", []float32{math.MaxFloat32, inf}, 0},
		{"F64", []float32{math.MaxFloat32}, 0},
	} {
		data, err := FromFloat32(c.dtype, c.w)
		if err != nil {
			t.Fatal(err)
		}
		if got := Overflowed(c.dtype, c.w, data); got != c.want {
			t.Errorf("%s %v: %d overflowed, want %d", c.dtype, c.w, got, c.want)
		}
	}
}

// TestWidenedToInf: F64 values beyond float32's range become ±Inf and are
// counted; F64 infinities and other dtypes are not.
func TestWidenedToInf(t *testing.T) {
	vals := []float64{1, 1e39, -1e300, math.Inf(1), math.MaxFloat32}
	src := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint64(src[8*i:], math.Float64bits(v))
	}
	dst := make([]float32, len(vals))
	if err := ToFloat32("F64", dst, src); err != nil {
		t.Fatal(err)
	}
	if got := WidenedToInf("F64", dst, src); got != 2 {
		t.Errorf("F64: %d widened to ±Inf, want 2", got)
	}
	if got := WidenedToInf("F32", []float32{float32(math.Inf(1))}, make([]byte, 4)); got != 0 {
		t.Errorf("F32: %d, want 0", got)
	}
}

// value is the magnitude of a non-NaN, non-infinite code of f (sign bit
// clear): the tests' own decoder, independent of the widening tables.
func (f miniFloat) value(code uint16) float64 {
	e := int(code>>f.manBits) & (1<<f.expBits - 1)
	m := float64(int(code) & (1<<f.manBits - 1))
	if e == 0 {
		return math.Ldexp(m, 1-f.bias-f.manBits)
	}
	return math.Ldexp(m+float64(int(1)<<f.manBits), e-f.bias-f.manBits)
}
