package detmath

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand"
	"testing"
)

// logInputs are the inputs TestLog2Bits hashes: powers of two and their
// neighbours, subnormals, and random values over the float64 range.
func logInputs() []float64 {
	xs := []float64{math.SmallestNonzeroFloat64, 0x1p-1074 * 3, 0x1p-1022, 0.5, 1, 2, 3, 10, 1e-300, 1e300, math.MaxFloat64}
	for e := -60; e <= 60; e++ {
		p := math.Ldexp(1, e)
		xs = append(xs, p, math.Nextafter(p, 0), math.Nextafter(p, math.Inf(1)))
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 100000; i++ {
		xs = append(xs, math.Ldexp(0.5+r.Float64()/2, r.Intn(2100)-1070))
	}
	return xs
}

// TestLog2Accuracy: within 2 ulp of a reference (math.Log2; near 1, where
// math.Log2 loses digits to cancellation, math.Log1p(x−1)/ln 2), exact at
// powers of two, and the special cases.
func TestLog2Accuracy(t *testing.T) {
	for _, x := range logInputs() {
		got, want := Log2(x), math.Log2(x)
		if x > 0.5 && x < 2 {
			want = math.Log1p(x-1) / math.Ln2 // x−1 is exact here
		}
		if m, _ := math.Frexp(x); m == 0.5 && got != want {
			t.Fatalf("Log2(%g) = %v, want exactly %v", x, got, want)
		}
		ulp := math.Nextafter(math.Abs(want), math.Inf(1)) - math.Abs(want)
		if d := math.Abs(got - want); d > 2*ulp {
			t.Fatalf("Log2(%v) = %v, reference %v (%.1f ulp off)", x, got, want, d/ulp)
		}
	}
	for _, c := range []struct{ x, want float64 }{
		{0, math.Inf(-1)}, {math.Inf(1), math.Inf(1)},
	} {
		if got := Log2(c.x); got != c.want {
			t.Errorf("Log2(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	for _, x := range []float64{-1, math.Inf(-1), math.NaN()} {
		if got := Log2(x); !math.IsNaN(got) {
			t.Errorf("Log2(%v) = %v, want NaN", x, got)
		}
	}
}

// TestReproducibleLog2 pins the bits of Log2 on logInputs: the same hash on every
// architecture (the cross-architecture test in cmd/seedlm runs this
// package's tests under qemu-aarch64 and with GOAMD64=v3).
func TestReproducibleLog2(t *testing.T) {
	h := sha256.New()
	var b [8]byte
	for _, x := range logInputs() {
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(Log2(x)))
		h.Write(b[:])
	}
	const want = "6970e3d3d78137c8415d2a57d91878fce2fde8c673ed626a5fef6a7a46735ca9"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("Log2 bits hash %s, want %s", got, want)
	}
}

// TestLogAccuracy: Log within 2 ulp of math.Log (near 1, math.Log1p(x−1)),
// with Log2's special cases. Its bits are pinned where the forward pass
// uses it (internal/model TestReproducibleMath).
func TestLogAccuracy(t *testing.T) {
	for _, x := range logInputs() {
		got, want := Log(x), math.Log(x)
		switch {
		case x > 0.5 && x < 2:
			want = math.Log1p(x - 1)
		case x < 0x1p-1022:
			// amd64's math.Log is off for subnormals (ln 5e-324 gives
			// −709.09): scale into the normal range first.
			want = math.Log(x*0x1p60) - 60*math.Ln2
		}
		ulp := math.Nextafter(math.Abs(want), math.Inf(1)) - math.Abs(want)
		if x == 1 {
			ulp = math.SmallestNonzeroFloat64
		}
		if d := math.Abs(got - want); d > 2*ulp {
			t.Fatalf("Log(%v) = %v, reference %v (%.1f ulp off)", x, got, want, d/ulp)
		}
	}
	if got := Log(0); got != math.Inf(-1) {
		t.Errorf("Log(0) = %v", got)
	}
	if got := Log(math.Inf(1)); got != math.Inf(1) {
		t.Errorf("Log(+Inf) = %v", got)
	}
	for _, x := range []float64{-1, math.Inf(-1), math.NaN()} {
		if got := Log(x); !math.IsNaN(got) {
			t.Errorf("Log(%v) = %v, want NaN", x, got)
		}
	}
}
