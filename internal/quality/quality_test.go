package quality

import (
	"math"
	"testing"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/model"
)

func TestRound(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0.27054321, 0.2705}, {0.27055, 0.2706}, {1234.56, 1235}, {1.23456e-7, 1.235e-7},
		{0, 0}, {2.5, 2.5}, {0.99995, 1}, {-0.123456, -0.1235},
	} {
		if got := Round(c.in); got != c.want {
			t.Errorf("Round(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(Round(math.NaN())) || !math.IsInf(Round(math.Inf(1)), 1) {
		t.Error("NaN and Inf must pass through")
	}
	// Idempotent: a rounded figure rounds to itself.
	for x := 1e-9; x < 1e9; x *= 1.37 {
		if r := Round(x); Round(r) != r {
			t.Fatalf("Round(Round(%v)) = %v ≠ %v", x, Round(r), r)
		}
	}
}

func TestWeigh(t *testing.T) {
	ti := checkpoint.TensorInfo{Name: "a", DType: "F32", Shape: []int64{10, 20}}
	s := &Sensitivities{S: map[string]float64{"a": 3, "b": 0.5}}
	s.Floor = s.floor()
	for _, c := range []struct {
		o    Objective
		want float64
	}{
		{Objective{Name: Output, Sens: s}, 3.0 / 4},
		{Objective{Name: Relative}, 200.0 / 4},
		{Objective{Name: Weights}, 1},
	} {
		if got := c.o.Weigh(ti, 4); got != c.want {
			t.Errorf("%s: weight %v, want %v", c.o.Name, got, c.want)
		}
		if got := c.o.Weigh(ti, 0); got != 0 {
			t.Errorf("%s: an all-zero tensor weighs %v", c.o.Name, got)
		}
	}
	// A tensor the model does not use takes the smallest measured S.
	o := Objective{Name: Output, Sens: s}
	if got := o.Weigh(checkpoint.TensorInfo{Name: "extra", Shape: []int64{4, 4}}, 2); got != 0.25 {
		t.Errorf("unused tensor: %v", got)
	}
}

// The cost model matches the measurements it was fitted to within a factor
// of two: stories260K's evaluation costs about half a default compress, a
// 134 M model's about 5 %; per-tensor probes cost more than pooled ones.
func TestCostModel(t *testing.T) {
	stories := &model.Config{Arch: "llama", Hidden: 64, Intermediate: 172, Layers: 5, Heads: 8, KVHeads: 4, HeadDim: 8, Vocab: 512, MaxPos: 512, BOS: 1}
	m := &Model{Config: stories}
	if r := EvalCost(m, EvalText) / 292096; r < 0.25 || r > 1 {
		t.Errorf("stories260K: evaluation / default encode = %.2f, measured ≈ 0.5", r)
	}
	big := &model.Config{Arch: "llama", Hidden: 768, Intermediate: 2048, Layers: 12, Heads: 12, KVHeads: 12, HeadDim: 64, Vocab: 32000, MaxPos: 2048, BOS: 1}
	var n int64 = 134e6
	mb := &Model{Config: big, Used: []checkpoint.TensorInfo{{Name: "w", Shape: []int64{n / 1000, 1000}}}}
	if r := EvalCost(mb, EvalText) / float64(n); r < 0.025 || r > 0.1 {
		t.Errorf("134 M model: evaluation / default encode = %.3f, measured ≈ 0.05", r)
	}
	if _, d := ProbeCount(mb); d != PerTensor {
		t.Errorf("134 M model probed %s", d)
	}
	huge := &Model{Config: big, Used: []checkpoint.TensorInfo{{Name: "w", Shape: []int64{1 << 20, 1 << 9}}}}
	if _, d := ProbeCount(huge); d != Pooled {
		t.Errorf("a model above PooledAbove probed %s", d)
	}
	if ProbeCost(huge) >= ProbeCost(mb) {
		t.Error("pooled probes should cost less than per-tensor ones on the same config")
	}
}
