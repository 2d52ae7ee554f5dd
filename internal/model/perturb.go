package model

import (
	"math"

	"github.com/seedlm/seedlm/internal/detmath"
)

// Perturb returns t plus Gaussian noise scaled so that ‖noise‖ = rel·‖t‖
// exactly, as an F32 tensor (t is not modified). The noise is a fixed
// function of seed (its own generator and math): the same on every machine.
func Perturb(t *Tensor, rel float64, seed uint64) *Tensor {
	w := t.Float32()
	z := make([]float64, len(w))
	var n2, z2 float64
	s := seed*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	next := func() float64 { // SplitMix64 → (0, 1)
		s += 0x9e3779b97f4a7c15
		x := s
		x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
		x = (x ^ x>>27) * 0x94d049bb133111eb
		x ^= x >> 31
		return (float64(x>>11) + 0.5) / (1 << 53)
	}
	for i := 0; i < len(z); i += 2 {
		// Box–Muller with the package's deterministic log, sin and cos.
		r := math.Sqrt(-2 * detmath.Log(next()))
		sn, cs := sinCosDet(2 * math.Pi * next())
		z[i] = float64(r * cs)
		if i+1 < len(z) {
			z[i+1] = float64(r * sn)
		}
	}
	for i, x := range w {
		n2 += float64(float64(x) * float64(x)) // rounded: no fused multiply-add
		z2 += float64(z[i] * z[i])
	}
	out := make([]float32, len(w))
	k := 0.0
	if z2 > 0 {
		k = rel * math.Sqrt(n2/z2)
	}
	for i, x := range w {
		out[i] = x + float32(float64(k*z[i]))
	}
	return NewTensorF32(t.Name, t.Shape, out)
}
