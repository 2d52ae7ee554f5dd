package quality

import (
	"github.com/seedlm/seedlm/internal/eval"
	"github.com/seedlm/seedlm/internal/model"
)

// The cost model, in weight-equivalents: the work of encoding one weight
// with the paper's setting C8 P3 K16 B4 E4 (presets.LayerCost's unit), so
// forward-pass work compares with encode work. The constants are ratios
// measured on one machine (docs/QUALITY.md, "What compress evaluates"):
// encoding runs at about 124 K weights per CPU-second there, teacher-forced
// scoring at about 16.5 G multiply-adds per CPU-second plus about 50 ns per
// attention exponential, and KV-cached sampling costs about 1.6 times a
// scoring pass. Fixed constants, not timings: the decisions they drive
// (the automatic evaluation) are the same on every machine.
const (
	maPerWeight    = 133e3  // forward multiply-adds per weight-equivalent
	expCost        = 0.0062 // weight-equivalents per attention exponential
	samplingFactor = 1.6    // sampling a token / scoring one
)

// tokenCost is one scored token at sequence length T, in weight-equivalents.
func tokenCost(c *model.Config, T int) float64 {
	mean := float64(T) / 2 // mean context over a sequence
	attn := float64(float64(2*c.Layers*c.QDim()) * mean)
	exps := float64(c.Layers) * float64(c.Heads) * mean
	return (c.MatMulMAs()+attn)/maPerWeight + float64(exps*expCost) // products rounded: no FMA
}

// EvalCost estimates an evaluation on t (sampling the text, scoring the
// original and the candidate) in weight-equivalents.
func EvalCost(m *Model, t Text) float64 {
	t = t.Capped(m.Config)
	return float64(t.Positions()) * tokenCost(m.Config, t.Tokens) * (samplingFactor + 2)
}

// ProbeCost estimates the sensitivity probes (sampling the probe text,
// scoring it, and each probe's rerun from its first layer) in
// weight-equivalents.
func ProbeCost(m *Model) float64 {
	t := ProbeText.Capped(m.Config)
	L := float64(m.Config.Layers)
	n, design := ProbeCount(m)
	// Layers rerun per probe, as a share of a full pass: per tensor, seven
	// matrices per layer l rerun L−l layers; pooled, one probe per layer
	// the same way and one per class (from layer 0), embeddings and
	// lm_head apart.
	passes := float64(7*(L+1)/2) + 2 // rounded: no fused multiply-add
	if design == Pooled {
		passes = float64((L+1)/2) + float64(n) - L
	}
	return float64(t.Positions()) * tokenCost(m.Config, t.Tokens) * (samplingFactor + 1 + passes)
}

// EvalMemory estimates an evaluation's memory beyond the two models'
// weights: the original's log-probabilities, one batch's activations and
// the sampling decoder.
func EvalMemory(m *Model, t Text) int64 {
	t = t.Capped(m.Config)
	c := m.Config
	rows := min(t.Positions(), eval.BatchTokens)
	return eval.ReferenceBytes(t.Positions(), c.Vocab) + c.ActivationBytes(rows, t.Tokens+1, 1) + c.DecoderBytes(t.Samples, t.Tokens+1)
}

// ProbeMemory estimates the probes' memory beyond the model's weights: the
// evaluation's, the hidden states kept entering every layer, and one
// perturbed copy of the largest matrix.
func ProbeMemory(m *Model) int64 {
	t := ProbeText.Capped(m.Config)
	c := m.Config
	var largest int64
	for _, u := range m.Used {
		largest = max(largest, 4*u.NumElements())
	}
	states := int64(c.Layers+1) * int64(t.Positions()) * int64(c.Hidden) * 4
	return EvalMemory(m, t) + states + largest
}
