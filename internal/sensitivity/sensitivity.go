// Package sensitivity measures how much each weight matrix of a model
// matters to its output: the KL(original ‖ perturbed) that noise of a known
// relative size in that one matrix causes, on the evaluation text.
//
// To first order the output damage of coding errors is additive over
// tensors and quadratic in each tensor's relative error (SEEDLM-NOTES.md,
// "Output quality"):
//
//	KL ≈ Σ_t S_t · relerr_t²,   relerr_t = ‖w_t − ŵ_t‖ / ‖w_t‖,
//
// so S_t = KL_t / ρ² from a probe at relative size ρ is what a bit
// allocation should weigh each tensor's relative squared error by
// (equivalently, its squared error by S_t / ‖w_t‖²).
//
// Two designs:
//   - per tensor (Options.Pooled false): one probe per matrix; each probe
//     reruns only the layers from the perturbed one on (the hidden states
//     entering every layer are kept from one clean pass).
//   - pooled (Options.Pooled true), for big models: one probe per decoder
//     layer (all its matrices perturbed) and one per matrix class (that class
//     in every layer), and S_{layer,class} is their rank-1 combination
//     KL_layer · KL_class / (ρ² · Σ_layer KL_layer): L + 7 probes instead of
//     7L. Embeddings and lm_head are always probed alone.
package sensitivity

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/seedlm/seedlm/internal/eval"
	"github.com/seedlm/seedlm/internal/model"
)

// Options tune Measure.
type Options struct {
	// Rel is the probe noise's relative size ‖δ‖/‖w‖ (default 0.1: the
	// codec errors an allocation chooses between, where KL is still close
	// to quadratic).
	Rel float64
	// Seed makes the noise (each probe's is a fixed function of it).
	Seed uint64
	// Pooled uses layer and class probes (see the package comment).
	Pooled bool
	// Progress, when set, is called after each probe.
	Progress func(done, total int)
	// Perturb, when set, replaces the Gaussian probe: it returns the
	// perturbed matrix and its relative error ‖δ‖/‖w‖ (e.g. the matrix coded
	// with the codec the allocation starts from, so S_t is measured on the
	// codec's own error pattern). Per-tensor probes only.
	Perturb func(name string, w *model.Tensor) (*model.Tensor, float64, error)
}

// Tensor is one matrix's measured sensitivity.
type Tensor struct {
	Name     string  `json:"name"`
	Elements int64   `json:"elements"`
	Norm2    float64 `json:"norm2"` // ‖w‖²
	// KL is the probe's KL(original ‖ perturbed) at relative size Rel
	// (per tensor; for pooled results, the rank-1 estimate of it).
	KL float64 `json:"kl"`
	// S is KL/Rel²: the predicted KL per unit relative squared error.
	S float64 `json:"s"`
}

// WeightSqErr is the factor that turns this tensor's squared error
// ‖w − ŵ‖² into predicted KL: S / ‖w‖².
func (t Tensor) WeightSqErr() float64 {
	if t.Norm2 == 0 {
		return 0
	}
	return t.S / t.Norm2
}

// Result is a model's sensitivities.
type Result struct {
	Tensors []Tensor `json:"tensors"` // in the model's matrix order
	Rel     float64  `json:"rel"`
	Pooled  bool     `json:"pooled"`
	Probes  int      `json:"probes"`
	Tokens  int      `json:"tokens"`
	// Seconds is the wall time of Measure (the reference text excluded).
	Seconds float64 `json:"seconds"`
}

// classOf is a matrix's class within a decoder layer ("q_proj", ...), or ""
// for embeddings and lm_head.
func classOf(name string) string {
	if !strings.HasPrefix(name, "model.layers.") {
		return ""
	}
	i := strings.LastIndex(name, ".")
	j := strings.LastIndex(name[:i], ".")
	return name[j+1 : i]
}

// probe is one measurement: the matrices it perturbs and the first layer
// it affects.
type probe struct {
	names []string
	first int // decoder layer the rerun starts at (0 also for the embeddings)
	embed bool
}

// Measure probes m on ref's text (ref must come from m). The noise of
// matrix t in any probe is Perturb(t, Rel, Seed + its index), so a tensor
// gets the same noise in its per-tensor and pooled probes.
func Measure(ctx context.Context, m *model.Model, ref *eval.Reference, opt Options) (*Result, error) {
	start := time.Now()
	rel := opt.Rel
	if rel <= 0 {
		rel = 0.1
	}
	names := m.MatrixNames()
	index := map[string]int{}
	res := &Result{Rel: rel, Pooled: opt.Pooled, Tokens: ref.Tokens()}
	first := map[string]int{}
	for i, n := range names {
		t, l, _ := m.Matrix(n)
		index[n] = i
		first[n] = l
		w := t.Float32()
		var n2 float64
		for _, x := range w {
			n2 += float64(float64(x) * float64(x)) // rounded: no fused multiply-add
		}
		res.Tensors = append(res.Tensors, Tensor{Name: n, Elements: int64(len(w)), Norm2: n2})
	}
	var probes []probe
	single := func(n string) probe {
		return probe{names: []string{n}, first: first[n], embed: n == model.EmbedName}
	}
	var layerProbes, classProbes []int
	var classes []string
	if !opt.Pooled {
		for _, n := range names {
			probes = append(probes, single(n))
		}
	} else {
		byLayer := map[int][]string{}
		byClass := map[string][]string{}
		for _, n := range names {
			c := classOf(n)
			if c == "" {
				probes = append(probes, single(n))
				continue
			}
			if _, ok := byClass[c]; !ok {
				classes = append(classes, c)
			}
			byLayer[first[n]] = append(byLayer[first[n]], n)
			byClass[c] = append(byClass[c], n)
		}
		for l := 0; l < m.Cfg.Layers; l++ {
			layerProbes = append(layerProbes, len(probes))
			probes = append(probes, probe{names: byLayer[l], first: l})
		}
		for _, c := range classes {
			classProbes = append(classProbes, len(probes))
			probes = append(probes, probe{names: byClass[c], first: first[byClass[c][0]]})
		}
	}
	if opt.Perturb != nil && opt.Pooled {
		return nil, fmt.Errorf("sensitivity: a custom Perturb needs per-tensor probes")
	}
	perturb := func(n string, t *model.Tensor) (*model.Tensor, float64, error) {
		return model.Perturb(t, rel, opt.Seed+uint64(index[n])), rel, nil
	}
	if opt.Perturb != nil {
		perturb = opt.Perturb
	}
	kls, rels, err := runProbes(ctx, m, ref, probes, perturb, opt.Progress)
	if err != nil {
		return nil, err
	}
	res.Probes = len(probes)
	if !opt.Pooled {
		for i := range res.Tensors {
			res.Tensors[i].KL = kls[i]
		}
	} else {
		for i, p := range probes {
			if len(p.names) == 1 && classOf(p.names[0]) == "" {
				res.Tensors[index[p.names[0]]].KL = kls[i]
			}
		}
		var total float64
		for _, pi := range layerProbes {
			total += kls[pi]
		}
		for ci, c := range classes {
			kc := kls[classProbes[ci]]
			for l, pi := range layerProbes {
				for _, n := range probes[pi].names {
					if classOf(n) == c && total > 0 {
						res.Tensors[index[n]].KL = kls[layerProbes[l]] * kc / total
					}
				}
			}
		}
	}
	for i := range res.Tensors {
		r := rel
		if opt.Perturb != nil {
			r = rels[i]
		}
		if r > 0 {
			res.Tensors[i].S = res.Tensors[i].KL / (r * r)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// runProbes returns each probe's mean KL over ref's text, rerunning each
// only from its first layer on (states entering every layer are kept from
// one clean pass per batch of sequences).
func runProbes(ctx context.Context, m *model.Model, ref *eval.Reference, probes []probe,
	perturb func(string, *model.Tensor) (*model.Tensor, float64, error), progress func(done, total int)) (kls, rels []float64, err error) {
	inputs := ref.Inputs()
	accs := make([]*eval.Accumulator, len(probes))
	for i := range accs {
		accs[i] = ref.NewAccumulator()
	}
	// A probe's perturbed model shares everything but its matrices, and is
	// built when the probe runs (one perturbed copy in memory at a time).
	rels = make([]float64, len(probes))
	build := func(i int) (*model.Model, error) {
		pm := m
		for _, n := range probes[i].names {
			t, _, _ := m.Matrix(n)
			pt, r, err := perturb(n, t)
			if err != nil {
				return nil, err
			}
			if pm, err = pm.WithMatrix(n, pt); err != nil {
				return nil, err
			}
			rels[i] = r
		}
		return pm, nil
	}
	L := m.Cfg.Layers
	var batches [][2]int
	for b0 := 0; b0 < len(inputs); {
		b1, rows := b0, 0
		for b1 < len(inputs) && (b1 == b0 || rows+len(inputs[b1]) <= eval.BatchTokens) {
			rows += len(inputs[b1])
			b1++
		}
		batches = append(batches, [2]int{b0, b1})
		b0 = b1
	}
	done := 0
	for _, bt := range batches {
		b0 := bt[0]
		batch := inputs[b0:bt[1]]
		st, err := m.Embed(batch)
		if err != nil {
			return nil, nil, err
		}
		states := make([]*model.State, L)
		for l := 0; l < L; l++ {
			states[l] = st.Clone()
			if err := m.RunLayers(ctx, st, l+1); err != nil {
				return nil, nil, err
			}
		}
		for i, p := range probes {
			pm, err := build(i)
			if err != nil {
				return nil, nil, err
			}
			var ps *model.State
			switch {
			case p.embed:
				if ps, err = pm.Embed(batch); err != nil {
					return nil, nil, err
				}
			case p.first < L:
				ps = states[p.first].Clone()
			default:
				ps = st // lm_head only: Logits reads the final states
			}
			if err := pm.RunLayers(ctx, ps, L); err != nil {
				return nil, nil, fmt.Errorf("probe of %s: %w", p.names[0], err)
			}
			if err := pm.Logits(ctx, ps, func(si, pos int, lg []float32) error {
				accs[i].Add(b0+si, pos, lg)
				return nil
			}); err != nil {
				return nil, nil, err
			}
			done++
			if progress != nil {
				progress(done, len(probes)*len(batches))
			}
		}
	}
	kls = make([]float64, len(probes))
	for i, a := range accs {
		r, err := a.Result()
		if err != nil {
			return nil, nil, err
		}
		kls[i] = r.KLMean
	}
	return kls, rels, nil
}

// ByName returns a tensor's sensitivity.
func (r *Result) ByName(name string) (Tensor, bool) {
	for _, t := range r.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Predict is the additive model's KL for given relative squared errors per
// tensor (by name; absent tensors count as exact).
func (r *Result) Predict(relErr2 map[string]float64) float64 {
	var kl float64
	for _, t := range r.Tensors {
		kl += float64(t.S * relErr2[t.Name])
	}
	return kl
}

// Spearman is the rank correlation of two results' S over the same tensors
// (how well a cheap design orders tensors like the full one).
func Spearman(a, b *Result) float64 {
	n := len(a.Tensors)
	if n != len(b.Tensors) || n < 2 {
		return math.NaN()
	}
	rank := func(r *Result) []float64 {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		for i := 1; i < n; i++ {
			for j := i; j > 0 && r.Tensors[idx[j]].S < r.Tensors[idx[j-1]].S; j-- {
				idx[j], idx[j-1] = idx[j-1], idx[j]
			}
		}
		out := make([]float64, n)
		for pos, i := range idx {
			out[i] = float64(pos)
		}
		return out
	}
	ra, rb := rank(a), rank(b)
	var d2 float64
	for i := range ra {
		d := ra[i] - rb[i]
		d2 += float64(d * d)
	}
	fn := float64(n)
	return 1 - 6*d2/(fn*(fn*fn-1))
}
