package compress

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/quality"
)

// tinyLlama writes a random two-layer Llama (about 78 K weights) with its
// config.json to a temp folder and returns the checkpoint's path.
func tinyLlama(t testing.TB, seed int64) string {
	t.Helper()
	c := &model.Config{Arch: "llama", Hidden: 64, Intermediate: 96, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16,
		Vocab: 128, MaxPos: 32, RMSEps: 1e-5, RopeTheta: 10000, BOS: 1}
	dir := t.TempDir()
	if err := model.WriteCheckpoint(dir, c, model.Random(c, seed, "F32")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "model.safetensors")
}

// tiedWeights stores lm_head with embed_tokens' values, as a checkpoint
// with tied embeddings does.
type tiedWeights struct{ model.Weights }

func (w tiedWeights) Tensor(name string) (*model.Tensor, error) {
	if name == "lm_head.weight" {
		name = "model.embed_tokens.weight"
	}
	return w.Weights.Tensor(name)
}

// tiedLlama is tinyLlama with lm_head repeating embed_tokens byte for byte.
func tiedLlama(t testing.TB, seed int64) string {
	t.Helper()
	c := &model.Config{Arch: "llama", Hidden: 64, Intermediate: 96, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16,
		Vocab: 128, MaxPos: 32, RMSEps: 1e-5, RopeTheta: 10000, BOS: 1}
	dir := t.TempDir()
	if err := model.WriteCheckpoint(dir, c, tiedWeights{model.Random(c, seed, "F32")}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "model.safetensors")
}

// quickCands are quick candidates (K=8 seeds) from 0.5 to 5.75 bits/weight.
func quickCands() *presets.Adaptive {
	return &presets.Adaptive{Candidates: []presets.Codec{
		{BlockSize: 4, LatentDim: 3, SeedBits: 8, CoeffBits: 4, ExpBits: 3},
		{BlockSize: 8, LatentDim: 3, SeedBits: 8, CoeffBits: 4, ExpBits: 3},
		{BlockSize: 12, LatentDim: 3, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
		{BlockSize: 16, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
		{BlockSize: 32, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
	}}
}

func truep() *bool { b := true; return &b }

// The output objective's plan: sensitivities measured and recorded, the
// objective named, the evaluation promised; and the same plan (hash and
// all) for 1 and 3 workers, for the output objective and for max_kl (whose
// decisions come from measured KL).
func TestPlanOutputObjectiveIsReproducible(t *testing.T) {
	path := tinyLlama(t, 1)
	src := open(t, path)
	for _, s := range []Settings{
		{Flags: presets.Config{TargetBPW: 2.5, TargetScope: presets.ScopeCoded}, File: presets.Config{Adaptive: quickCands()}, Eval: truep()},
		{Flags: presets.Config{MaxKL: 0.15}, File: presets.Config{Adaptive: quickCands()}},
	} {
		var hashes []string
		for _, w := range []int{1, 3} {
			p, err := MakePlan(context.Background(), src, s, PlanOptions{Workers: w})
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, p.SHA256)
			if p.Objective != quality.Output || p.Sensitivity == nil || p.Sensitivity.Probes != quality.PerTensor || p.Model == nil || p.Model.Arch != "llama" {
				t.Fatalf("plan: objective %q, sensitivity %+v, model %+v", p.Objective, p.Sensitivity, p.Model)
			}
			if p.Quality == nil || !p.Quality.Pending() || p.Quality.Tokens != 16*31 {
				t.Errorf("evaluation %+v", p.Quality)
			}
			coded := 0
			for _, tp := range p.Tensors {
				if tp.Passthrough {
					if tp.Sensitivity != 0 {
						t.Errorf("%s: passthrough with sensitivity %g", tp.Name, tp.Sensitivity)
					}
					continue
				}
				coded++
				if !(tp.Sensitivity > 0) || quality.Round(tp.Sensitivity) != tp.Sensitivity {
					t.Errorf("%s: sensitivity %g (want > 0, rounded)", tp.Name, tp.Sensitivity)
				}
			}
			if coded != 16 {
				t.Errorf("%d coded tensors", coded)
			}
			if s.Flags.MaxKL > 0 && (p.Search == nil || p.Search.KL > 0.15 || p.Search.Evaluations < 3) {
				t.Errorf("search %+v", p.Search)
			}
			// A plan file keeps all of it.
			f := filepath.Join(t.TempDir(), "p.json")
			if err := p.WriteFile(f, false); err != nil {
				t.Fatal(err)
			}
			if q, err := ReadPlan(f); err != nil || q.SHA256 != p.SHA256 || q.Tensors[2].Sensitivity != p.Tensors[2].Sensitivity {
				t.Errorf("plan file: %v", err)
			}
		}
		if hashes[0] != hashes[1] {
			t.Errorf("plans differ with 1 and 3 workers: %s vs %s", hashes[0], hashes[1])
		}
	}
}

// A run that evaluates records the figures an independent evaluation of
// the written archive measures (model.FromArchive, as seedlm eval reads
// it); max_kl's archive is within the limit and records the search's KL,
// also when lm_head is stored once with embed_tokens (the search decodes the
// copy as the archive does) and when a rule fixes some tensors' codec.
func TestRunEvaluation(t *testing.T) {
	path, tied := tinyLlama(t, 2), tiedLlama(t, 2)
	dir := t.TempDir()
	for _, c := range []struct {
		name, path string
		s          Settings
	}{
		{"target", path, Settings{Flags: presets.Config{TargetBPW: 2.5}, File: presets.Config{Adaptive: quickCands()}, Eval: truep()}},
		{"maxkl", path, Settings{Flags: presets.Config{MaxKL: 0.2}, File: presets.Config{Adaptive: quickCands()}}},
		{"maxkl-tied", tied, Settings{Flags: presets.Config{MaxKL: 0.2}, File: presets.Config{Adaptive: quickCands()}}},
		// A rule fixes the down projections' codec: the search must code
		// them as the run does, or it measures a better model than it writes.
		{"maxkl-rule", path, Settings{Flags: presets.Config{MaxKL: 0.2}, File: presets.Config{Adaptive: quickCands(),
			LayerSpecific: []presets.Rule{{Pattern: "*down_proj*", Codec: presets.Codec{BlockSize: 32, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3}}}}}},
	} {
		path := c.path
		src := open(t, path)
		p, err := MakePlan(context.Background(), src, c.s, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, c.name+".seedlm")
		rep, err := Run(context.Background(), src, p, Part{}, out, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Quality == nil || rep.Quality.Pending() {
			t.Fatalf("%s: no figures: %+v", c.name, rep.Quality)
		}
		a, err := archive.Open(out, archive.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := quality.FindModel(path, "", src.Tensors())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := quality.NewEvaluator(context.Background(), m, model.FromSource(src), quality.EvalText, 1)
		if err != nil {
			t.Fatal(err)
		}
		cand, err := model.Load(context.Background(), m.Config, model.FromArchive(a, 0))
		if err != nil {
			t.Fatal(err)
		}
		r, err := ev.Compare(context.Background(), cand)
		if err != nil {
			t.Fatal(err)
		}
		got := a.Index().Header.Quality
		a.Close()
		want := quality.Figures(r, ev.Description)
		if *got.KLMean != *want.KLMean || *got.Top1 != *want.Top1 || *got.KLP95 != *want.KLP95 || got.Text != want.Text {
			t.Errorf("%s: recorded %+v, an evaluation of the archive measures %+v", c.name, got, want)
		}
		if c.name == "maxkl-tied" && rep.DuplicateTensors != 1 {
			t.Errorf("%s: %d duplicates stored once, want lm_head", c.name, rep.DuplicateTensors)
		}
		if strings.HasPrefix(c.name, "maxkl") && (*got.KLMean > 0.2 || *got.KLMean != p.Search.KL) {
			t.Errorf("max_kl 0.2: archive KL %g, search %g", *got.KLMean, p.Search.KL)
		}
	}
}

// max_kl out of reach: a *QualityError naming the best KL, before any
// file is written; a model the forward pass cannot run is a settings
// error.
func TestMaxKLOutOfReach(t *testing.T) {
	path := tinyLlama(t, 3)
	src := open(t, path)
	_, err := MakePlan(context.Background(), src, Settings{Flags: presets.Config{MaxKL: 1e-6}, File: presets.Config{Adaptive: quickCands()}}, PlanOptions{})
	var qe *QualityError
	if !errors.As(err, &qe) || !(qe.Best > 1e-6) || qe.BitsPerWeight < 5 {
		t.Fatalf("err %v", err)
	}
	os.Remove(filepath.Join(filepath.Dir(path), "config.json"))
	src2 := open(t, path)
	_, err = MakePlan(context.Background(), src2, Settings{Flags: presets.Config{MaxKL: 0.1}}, PlanOptions{})
	var se *SettingsError
	var ue *quality.UnsupportedError
	if !errors.As(err, &se) || !errors.As(err, &ue) {
		t.Errorf("max_kl without a model config: %v", err)
	}
	// Without the config, a target falls back to the relative objective
	// and no evaluation.
	p, err := MakePlan(context.Background(), src2, Settings{Flags: presets.Config{TargetBPW: 3}, File: presets.Config{Adaptive: quickCands()}}, PlanOptions{})
	if err != nil || p.Objective != quality.Relative || p.Quality != nil || p.Sensitivity != nil {
		t.Errorf("fallback: %v, objective %q", err, p.Objective)
	}
}
