package quality

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/sensitivity"
)

// Objective names (presets.Objectives): what a target allocation minimizes.
const (
	Output   = "output"
	Relative = "relative"
	Weights  = "weights"
)

// Objective is a resolved objective: its name and, for Output, the
// measured sensitivities.
type Objective struct {
	Name string
	Sens *Sensitivities
}

// Weigh is the tensor's weight in the allocation's objective Σ weight·‖w −
// ŵ‖² (presets.Options.Weigh):
//
//   - Output: S_t/‖w_t‖², so the objective is the predicted KL
//     Σ S_t·relerr_t²;
//   - Relative: n_t/‖w_t‖², so it is Σ n_t·relerr_t²: every weight's error
//     in units of its own tensor's mean square (no tensor is starved for
//     having small weights, and none is favoured for being small);
//   - Weights: 1, the total squared error.
//
// A tensor with ‖w‖² = 0 codes exactly whatever it gets: weight 0.
func (o *Objective) Weigh(t checkpoint.TensorInfo, norm2 float64) float64 {
	if norm2 == 0 {
		return 0
	}
	switch o.Name {
	case Output:
		return o.Sens.Of(t.Name) / norm2
	case Relative:
		return float64(t.NumElements()) / norm2
	}
	return 1
}

// Probe designs (Sensitivities.Probes).
const (
	PerTensor = "per-tensor"
	Pooled    = "pooled"
)

// PooledAbove is the size rule for the probes: a model with more weights
// in its matrices than this is probed pooled (one probe per decoder layer
// and one per matrix class, L + 9 probes), a smaller one per tensor (one
// probe per matrix, 7L + 2). Per-tensor probes cost about 3.5L
// forward-pass equivalents on the probe text: on a 134 M-parameter model
// (12 layers) about 22 % of its encode time, on a 7 B model (32 layers)
// more than its encode time, where pooled probes cost about 24 %
// (docs/QUALITY.md has the measurements).
const PooledAbove = 256 << 20

// ProbeRel is the probes' noise, relative to each matrix's norm: the size
// of the codec errors an allocation chooses between (0.05–0.3), where the
// KL is still close to quadratic in it.
const ProbeRel = 0.1

// Sensitivities are a model's measured sensitivities: for each matrix, S,
// the KL(original ‖ perturbed) per unit relative squared error
// (sensitivity.Tensor.S), rounded to Digits significant digits.
type Sensitivities struct {
	Probes string  `json:"probes"` // PerTensor or Pooled
	Text   string  `json:"text"`   // the probe text
	Tokens int     `json:"tokens"` // next-token distributions compared per probe
	Rel    float64 `json:"rel"`    // probe noise, relative to each matrix's norm
	// S per matrix, by name.
	S map[string]float64 `json:"-"`
	// Floor is the sensitivity given to a tensor the forward pass does not
	// use (it cannot be measured): the smallest measured one.
	Floor float64 `json:"-"`
}

// Of is a tensor's sensitivity (Floor for one the model does not use).
func (s *Sensitivities) Of(name string) float64 {
	if v, ok := s.S[name]; ok {
		return v
	}
	return s.Floor
}

// ProbeCount is the number of probes the size rule gives m.
func ProbeCount(m *Model) (int, string) {
	L := m.Config.Layers
	if m.MatrixWeights() > PooledAbove {
		return L + 9, Pooled
	}
	return 7*L + 2, PerTensor
}

// Measure runs the sensitivity probes on m, whose weights w holds (all
// of the model in memory, in its stored dtype), with workers goroutines
// (the results do not depend on them).
func Measure(ctx context.Context, m *Model, w model.Weights, workers int, progress func(done, total int)) (*Sensitivities, error) {
	mm, pt, _, ref, err := reference(ctx, m, w, ProbeText, workers, "probe text", "sensitivity probes")
	if err != nil {
		return nil, err
	}
	_, design := ProbeCount(m)
	r, err := sensitivity.Measure(ctx, mm, ref, sensitivity.Options{Rel: ProbeRel, Seed: 1, Pooled: design == Pooled, Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("sensitivity probes: %w", err)
	}
	s := &Sensitivities{Probes: design, Text: pt.Describe(m.Config), Tokens: ref.Tokens(), Rel: ProbeRel, S: map[string]float64{}}
	for _, t := range r.Tensors {
		v := Round(t.S)
		if !(v >= 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("sensitivity of %s is %g", t.Name, v)
		}
		s.S[t.Name] = v
	}
	s.Floor = s.floor()
	return s, nil
}

// floor is the smallest sensitivity measured.
func (s *Sensitivities) floor() float64 {
	vs := make([]float64, 0, len(s.S))
	for _, v := range s.S {
		vs = append(vs, v)
	}
	sort.Float64s(vs)
	if len(vs) == 0 {
		return 0
	}
	return vs[0]
}

// Restore rebuilds the sensitivities a plan recorded (S per tensor name).
func Restore(s *Sensitivities, byName map[string]float64) *Sensitivities {
	c := *s
	c.S = byName
	c.Floor = c.floor()
	return &c
}
