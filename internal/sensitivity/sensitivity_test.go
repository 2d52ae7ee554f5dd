package sensitivity

import (
	"context"
	"math"
	"testing"

	"github.com/seedlm/seedlm/internal/eval"
	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/model/modeltest"
)

var tiny = &model.Config{Arch: "qwen2", Hidden: 32, Intermediate: 48, Layers: 3, Heads: 4, KVHeads: 2, HeadDim: 8,
	Vocab: 64, MaxPos: 64, RMSEps: 1e-5, RopeTheta: 10000, BOS: 1}

func setup(t testing.TB, c *model.Config, w model.Weights, n, T int) (*model.Model, *eval.Reference) {
	t.Helper()
	ctx := context.Background()
	m, err := model.Load(ctx, c, w)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := eval.Sample(ctx, m, eval.SampleOptions{Samples: n, Tokens: T, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := eval.NewReference(ctx, m, txt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, ref
}

// A probe that reruns only the layers after the perturbed matrix gives
// exactly the KL of evaluating the perturbed model from scratch.
func TestProbeEqualsFullEvaluation(t *testing.T) {
	m, ref := setup(t, tiny, model.Random(tiny, 1, "BF16"), 3, 20)
	rel := 0.05
	res, err := Measure(context.Background(), m, ref, Options{Rel: rel, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tensors) != 2+7*tiny.Layers || res.Probes != len(res.Tensors) {
		t.Fatalf("%d tensors, %d probes", len(res.Tensors), res.Probes)
	}
	for i, tn := range res.Tensors {
		mt, _, _ := m.Matrix(tn.Name)
		pm, err := m.WithMatrix(tn.Name, model.Perturb(mt, 0.05, 7+uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		full, err := ref.Compare(context.Background(), pm, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tn.KL != full.KLMean || !(tn.KL > 0) || tn.S != tn.KL/(rel*rel) {
			t.Fatalf("%s: probe KL %g, full evaluation %g, S %g", tn.Name, tn.KL, full.KLMean, tn.S)
		}
	}
}

// The additive model: perturbing every matrix at once costs about the sum
// of the single-matrix probes (within 30 % at small noise).
func TestAdditive(t *testing.T) {
	m, ref := setup(t, tiny, model.Random(tiny, 2, "F32"), 4, 24)
	const rho = 0.03
	res, err := Measure(context.Background(), m, ref, Options{Rel: rho, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	all := m
	rel2 := map[string]float64{}
	for i, tn := range res.Tensors {
		mt, _, _ := m.Matrix(tn.Name)
		if all, err = all.WithMatrix(tn.Name, model.Perturb(mt, rho, 1+uint64(i))); err != nil {
			t.Fatal(err)
		}
		rel2[tn.Name] = rho * rho
	}
	got, err := ref.Compare(context.Background(), all, nil)
	if err != nil {
		t.Fatal(err)
	}
	pred := res.Predict(rel2)
	t.Logf("all matrices at ρ=%g: KL %.4g, additive prediction %.4g", rho, got.KLMean, pred)
	if r := got.KLMean / pred; r < 0.7 || r > 1.3 {
		t.Fatalf("measured %.4g vs predicted %.4g", got.KLMean, pred)
	}
}

// Pooled probes: L + 7 + 2 of them; embeddings and lm_head exact; each
// layer's estimates sum to its layer probe; order close to the full design.
func TestPooled(t *testing.T) {
	c := *tiny
	c.Arch = "llama"
	m, ref := setup(t, &c, model.Random(&c, 3, "F32"), 3, 20)
	full, err := Measure(context.Background(), m, ref, Options{Rel: 0.05, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	pooled, err := Measure(context.Background(), m, ref, Options{Rel: 0.05, Seed: 3, Pooled: true})
	if err != nil {
		t.Fatal(err)
	}
	if pooled.Probes != c.Layers+7+2 {
		t.Fatalf("%d pooled probes", pooled.Probes)
	}
	var sumFull, sumPooled float64
	for i := range full.Tensors {
		f, p := full.Tensors[i], pooled.Tensors[i]
		if classOf(f.Name) == "" && f.KL != p.KL {
			t.Fatalf("%s: pooled %g, single %g", f.Name, p.KL, f.KL)
		}
		sumFull += f.KL
		sumPooled += p.KL
	}
	rho := Spearman(full, pooled)
	t.Logf("Σ KL single %.4g, pooled %.4g; rank correlation %.3f", sumFull, sumPooled, rho)
	if math.Abs(sumPooled/sumFull-1) > 0.3 || rho < 0.5 {
		t.Fatalf("pooled estimates far from single probes: Σ %.4g vs %.4g, rank correlation %.3f", sumPooled, sumFull, rho)
	}
}

// On stories260K: seconds, and the per-weight ordering the notes measured
// (k_proj and v_proj far above the embeddings).
func TestStories(t *testing.T) {
	c, src := modeltest.Stories(t)
	// 512 tokens (a quarter of the protocol's text): the ordering is clear.
	m, ref := setup(t, c, model.FromSource(src), 4, 128)
	res, err := Measure(context.Background(), m, ref, Options{Rel: 0.1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	perWeight := map[string]float64{}
	count := map[string]float64{}
	for _, tn := range res.Tensors {
		cl := classOf(tn.Name)
		if cl == "" {
			cl = tn.Name
		}
		perWeight[cl] += tn.S / float64(tn.Elements) * 1e6
		count[cl]++
	}
	for cl := range perWeight {
		perWeight[cl] /= count[cl]
		t.Logf("%-28s S per million weights %.3g", cl, perWeight[cl])
	}
	t.Logf("%d probes on %d tokens: %.2fs", res.Probes, res.Tokens, res.Seconds)
	if perWeight["k_proj"] < 3*perWeight[model.EmbedName] || perWeight["v_proj"] < 3*perWeight[model.EmbedName] {
		t.Errorf("k_proj/v_proj per weight not above the embeddings: %v", perWeight)
	}
}
