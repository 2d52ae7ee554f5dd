// Command kalloc is the feasibility experiment for sensitivity-weighted bit
// allocation (issue 10, docs/QUALITY.md): on a Llama-family model it
//
//  1. samples the evaluation text from the original (16 × 128 tokens, seed
//     -seed) and measures each weight matrix's sensitivity S_t
//     (internal/sensitivity: KL of noise at relative size -rel in that
//     matrix alone, divided by rel²);
//
//  2. measures every candidate codec stack's squared error on every matrix
//     (presets.MeasureTensor: a deterministic sample of each tensor);
//
//  3. at each bits-per-weight budget (payload bits over all matrices,
//     embeddings and lm_head included) allocates with presets.Allocate twice:
//     minimizing Σ squared error (today's objective) and minimizing
//     Σ S_t·SqErr_t/‖w_t‖² (the predicted KL);
//
//  4. encodes every matrix with its chosen stack (internal/encoder), and
//     measures KL(original ‖ decoded) and top-1 agreement with
//     internal/eval on a held-out text (seed -eval-seed), alongside the
//     uniform paper configuration.
//
//     go run ./scripts/kalloc [-bpw 4.0,3.44,2.63,4.5] [-pooled] [-probe-samples 16] [-probe-tokens 128] \
//     ../shared/data/stories260K/stories260K.f32.safetensors
//
// The model's config.json is read from beside it (or -config).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/eval"
	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/sensitivity"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kalloc:", err)
		os.Exit(1)
	}
}

type tensorData struct {
	name  string
	w     []float32
	shape []int64
	norm2 float64
	opts  []presets.Option
}

func run() error {
	bpwList := flag.String("bpw", "4.0,3.44,2.63,4.5", "budgets, bits per weight over the matrices' payload")
	cfgPath := flag.String("config", "", "config.json (default: beside the model)")
	rel := flag.Float64("rel", 0.1, "probe noise, relative to each matrix's norm")
	pooled := flag.Bool("pooled", false, "pooled (layer × class) probes instead of one per matrix")
	probeSamples := flag.Int("probe-samples", 16, "sequences of the probe text")
	probeTokens := flag.Int("probe-tokens", 128, "tokens per probe sequence")
	seed := flag.Uint64("seed", 1, "seed of the probe text")
	evalSeed := flag.Uint64("eval-seed", 2, "seed of the held-out evaluation text (16 × 128)")
	extra := flag.String("extra", "", "extra candidate stacks, comma-separated (e.g. C8P4K16B4E4,C8P3K16B4E4+C8P3K16B4E4)")
	sampleW := flag.Int("sample", 0, "weights sampled per tensor and candidate (0: presets default)")
	cacheFile := flag.String("cache", "", "file to keep the candidates' measured errors in between runs (same model, stacks and -sample)")
	probeKind := flag.String("probe", "gauss", "probe perturbation: gauss (noise at -rel) or codec (the paper 4-bit codec's own error)")
	flag.Parse()
	if flag.NArg() != 1 {
		return fmt.Errorf("usage: kalloc [flags] model.safetensors")
	}
	path := flag.Arg(0)
	ctx := context.Background()
	if *cfgPath == "" {
		p, err := model.FindConfig(path)
		if err != nil {
			return err
		}
		*cfgPath = p
	}
	cfg, err := model.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	src, err := checkpoint.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	m, err := model.Load(ctx, cfg, model.FromSource(src))
	if err != nil {
		return err
	}

	// 1. Sensitivities on the probe text.
	t0 := time.Now()
	ptxt, err := eval.Sample(ctx, m, eval.SampleOptions{Samples: *probeSamples, Tokens: *probeTokens, Seed: *seed})
	if err != nil {
		return err
	}
	pref, err := eval.NewReference(ctx, m, ptxt, nil)
	if err != nil {
		return err
	}
	refSec := time.Since(t0).Seconds()
	sopt := sensitivity.Options{Rel: *rel, Seed: 1, Pooled: *pooled}
	if *probeKind == "codec" {
		sopt.Perturb = func(name string, t *model.Tensor) (*model.Tensor, float64, error) {
			w := t.Float32()
			res, err := encoder.Encode(ctx, name, w, []encoder.Params{encoder.Paper4Bit}, encoder.Options{})
			if err != nil {
				return nil, 0, err
			}
			dec, err := encoder.DecodeLayers(res.Layers, len(w))
			if err != nil {
				return nil, 0, err
			}
			return model.NewTensorF32(name, t.Shape, dec), res.RelErr(0), nil
		}
	}
	sens, err := sensitivity.Measure(ctx, m, pref, sopt)
	if err != nil {
		return err
	}
	fmt.Printf("# kalloc %s\n\n", path)
	fmt.Printf("sensitivities: %d probes (pooled %v, %s probe, relative noise %g) on %d tokens: %.2fs (+ %.2fs probe text and reference)\n\n",
		sens.Probes, sens.Pooled, *probeKind, sens.Rel, sens.Tokens, sens.Seconds, refSec)

	// 2. Candidates and their measured errors.
	var stacks [][]encoder.Params
	for _, p := range presets.Ladder {
		stacks = append(stacks, []encoder.Params{p})
	}
	for _, p := range presets.Ladder {
		stacks = append(stacks, []encoder.Params{encoder.Paper4Bit, p})
	}
	if *extra != "" {
		for _, s := range strings.Split(*extra, ",") {
			st, err := presets.ParseStack(s)
			if err != nil {
				return err
			}
			stacks = append(stacks, st)
		}
	}
	t0 = time.Now()
	var ts []*tensorData
	var coded int64
	cached := map[string][]presets.Option{}
	cacheKey := func(name string) string {
		return fmt.Sprintf("%s|%s|%d|%s", path, name, *sampleW, formatStacks(stacks))
	}
	if *cacheFile != "" {
		if b, err := os.ReadFile(*cacheFile); err == nil {
			if err := json.Unmarshal(b, &cached); err != nil {
				return fmt.Errorf("%s: %w", *cacheFile, err)
			}
		}
	}
	for _, name := range m.MatrixNames() {
		mt, _, _ := m.Matrix(name)
		w := mt.Float32()
		td := &tensorData{name: name, w: w, shape: mt.Shape}
		for _, x := range w {
			td.norm2 += float64(x) * float64(x)
		}
		if o, ok := cached[cacheKey(name)]; ok {
			td.opts = o
		} else {
			ms, err := presets.MeasureTensor(ctx, name, w, stacks, presets.Sampler{Weights: *sampleW}, encoder.Options{})
			if err != nil {
				return err
			}
			for _, x := range ms {
				td.opts = append(td.opts, presets.Option{Bits: float64(x.Bits), SqErr: x.SqErr})
			}
			cached[cacheKey(name)] = td.opts
		}
		ts = append(ts, td)
		coded += int64(len(w))
	}
	if *cacheFile != "" {
		b, _ := json.Marshal(cached)
		if err := os.WriteFile(*cacheFile, b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("candidates: %d stacks measured on %d matrices (%d weights): %.1fs\n\n", len(stacks), len(ts), coded, time.Since(t0).Seconds())

	// The held-out evaluation text.
	etxt, err := eval.Sample(ctx, m, eval.SampleOptions{Seed: *evalSeed})
	if err != nil {
		return err
	}
	eref, err := eval.NewReference(ctx, m, etxt, nil)
	if err != nil {
		return err
	}

	cache := map[string][]float32{}
	encodeAll := func(choice []int) (*model.Model, float64, float64, error) {
		cm := m
		var bits, se, n2 float64
		for i, td := range ts {
			st := stacks[choice[i]]
			key := td.name + "|" + presets.FormatStack(st)
			dec, ok := cache[key]
			if !ok {
				res, err := encoder.Encode(ctx, td.name, td.w, st, encoder.Options{})
				if err != nil {
					return nil, 0, 0, err
				}
				if dec, err = encoder.DecodeLayers(res.Layers, len(td.w)); err != nil {
					return nil, 0, 0, err
				}
				cache[key] = dec
			}
			for j, x := range td.w {
				d := float64(x) - float64(dec[j])
				se += d * d
			}
			n2 += td.norm2
			bits += float64(presets.StackBits(st, int64(len(td.w))))
			if cm, ok = withMatrix(cm, td.name, td.shape, dec); !ok {
				return nil, 0, 0, fmt.Errorf("cannot replace %s", td.name)
			}
		}
		return cm, bits / float64(coded), math.Sqrt(se / n2), nil
	}
	row := func(label string, choice []int, predicted float64) error {
		cm, bpw, relErr, err := encodeAll(choice)
		if err != nil {
			return err
		}
		r, err := eref.Compare(ctx, cm, nil)
		if err != nil {
			return err
		}
		rp, err := pref.Compare(ctx, cm, nil)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %.3f | %.4f | %.4f | %.4f | %.1f %% | %.4f |\n", label, bpw, relErr, predicted, r.KLMean, 100*r.Top1, rp.KLMean)
		return nil
	}
	predict := func(choice []int) float64 {
		var kl float64
		for i, td := range ts {
			kl += sens.Tensors[i].WeightSqErr() * td.opts[choice[i]].SqErr
		}
		return kl
	}
	if sens.Tensors[0].Name != ts[0].name || len(sens.Tensors) != len(ts) {
		return fmt.Errorf("internal: sensitivity order differs from the matrices'")
	}

	fmt.Printf("| allocation | bits/weight | weight rel. error | predicted KL | KL (held-out text) | top-1 | KL (probe text) |\n|---|---:|---:|---:|---:|---:|---:|\n")
	paper := make([]int, len(ts))
	for i := range paper {
		paper[i] = indexOf(stacks, []encoder.Params{encoder.Paper4Bit})
	}
	if err := row("uniform paper 4-bit (C8 P3 K16 B4 E4)", paper, predict(paper)); err != nil {
		return err
	}
	for _, s := range strings.Split(*bpwList, ",") {
		b, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return err
		}
		budget := b * float64(coded)
		wopts := make([][]presets.Option, len(ts))
		kopts := make([][]presets.Option, len(ts))
		for i, td := range ts {
			f := sens.Tensors[i].WeightSqErr()
			wopts[i] = td.opts
			for _, o := range td.opts {
				kopts[i] = append(kopts[i], presets.Option{Bits: o.Bits, SqErr: o.SqErr * f})
			}
		}
		wc, ok1 := presets.Allocate(wopts, budget)
		kc, ok2 := presets.Allocate(kopts, budget)
		if !ok1 || !ok2 {
			fmt.Printf("| %.2f bits/weight: out of reach of the candidates |\n", b)
			continue
		}
		if err := row(fmt.Sprintf("%.2f bpw, weight-error objective", b), wc, predict(wc)); err != nil {
			return err
		}
		if err := row(fmt.Sprintf("%.2f bpw, **output (KL) objective**", b), kc, predict(kc)); err != nil {
			return err
		}
		if os.Getenv("KALLOC_VERBOSE") != "" {
			for i, td := range ts {
				fmt.Printf("    %-40s S=%8.3g  weights: %-28s output: %s\n", td.name, sens.Tensors[i].S, presets.FormatStack(stacks[wc[i]]), presets.FormatStack(stacks[kc[i]]))
			}
		}
	}
	return nil
}

func withMatrix(m *model.Model, name string, shape []int64, w []float32) (*model.Model, bool) {
	cm, err := m.WithMatrix(name, model.NewTensorF32(name, shape, w))
	return cm, err == nil
}

func formatStacks(stacks [][]encoder.Params) string {
	var parts []string
	for _, st := range stacks {
		parts = append(parts, presets.FormatStack(st))
	}
	return strings.Join(parts, ",")
}

func indexOf(stacks [][]encoder.Params, st []encoder.Params) int {
	want := presets.FormatStack(st)
	for i, s := range stacks {
		if presets.FormatStack(s) == want {
			return i
		}
	}
	return -1
}
