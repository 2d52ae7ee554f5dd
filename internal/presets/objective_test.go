package presets

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/checkpoint"
)

// objectiveSource has two tensors of equal size, one with weights 100×
// smaller: the squared-error objective gives it the fewest bits.
func objectiveSource() *memSource {
	rng := rand.New(rand.NewSource(11))
	src := &memSource{}
	src.add("big.weight", "F32", []int64{64, 64}, 1, rng)
	src.add("small.weight", "F32", []int64{64, 64}, 0.01, rng)
	src.add("other.weight", "F32", []int64{64, 64}, 0.3, rng)
	return src
}

// fastCands are K=8 candidates (quick to measure) spanning 1.1–3.9 bits/weight.
var fastCands = []Codec{
	{BlockSize: 4, LatentDim: 3, SeedBits: 8, CoeffBits: 4, ExpBits: 3},
	{BlockSize: 8, LatentDim: 3, SeedBits: 8, CoeffBits: 4, ExpBits: 3},
	{BlockSize: 12, LatentDim: 3, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
	{BlockSize: 16, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
	{BlockSize: 32, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
}

func relErrs(plans []TensorPlan) map[string]float64 {
	out := map[string]float64{}
	for _, p := range plans {
		if p.Measured && p.Norm2 > 0 {
			out[p.Name] = math.Sqrt(p.EstSqErr / p.Norm2)
		}
	}
	return out
}

func relativeWeigh(t checkpoint.TensorInfo, norm2 float64) float64 {
	return float64(t.NumElements()) / norm2
}

// TestPlanObjectives: the same target allocated under the weights
// objective starves the small-norm tensor; under the relative objective no
// tensor's relative error is far from the others', and the worst is lower;
// an output-style objective (a per-tensor sensitivity) moves bits to the
// sensitive tensor. Every plan meets the target.
func TestPlanObjectives(t *testing.T) {
	src := objectiveSource()
	cfg := Config{TargetBPW: 2.2, TargetScope: ScopeCoded, Adaptive: &Adaptive{Candidates: fastCands}}
	plan := func(weigh func(checkpoint.TensorInfo, float64) float64) []TensorPlan {
		t.Helper()
		plans, _, err := Plan(context.Background(), cfg, src, Options{Weigh: weigh})
		if err != nil {
			t.Fatal(err)
		}
		var bits, n int64
		for _, p := range plans {
			bits += p.Bits
			n += p.Elements
		}
		if bpw := float64(bits) / float64(n); bpw > cfg.TargetBPW || bpw < cfg.TargetBPW-0.5 {
			t.Errorf("%.3f coded bits/weight for a %g target", bpw, cfg.TargetBPW)
		}
		return plans
	}
	worst := func(m map[string]float64) float64 {
		w := 0.0
		for _, v := range m {
			w = max(w, v)
		}
		return w
	}
	wp := plan(nil)
	w := relErrs(wp)
	if !(w["small.weight"] > 1.3*w["big.weight"]) {
		t.Errorf("weights objective: small.weight rel. error %.3f, big %.3f: expected the small-norm tensor starved", w["small.weight"], w["big.weight"])
	}
	rp := plan(relativeWeigh)
	r := relErrs(rp)
	if !(worst(r) < worst(w)) {
		t.Errorf("relative objective: worst rel. error %.3f, not below the weights objective's %.3f", worst(r), worst(w))
	}
	if r["small.weight"] > 1.3*r["big.weight"] || r["big.weight"] > 1.3*r["small.weight"] {
		t.Errorf("relative objective: rel. errors %v far apart", r)
	}
	if !strings.Contains(rp[0].Rule, "objective") {
		t.Errorf("rule %q does not name the objective", rp[0].Rule)
	}
	// A sensitivity 1000× higher on other.weight (output objective's form:
	// S_t/‖w_t‖²) gives it at least as many bits as under relative.
	sens := func(ti checkpoint.TensorInfo, norm2 float64) float64 {
		s := 1.0
		if ti.Name == "other.weight" {
			s = 1000
		}
		return s / norm2
	}
	cfg.TargetBPW = 3
	rp, op := plan(relativeWeigh), plan(sens)
	if !(op[2].Bits > rp[2].Bits) || op[2].Weight != 1000/op[2].Norm2 {
		t.Errorf("sensitive tensor got %d bits (relative: %d), weight %g", op[2].Bits, rp[2].Bits, op[2].Weight)
	}
}

// TestPlanDuplicateGroupIsOneUnit: a tensor marked as a duplicate of an earlier one
// takes its plan in every mode, costs no bits, and in a target allocation
// adds its objective weight to the kept tensor's, so the group is one unit.
func TestPlanDuplicateGroupIsOneUnit(t *testing.T) {
	src := objectiveSource()
	rng := rand.New(rand.NewSource(12))
	src.add("norm", "F32", []int64{64}, 1, rng)
	src.infos = append(src.infos, checkpoint.TensorInfo{Name: "tied.weight", DType: "F32", Shape: []int64{64, 64}})
	src.data["tied.weight"] = src.data["small.weight"]
	src.infos = append(src.infos, checkpoint.TensorInfo{Name: "norm2", DType: "F32", Shape: []int64{64}})
	src.data["norm2"] = src.data["norm"]
	// Tensors: big, small, other, norm, tied (= small), norm2 (= norm).
	dup := []string{"", "", "", "", "small.weight", "norm"}
	byName := func(plans []TensorPlan) map[string]TensorPlan {
		m := map[string]TensorPlan{}
		for _, p := range plans {
			m[p.Name] = p
		}
		return m
	}
	check := func(what string, m map[string]TensorPlan) {
		t.Helper()
		d, k := m["tied.weight"], m["small.weight"]
		if d.DuplicateOf != "small.weight" || d.Bits != 0 || d.Passthrough || FormatStack(d.Layers) != FormatStack(k.Layers) || !strings.Contains(d.Rule, "duplicate of") {
			t.Errorf("%s: duplicate plan %+v, kept %+v", what, d, k)
		}
		if n := m["norm2"]; !n.Passthrough || n.Bits != 0 || n.DuplicateOf != "norm" {
			t.Errorf("%s: duplicate of a passthrough tensor: %+v", what, n)
		}
	}
	// Fixed mode.
	plans, _, err := Plan(context.Background(), Config{}, src, Options{DuplicateOf: dup})
	if err != nil {
		t.Fatal(err)
	}
	check("default", byName(plans))
	// Target mode: the sensitivity of the duplicate is huge, so the kept
	// tensor (whose error the duplicate shares) must get the most bits the
	// candidates allow; without the group it would not.
	cfg := Config{TargetBPW: 3, TargetScope: ScopeCoded, Adaptive: &Adaptive{Candidates: fastCands}}
	sens := func(ti checkpoint.TensorInfo, norm2 float64) float64 {
		if ti.Name == "tied.weight" {
			return 1e6 / norm2
		}
		return 1 / norm2
	}
	grouped, _, err := Plan(context.Background(), cfg, src, Options{DuplicateOf: dup, Weigh: sens})
	if err != nil {
		t.Fatal(err)
	}
	g := byName(grouped)
	check("target", g)
	k := g["small.weight"]
	if want := 1e6/k.Norm2 + 1/k.Norm2; math.Abs(k.Weight-want) > 1e-9*want {
		t.Errorf("kept tensor's weight %g, want the group's sum %g", k.Weight, want)
	}
	if k.Layers[0].BlockSize != 4 {
		t.Errorf("kept tensor of a highly sensitive group got %s, want the largest candidate", FormatStack(k.Layers))
	}
	// Bits are counted once: the coded payload over the coded tensors that
	// hold a payload stays within the target.
	var bits, n int64
	for _, p := range grouped {
		if !p.Passthrough && p.DuplicateOf == "" {
			bits += p.Bits
			n += p.Elements
		}
	}
	if bpw := float64(bits) / float64(n); bpw > 3 {
		t.Errorf("%.3f bits per coded weight with the duplicate counted once, target 3", bpw)
	}
	// Without the group, the duplicate is coded on its own and the kept
	// tensor's weight is its own.
	alone, _, err := Plan(context.Background(), cfg, src, Options{Weigh: sens})
	if err != nil {
		t.Fatal(err)
	}
	if a := byName(alone)["small.weight"]; a.Weight != 1/a.Norm2 || a.Layers[0].BlockSize == 4 {
		t.Errorf("without the group: small.weight weight %g, %s", a.Weight, FormatStack(a.Layers))
	}
	// A duplicate of a later or unknown tensor, or of another shape, is an
	// error.
	for _, bad := range [][]string{{"", "tied.weight", "", "", "", ""}, {"", "", "", "", "nope", ""}, {"", "", "", "", "norm", ""}, {"", ""}} {
		if _, _, err := Plan(context.Background(), Config{}, src, Options{DuplicateOf: bad}); err == nil {
			t.Errorf("duplicates %q accepted", bad)
		}
	}
}

// TestPlanTargetScope: a coded-scope target counts only the coded tensors'
// payload; a file-scope target the whole file, so it leaves the coded
// tensors fewer bits.
func TestPlanTargetScope(t *testing.T) {
	src := objectiveSource()
	rng := rand.New(rand.NewSource(13))
	src.add("norm", "F32", []int64{512}, 1, rng) // 16 Kib stored exactly
	overhead := func([]checkpoint.TensorInfo, []TensorPlan) int64 { return 1000 }
	coded := func(scope string) float64 {
		cfg := Config{TargetBPW: 2.5, TargetScope: scope, Adaptive: &Adaptive{Candidates: fastCands}}
		plans, _, err := Plan(context.Background(), cfg, src, Options{OverheadBytes: overhead})
		if err != nil {
			t.Fatal(err)
		}
		var bits, n int64
		for _, p := range plans {
			if !p.Passthrough {
				bits += p.Bits
				n += p.Elements
			}
		}
		return float64(bits) / float64(n)
	}
	c, f := coded(ScopeCoded), coded(ScopeFile)
	if c > 2.5 || c < 2.2 || !(f < c-0.5) {
		t.Errorf("coded bits/weight: scope coded %.3f (target 2.5), scope file %.3f", c, f)
	}
	if _, _, err := Plan(context.Background(), Config{TargetBPW: 0.5, TargetScope: ScopeCoded, Adaptive: &Adaptive{Candidates: fastCands}}, src, Options{}); err == nil ||
		!strings.Contains(err.Error(), "per coded weight") {
		t.Errorf("unreachable coded target: %v", err)
	}
}

// TestPlanSearch: with max_kl, Plan hands the measured allocation to
// Options.Search and plans with the budget it returns.
func TestPlanSearch(t *testing.T) {
	src := objectiveSource()
	cfg := Config{MaxKL: 0.1, Adaptive: &Adaptive{Candidates: fastCands}}
	if _, _, err := Plan(context.Background(), cfg, src, Options{}); err == nil {
		t.Error("max_kl without a search accepted")
	}
	for _, pick := range []string{"min", "max"} {
		var seen *Allocation
		plans, _, err := Plan(context.Background(), cfg, src, Options{Weigh: relativeWeigh, Search: func(_ context.Context, a *Allocation) (float64, error) {
			seen = a
			if pick == "min" {
				return a.MinBits(), nil
			}
			return a.MaxBits(), nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if seen == nil || len(seen.Tensors) != 3 || len(seen.Stacks) != len(fastCands) || seen.Objective != "auto" {
			t.Fatalf("search saw %+v", seen)
		}
		for _, p := range plans {
			bs := p.Layers[0].BlockSize
			if (pick == "min" && bs != 32) || (pick == "max" && bs != 4) {
				t.Errorf("%s budget: %s got %s", pick, p.Name, FormatStack(p.Layers))
			}
			if !strings.Contains(p.Rule, "max KL 0.1") {
				t.Errorf("rule %q", p.Rule)
			}
		}
	}
	// Settings that conflict: max_kl with a size target, or out of range.
	for _, c := range []Config{{MaxKL: 0.1, TargetBPW: 3}, {MaxKL: -1}, {MaxKL: 1000}, {Objective: "kl"}, {TargetScope: "tensors"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := Check(Config{MaxKL: 0.1}, Config{CompressionLevel: 0.3}); err != nil {
		t.Errorf("a level in flags over max_kl in the file: %v", err)
	}
	if err := Check(Config{}, Config{MaxKL: 0.1, CompressionLevel: 0.3}); err == nil {
		t.Error("max_kl and a level in one source accepted")
	}
}
