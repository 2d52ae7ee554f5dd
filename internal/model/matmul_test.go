package model

import (
	"math"
	"math/rand"
	"testing"

	"github.com/seedlm/seedlm/internal/detmath"
)

func randFloats(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// Every output of gemmNT is dotRef of its two rows, bit for bit, for the
// kernel in use (assembly on amd64) and the portable one, at every edge
// shape (tile remainders, tails of fewer than 8 elements, n < 8).
func TestGemmMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	kernels := map[string]func(x0, x1, x2, w []float32, ldw, tiles, n8 int, d0, d1, d2 []float32){
		"inuse": dotRows, "generic": dotRowsGeneric,
	}
	for kname, k := range kernels {
		saved := dotRows
		dotRows = k
		for _, n := range []int{1, 7, 8, 9, 16, 31, 64, 100, 172} {
			for _, m := range []int{1, 2, 3, 4, 7} {
				for _, outs := range []int{1, 2, 3, 5, 9} {
					ldx, ldw, ldd := n+3, n+1, outs+2
					x := randFloats(rng, m*ldx)
					w := randFloats(rng, outs*ldw)
					dst := make([]float32, m*ldd)
					gemmNT(dst, ldd, x, ldx, m, w, ldw, outs, n)
					for r := 0; r < m; r++ {
						for o := 0; o < outs; o++ {
							want := dotRef(x[r*ldx:], w[o*ldw:], n)
							if got := dst[r*ldd+o]; math.Float32bits(got) != math.Float32bits(want) {
								dotRows = saved
								t.Fatalf("%s n=%d m=%d outs=%d: [%d,%d] = %g, definition %g", kname, n, m, outs, r, o, got, want)
							}
						}
					}
				}
			}
		}
		dotRows = saved
	}
}

// The assembly and portable kernels agree bit for bit on hostile values too
// (subnormals, huge magnitudes, overflow, cancellation).
func TestRowKernelsIdentical(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	special := []float32{0, 1e-40, -1e-40, 3e38, -3e38, 1e-20, 65504, float32(math.Copysign(0, -1))}
	for iter := 0; iter < 300; iter++ {
		n8 := 1 + rng.Intn(20)
		tiles := 1 + rng.Intn(4)
		ldw := 8*n8 + rng.Intn(5)
		rows := make([][]float32, 3)
		for i := range rows {
			rows[i] = randFloats(rng, 8*n8)
		}
		w := randFloats(rng, 3*tiles*ldw)
		for _, v := range append(rows, w) {
			for j := range v {
				if rng.Intn(8) == 0 {
					v[j] = special[rng.Intn(len(special))]
				}
			}
		}
		var a, b [3][]float32
		for r := range a {
			a[r], b[r] = make([]float32, 3*tiles), make([]float32, 3*tiles)
		}
		dotRows(rows[0], rows[1], rows[2], w, ldw, tiles, n8, a[0], a[1], a[2])
		dotRowsGeneric(rows[0], rows[1], rows[2], w, ldw, tiles, n8, b[0], b[1], b[2])
		for r := range a {
			for o := range a[r] {
				x, y := a[r][o], b[r][o]
				if math.Float32bits(x) != math.Float32bits(y) && !(x != x && y != y) {
					t.Fatalf("iter %d [%d,%d]: kernel %g, portable %g", iter, r, o, x, y)
				}
			}
		}
	}
}

func TestLinearIndependentOfWorkersAndDType(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	rows, in, outs := 10, 77, 101
	x := randFloats(rng, rows*in)
	wf := randFloats(rng, outs*in)
	bias := randFloats(rng, outs)
	for _, dt := range []string{"F32", "BF16", "F16"} {
		w := NewTensorRounded("w", dt, []int64{int64(outs), int64(in)}, append([]float32(nil), wf...))
		wv := w.Float32()
		var first []float32
		for _, nw := range []int{1, 2, 5, 16} {
			y := make([]float32, rows*outs)
			linear(y, x, rows, w, bias, nw)
			for r := 0; r < rows; r++ {
				for o := 0; o < outs; o++ {
					want := dotRef(x[r*in:], wv[o*in:], in) + bias[o]
					if y[r*outs+o] != want {
						t.Fatalf("%s workers=%d [%d,%d]: %g, want %g", dt, nw, r, o, y[r*outs+o], want)
					}
				}
			}
			if first == nil {
				first = y
			}
		}
	}
}

func TestDeterministicMath(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for i := 0; i < 100000; i++ {
		x := (rng.Float64()*2 - 1) * 700
		if e, w := expDet(x), math.Exp(x); math.Abs(e-w) > 4e-16*w {
			t.Fatalf("exp(%g) = %g, want %g", x, e, w)
		}
		y := math.Ldexp(rng.Float64()+0.5, rng.Intn(200)-100)
		if l, w := detmath.Log(y), math.Log(y); math.Abs(l-w) > 4e-16*math.Max(1, math.Abs(w)) {
			t.Fatalf("log(%g) = %.17g, want %.17g", y, l, w)
		}
		a := rng.Float64() * 1e5
		s, c := sinCosDet(a)
		if math.Abs(s-math.Sin(a)) > 1e-15 || math.Abs(c-math.Cos(a)) > 1e-15 {
			t.Fatalf("sincos(%g) = %g, %g; want %g, %g", a, s, c, math.Sin(a), math.Cos(a))
		}
	}
}
