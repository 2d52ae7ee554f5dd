package encoder

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// The exact quantizer's normal-equation solve (cached Gram inverse) must agree
// with an independent least-squares solver (gonum's QR) on every kind of
// seed, including the badly conditioned ones the conditioning rule keeps.
func TestSolveMatchesGonumLeastSquares(t *testing.T) {
	for _, p := range []Params{Paper4Bit, Paper3Bit, {8, 3, 10, 4, 4}} {
		bs, err := basisFor(p)
		if err != nil {
			t.Fatal(err)
		}
		qz := newQuantizer(p, bs, 0, true)
		C, P := p.BlockSize, p.LatentDim
		ws := gaussBlocks(21, 40, C, 1)
		// A spread of positions: regular ones plus every near-singular one.
		var positions []int
		for i := 0; i < bs.L; i += bs.L / 200 {
			positions = append(positions, i)
		}
		for _, pos := range bs.ill {
			positions = append(positions, int(pos))
		}
		checked := 0
		for k, pos := range positions {
			if bs.isExcluded(pos) {
				continue
			}
			w := ws[k%len(ws)]
			var b, tt [MaxLatentDim]float64
			if _, ok := qz.solve(w, pos, &b, &tt); !ok {
				t.Fatalf("%v: solve refused non-excluded position %d", p, pos)
			}
			v := bs.cyc.State[pos+1 : pos+1+C*P]
			u := mat.NewDense(C, P, nil)
			for c := 0; c < C; c++ {
				for i := 0; i < P; i++ {
					u.Set(c, i, float64(int64(v[c*P+i])-bs.h))
				}
			}
			var qr mat.QR
			qr.Factorize(u)
			var x mat.VecDense
			if err := qr.SolveVecTo(&x, false, mat.NewVecDense(C, append([]float64(nil), w...))); err != nil {
				t.Fatalf("gonum QR: %v", err)
			}
			// Compare the fitted vectors Ût (well defined even when t is
			// sensitive), relative to ‖w‖.
			var diff, wn float64
			for c := 0; c < C; c++ {
				var a, g float64
				for i := 0; i < P; i++ {
					ui := float64(int64(v[c*P+i]) - bs.h)
					a += ui * tt[i]
					g += ui * x.AtVec(i)
				}
				diff += (a - g) * (a - g)
				wn += w[c] * w[c]
			}
			// Normal equations lose accuracy as cond(G) = cond(Û)²: the
			// tolerance follows that (float64: u ≈ 1.1e-16).
			cond := mat.Cond(u, 2)
			if tol := 1e-14*cond*cond + 1e-12; math.Sqrt(diff/wn) > tol {
				t.Errorf("%v position %d (cond %.3g): fitted vectors differ by %.3g relative, tolerance %.3g",
					p, pos, cond, math.Sqrt(diff/wn), tol)
			}
			checked++
		}
		if checked < 150 {
			t.Fatalf("%v: only %d positions checked", p, checked)
		}
	}
}
