package model

import "github.com/seedlm/seedlm/internal/detmath"

// LogSoftmax sets dst[i] = logits[i] − log Σ_j e^logits[j], in float64 with
// the package's deterministic exp and detmath.Log (same bits on every
// machine).
func LogSoftmax(dst []float64, logits []float32) {
	mx := maxLogit(logits)
	var s float64
	for _, v := range logits {
		s += expDet(float64(v) - mx)
	}
	ls := mx + detmath.Log(s)
	for i, v := range logits {
		dst[i] = float64(v) - ls
	}
}

// Exp is the package's deterministic e^x (same bits on every machine).
func Exp(x float64) float64 { return expDet(x) }

// SampleToken draws from softmax(logits) (temperature 1) with a uniform
// u ∈ [0, 1): the first index whose cumulative weight exceeds u·total,
// summed in index order in float64, so the draw is reproducible.
func SampleToken(logits []float32, u float64) int {
	mx := maxLogit(logits)
	var total float64
	for _, v := range logits {
		total += expDet(float64(v) - mx)
	}
	target := u * total
	var cum float64
	last := 0
	for i, v := range logits {
		e := expDet(float64(v) - mx)
		if e > 0 {
			last = i
		}
		cum += e
		if cum > target {
			return i
		}
	}
	return last // u·total at the very top (rounding): the last possible token
}

func maxLogit(logits []float32) float64 {
	mx := float64(logits[0])
	for _, v := range logits {
		mx = max(mx, float64(v))
	}
	return mx
}
