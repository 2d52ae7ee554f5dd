// Command alloccmp produces the measured numbers behind internal/presets
// (docs/PRESETS.md):
//
//	alloccmp grid    [-k 16] [-sample 2048] [-list STACKS] model...
//	    sampled relative error of a grid of single-layer settings (the
//	    data the level ladder was picked from)
//	alloccmp compare [-full] [-bpw C8P3K16B4E4,...] model...
//	    error at equal size: fixed settings vs the variance heuristic vs
//	    the measured target allocation
//	alloccmp plan    [-config F] [-preset P] [-level L] [-target-bpw X] [-v] model
//	    what compress --dry-run will show: per-tensor rule and settings,
//	    planned size, estimated error and encode time
//	alloccmp bench   [-presets default,fast,...] model...
//	    per preset: archive bits/weight, ratio vs fp32, SNR and encode
//	    speed, as a Markdown table (the README's preset table; make bench)
//
// Errors are measured on the float32 reconstruction: relative error =
// sqrt(Σ‖w−ŵ‖² / Σ‖w‖²) over the coded tensors, SNR = −20·log10 of it.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/compress"
	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/presets"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: alloccmp grid|compare|bench [flags] model.safetensors...")
		os.Exit(2)
	}
	var err error
	ctx := context.Background()
	switch os.Args[1] {
	case "grid":
		err = grid(ctx, os.Args[2:])
	case "compare":
		err = compare(ctx, os.Args[2:])
	case "bench":
		err = bench(ctx, os.Args[2:])
	case "plan":
		err = plan(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want grid, compare or bench)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alloccmp:", err)
		os.Exit(1)
	}
}

func parseStacks(list string) ([][]encoder.Params, error) {
	var out [][]encoder.Params
	for _, s := range strings.Split(list, ",") {
		st, err := presets.ParseStack(s)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// grid measures, on sampled blocks of every codable tensor, the aggregate
// relative error of a grid of single-layer settings.
func grid(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("grid", flag.ExitOnError)
	k := fs.Int("k", 16, "seed bits")
	sw := fs.Int("sample", 2048, "sample weights per tensor")
	list := fs.String("list", "", "comma-separated stacks (e.g. C8P3K16B4E4+C12P3K16B3E3) instead of the built-in grid")
	fs.Parse(args)
	var cands [][]encoder.Params
	if *list != "" {
		var err error
		if cands, err = parseStacks(*list); err != nil {
			return err
		}
	} else {
		for _, c := range []int{8, 12, 16, 24, 32} {
			for p := 1; p <= 6; p++ {
				for _, b := range []int{3, 4, 5} {
					for _, e := range []int{3, 4} {
						q := encoder.Params{BlockSize: c, LatentDim: p, SeedBits: *k, CoeffBits: b, ExpBits: e}
						if q.Validate() != nil || q.BitsPerWeight() > 4.6 || q.BitsPerWeight() < 0.8 || (p >= 6 && c < 24) {
							continue
						}
						cands = append(cands, []encoder.Params{q})
					}
				}
			}
		}
	}
	for _, path := range fs.Args() {
		src, err := checkpoint.Open(path)
		if err != nil {
			return err
		}
		se := make([]float64, len(cands))
		dur := make([]time.Duration, len(cands))
		var n2 float64
		for _, t := range src.Tensors() {
			if presets.PassthroughReason(t, presets.MinElements) != "" {
				continue
			}
			w, err := src.ReadFloat32(t.Name)
			if err != nil {
				return err
			}
			for _, x := range w {
				n2 += float64(x) * float64(x)
			}
			for i, c := range cands {
				t0 := time.Now()
				ms, err := presets.MeasureTensor(ctx, t.Name, w, [][]encoder.Params{c}, presets.Sampler{Weights: *sw}, encoder.Options{})
				if err != nil {
					return err
				}
				dur[i] += time.Since(t0)
				se[i] += ms[0].SqErr
			}
		}
		src.Close()
		idx := make([]int, len(cands))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return presets.StackBPW(cands[idx[a]]) < presets.StackBPW(cands[idx[b]]) })
		fmt.Printf("# %s (sampled, %d weights per tensor)\n", path, *sw)
		for _, i := range idx {
			fmt.Printf("%-40s bpw %.3f rel %.4f  %6.2fs\n", presets.FormatStack(cands[i]), presets.StackBPW(cands[i]), math.Sqrt(se[i]/n2), dur[i].Seconds())
		}
	}
	return nil
}

// eval measures a plan's error and encode time. full=true runs the
// compress pipeline itself (compress.Run, into a scratch archive) and
// returns its measured relative error and encode time; full=false codes a
// sample at phase ½ instead: a sample disjoint from the one target
// allocation chose on, so its selection does not grade itself.
func eval(ctx context.Context, src checkpoint.Source, plan *compress.Plan, full bool) (rel, secs float64, err error) {
	if full {
		dir, err := os.MkdirTemp("", "alloccmp-")
		if err != nil {
			return 0, 0, err
		}
		defer os.RemoveAll(dir)
		rep, err := compress.Run(ctx, src, plan, compress.Part{}, filepath.Join(dir, "a.seedlm"), compress.RunOptions{})
		if err != nil {
			return 0, 0, err
		}
		return rep.RelErr, rep.EncodeSeconds, nil
	}
	var se, n2 float64
	t0 := time.Now()
	for _, p := range plan.Tensors {
		if p.Passthrough {
			continue
		}
		w, err := src.ReadFloat32(p.Name)
		if err != nil {
			return 0, 0, err
		}
		ms, err := presets.MeasureTensor(ctx, p.Name, w, [][]encoder.Params{p.Layers}, presets.Sampler{Phase: 0.5}, encoder.Options{})
		if err != nil {
			return 0, 0, err
		}
		se += ms[0].SqErr
		for _, x := range w {
			n2 += float64(x) * float64(x)
		}
	}
	return math.Sqrt(se / n2), time.Since(t0).Seconds(), nil
}

// makePlan is compress's plan for cfg (as a config file) on src.
func makePlan(ctx context.Context, src checkpoint.Source, cfg presets.Config) (*compress.Plan, error) {
	return compress.MakePlan(ctx, src, compress.Settings{File: cfg}, compress.PlanOptions{})
}

// tensorPlans is the plan in presets' terms, for presets.Summarize.
func tensorPlans(p *compress.Plan) []presets.TensorPlan {
	out := make([]presets.TensorPlan, len(p.Tensors))
	for i, t := range p.Tensors {
		n, _ := dtype.NumElements(t.Shape) // a plan's shapes are valid
		out[i] = presets.TensorPlan{Name: t.Name, Rule: t.Rule, Passthrough: t.Passthrough, Layers: t.Layers,
			Elements: n, Bits: t.PlannedBits, Norm2: t.Norm2, EstSqErr: t.EstSqErr, Measured: t.Measured}
	}
	return out
}

func db(rel float64) float64 { return -20 * math.Log10(rel) }

// compare: for each fixed stack, the archive size it gives is the budget;
// the variance heuristic and the measured allocation (same default
// candidates) get that budget as target_bpw.
func compare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	full := fs.Bool("full", false, "evaluate with full encodes (default: a second, disjoint sample)")
	list := fs.String("fixed", "C8P3K16B4E4,C12P2K16B3E3,C24P4K16B3E3", "fixed stacks whose sizes set the budgets")
	fs.Parse(args)
	fixed, err := parseStacks(*list)
	if err != nil {
		return err
	}
	how := "disjoint sample (phase ½, 4096 weights/tensor)"
	if *full {
		how = "full encode"
	}
	fmt.Printf("| model | budget (bits/weight, whole archive) | method | bits/weight | rel. error | SNR dB | coded tensors' settings |\n|---|---|---|---|---|---|---|\n")
	for _, path := range fs.Args() {
		src, err := checkpoint.Open(path)
		if err != nil {
			return err
		}
		name := path[strings.LastIndex(path, "/")+1:]
		for _, st := range fixed {
			fc := presets.Config{Codec: presets.CodecOf(st[0]), Layers: len(st)}
			fplan, err := makePlan(ctx, src, fc)
			if err != nil {
				return err
			}
			budget := presets.Summarize(tensorPlans(fplan), 0).BPW
			rows := []struct {
				method string
				plan   *compress.Plan
			}{{"fixed " + presets.FormatStack(st), fplan}}
			for _, m := range []string{"variance", "measured"} {
				c := presets.Config{TargetBPW: budget, Adaptive: &presets.Adaptive{Method: m}}
				pl, err := makePlan(ctx, src, c)
				if err != nil {
					return fmt.Errorf("%s %s: %w", name, m, err)
				}
				rows = append(rows, struct {
					method string
					plan   *compress.Plan
				}{m, pl})
			}
			for _, r := range rows {
				rel, _, err := eval(ctx, src, r.plan, *full)
				if err != nil {
					return err
				}
				tp := tensorPlans(r.plan)
				fmt.Printf("| %s | %.3f | %s | %.3f | %.4f | %.2f | %s |\n", name, budget, r.method, presets.Summarize(tp, 0).BPW, rel, db(rel), histogram(tp))
			}
		}
		src.Close()
	}
	fmt.Printf("\nErrors: %s.\n", how)
	return nil
}

// histogram summarizes which stacks a plan uses, by share of coded weights.
func histogram(plans []presets.TensorPlan) string {
	w := map[string]int64{}
	var tot int64
	for _, p := range plans {
		if !p.Passthrough {
			w[presets.FormatStack(p.Layers)] += p.Elements
			tot += p.Elements
		}
	}
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return w[keys[i]] > w[keys[j]] || (w[keys[i]] == w[keys[j]] && keys[i] < keys[j]) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*float64(w[k])/float64(tot)))
	}
	return strings.Join(parts, ", ")
}

// bench: per preset, the compress pipeline itself (compress.MakePlan and
// compress.Run into a scratch archive): bits per weight and ratio are the
// archive's real bytes (index and passthrough tensors included), errors and
// speed what compress measured.
func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	names := fs.String("presets", "default,"+strings.Join(presets.Names(), ","), "presets to run (default: no preset)")
	fs.Parse(args)
	dir, err := os.MkdirTemp("", "alloccmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("| model | preset | settings | bits/weight | ratio vs fp32 | rel. error | SNR dB | plan s | encode s | encode weights/s |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, path := range fs.Args() {
		src, err := checkpoint.Open(path)
		if err != nil {
			return err
		}
		name := path[strings.LastIndex(path, "/")+1:]
		for _, pn := range strings.Split(*names, ",") {
			var cfg presets.Config
			settings := "C8 P3 K16 B4 E4 (paper 4-bit)"
			if pn != "default" {
				cfg.Preset = pn
				for _, p := range presets.Presets() {
					if p.Name == pn {
						settings = p.Settings()
					}
				}
			}
			t0 := time.Now()
			plan, err := makePlan(ctx, src, cfg)
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, pn, err)
			}
			planS := time.Since(t0).Seconds()
			rep, err := compress.Run(ctx, src, plan, compress.Part{}, filepath.Join(dir, pn+".seedlm"), compress.RunOptions{Overwrite: true})
			if err != nil {
				return err
			}
			fmt.Printf("| %s | %s | %s | %.3f | %.1f× | %.4f | %.2f | %.1f | %.1f | %.0f |\n",
				name, pn, settings, rep.BitsPerWeight, rep.RatioVsFP32, rep.RelErr, db(rep.RelErr), planS, rep.EncodeSeconds, rep.WeightsPerSecond)
		}
		src.Close()
	}
	fmt.Println("\nbits/weight and ratio: the archive's bytes on disk (index and passthrough tensors included) over all weights; rel. error and SNR: weight error over coded tensors, full encode (not output KL); weights/s: coded weights × layers over the encode phase's wall time, this machine, all cores.")
	return nil
}

func plan(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plan", flag.ExitOnError)
	cfgPath := fs.String("config", "", "YAML config")
	preset := fs.String("preset", "", "preset")
	level := fs.Float64("level", 0, "compression level")
	target := fs.Float64("target-bpw", 0, "target bits per weight")
	verbose := fs.Bool("v", false, "per-tensor lines")
	wps := fs.Float64("wps", 1e5, "C8 P3 K16 encode speed, weights/s, for the time estimate")
	fs.Parse(args)
	var cfg presets.Config
	if *cfgPath != "" {
		var err error
		if cfg, err = presets.LoadConfig(*cfgPath, "workers", "quiet", "dtype"); err != nil {
			return err
		}
	}
	flags := presets.Config{Preset: *preset, CompressionLevel: *level, TargetBPW: *target}
	for _, path := range fs.Args() {
		src, err := checkpoint.Open(path)
		if err != nil {
			return err
		}
		cp, err := compress.MakePlan(ctx, src, compress.Settings{Flags: flags, File: cfg}, compress.PlanOptions{})
		if err != nil {
			return err
		}
		plans := tensorPlans(cp)
		for _, w := range cp.Warnings {
			fmt.Println("warning:", w)
		}
		if *verbose {
			for _, p := range plans {
				est := ""
				if p.Measured && p.Norm2 > 0 {
					est = fmt.Sprintf(" est.rel %.3f", math.Sqrt(p.EstSqErr/p.Norm2))
				}
				st := "passthrough"
				if !p.Passthrough {
					st = presets.FormatStack(p.Layers)
				}
				fmt.Printf("%-50s %-40s %8.3f bpw%s  [%s]\n", p.Name, st, float64(p.Bits)/float64(p.Elements), est, p.Rule)
			}
		}
		s := presets.Summarize(plans, *wps)
		fmt.Printf("%s: %d tensors (%d coded, %d passthrough = %.3f bits/weight of the total), %.3f bits/weight, %.1f× vs fp32, est. rel. error %.4f, est. encode %.0f s at %.0f w/s\n",
			path, s.Tensors, s.Coded, s.Passthrough, float64(s.PassthroughBits)/float64(s.Elements), s.BPW, s.Ratio, s.EstRelErr, s.EstSeconds, *wps)
		src.Close()
	}
	return nil
}
