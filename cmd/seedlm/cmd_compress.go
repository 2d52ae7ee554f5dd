package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/compress"
	"github.com/seedlm/seedlm/internal/presets"
)

// compressOptions are compress's resolved settings.
type compressOptions struct {
	Output   string
	Force    bool
	JSON     bool
	Quiet    bool
	DryRun   bool
	Workers  int
	Settings compress.Settings
	// PlanFile and Part: encode part Part ("I/N" or "auto"; "" for the
	// whole model) of the plan in PlanFile ("" to plan here).
	PlanFile string
	Part     string

	// afterTensor, when set, is called after each tensor is added to the
	// archive (tests use it to cancel mid-run).
	afterTensor func(i int)
	// onBlocks, when set, is called from the encoder's workers as blocks
	// finish (tests use it to cancel inside an encode).
	onBlocks func()
}

// addSettingsFlags registers the flags that decide the plan (compress and
// plan share them). Keys shared with the config file are named by
// flagName(key).
func addSettingsFlags(fs *pflag.FlagSet) {
	fs.String(flagName(keyPreset), "", "named preset: "+strings.Join(presets.Names(), ", ")+" (see seedlm presets)")
	fs.Float64(flagName(keyLevel), 0, "compression level 0.1…0.9, higher is smaller (0.3 is the paper's 4-bit configuration)")
	fs.Float64(flagName(keyTargetBPW), 0, "size target for the whole archive in bits per weight, (0, 64] (codes a sample of every tensor to choose settings)")
	fs.Float64(flagName(keyTargetRatio), 0, "size target as a ratio to fp32 (= 32 / target-bpw)")
	fs.Int(flagName(keyLayers), 0, fmt.Sprintf("progressive layers per coded tensor, 1…%d: a base layer plus N−1 enhancement layers coding the residual (default: the plan's, 1 for the default)", presets.MaxLayers))
	fs.Int(flagName(keyMinElements), 0, "store tensors with fewer weights exactly (default 1024)")
	fs.Int(flagName(keyBlockSize), 0, "C: weights per block, overriding the plan for every coded tensor (paper: 8)")
	fs.Int(flagName(keyLatentDim), 0, "P: coefficients per block (paper: 3)")
	fs.Int(flagName(keySeedBits), 0, "K: LFSR seed bits; the search doubles per bit (paper: 16)")
	fs.Int(flagName(keyCoeffBits), 0, "B: bits per coefficient (paper: 4)")
	fs.Int(flagName(keyExpBits), 0, "E: bits of the shared block exponent (paper: 4)")
	fs.String(flagName(keyTargetScope), "", "what a size target counts: file (the whole archive; default) or coded (the coded tensors' payload only)")
	fs.String(flagName(keyObjective), "", "what a target allocation minimizes: auto (default), output (predicted KL; Llama-family models), relative or weights")
	fs.Float64(flagName(keyMaxKL), 0, "the smallest archive whose measured KL(original ‖ decoded) is at most this (Llama-family models; exit 5 if out of reach)")
	fs.Bool(flagName(keyEval), false, "evaluate the compressed model (KL and top-1 vs the original) and record it; default: when it costs under 10 % of the compression")
	fs.Bool("no-eval", false, "do not evaluate the compressed model")
	fs.String(flagName(keyModelConfig), "", "the model's Hugging Face config.json (default: config.json beside INPUT)")
}

// AddFlags registers compress's flags.
func (o *compressOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Output, "output", "o", "", "archive to write (default: INPUT with its extension replaced by .seedlm, or .part-I-of-N.seedlm for a part; with --part a folder, or a path ending in /, receives the part under that name)")
	fs.BoolVar(&o.Force, "force", false, "replace an existing output archive (never the input)")
	fs.BoolVar(&o.JSON, "json", false, "print the summary (or the --dry-run plan) as one JSON object on stdout")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print each tensor's plan, expected bits per weight and estimated time; write nothing")
	fs.BoolP(flagName(keyQuiet), "q", false, "no progress bar and no summary (errors and warnings are still printed)")
	fs.Int(flagName(keyWorkers), 0, "encoder goroutines (0: one per CPU); never changes the output")
	fs.StringVar(&o.PlanFile, "plan", "", "use the plan file written by seedlm plan instead of planning here (the settings come from it)")
	fs.StringVar(&o.Part, "part", "", "encode only part I/N of the plan's tensors (0 ≤ I < N), or \"auto\" to read I and N from the batch engine's environment; needs --plan; join the parts with seedlm merge")
	addSettingsFlags(fs)
}

// resolve fills the options from flags > environment > config file.
func (o *compressOptions) resolve(c *config) error {
	var err error
	if o.Quiet, o.Workers, err = c.quietAndWorkers(); err != nil {
		return err
	}
	if o.Part != "" && o.PlanFile == "" {
		return withHint(usagef("--part needs --plan"), "make the plan once with \"seedlm plan INPUT -o PLAN.json\", then run every part with --plan PLAN.json")
	}
	o.Settings, err = settingsFromConfig(c)
	return err
}

func newCompressCmd(a *app) *cobra.Command {
	var o compressOptions
	cmd := &cobra.Command{
		Use:   "compress INPUT",
		Short: "Compress a checkpoint into a .seedlm archive (or one part of it)",
		Long: `Compress a checkpoint into a .seedlm archive.

INPUT is a .safetensors file, a sharded model's *.index.json or the folder that
holds it, or a PyTorch .bin/.pt/.pth. With no preset, level or codec flag every
float tensor of rank ≥ 2 and at least 1024 weights is coded with the paper's
4-bit configuration (C=8 P=3 K=16 B=4 E=4, 4.0 bits per weight), one layer;
everything else (norms, biases, integer tensors) is stored byte-exact, and so
is any tensor whose code would have a relative weight error of 0.9 or more.

The archive is written to a temporary file beside OUT and renamed into place
only when complete; an error or Ctrl-C leaves nothing at OUT.

To spread one compression over machines (docs/SCALE-OUT.md): seedlm plan
INPUT -o PLAN.json once, then compress INPUT --plan PLAN.json --part I/N on
each, then seedlm merge the N parts: the result is byte-identical to
compressing on one machine.`,
		Args: exactArgs("INPUT"),
		RunE: a.configured(o.resolve, func(ctx context.Context, args []string) error {
			return runCompress(ctx, &o, args, a.stdout, a.stderr)
		}),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// openInput opens compress's and plan's INPUT with a hint on what it may be.
func openInput(input string) (checkpoint.Source, error) {
	if _, err := os.Stat(input); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("input %s does not exist", input)
	}
	src, err := checkpoint.Open(input)
	if err != nil {
		if len(hints(err)) > 0 {
			return nil, err
		}
		return nil, withHint(err, "INPUT must be a .safetensors file, a sharded model's *.index.json or its folder, or a PyTorch .bin/.pt/.pth")
	}
	if len(src.Tensors()) == 0 {
		src.Close()
		return nil, fmt.Errorf("%s: no tensors to compress", input)
	}
	return src, nil
}

// recordedSettings drops where each flag-level setting came from unless
// the plan is only displayed (--dry-run): the archive's rules must not
// depend on whether a value came from a flag or a SEEDLM_* variable.
func recordedSettings(s compress.Settings, display bool) compress.Settings {
	if !display {
		s.FlagOrigins = nil
	}
	return s
}

// makePlan plans src with a "measuring" progress bar, printing the plan's
// warnings.
func makePlan(ctx context.Context, src checkpoint.Source, s compress.Settings, workers int, hash, bar bool, stderr io.Writer) (*compress.Plan, error) {
	// The measuring pass (size targets, adaptive settings) has its own
	// bar, counting the tensors it reads; it is cleared before encoding.
	// Stages before it (the output objective's probes, max_kl's text) show
	// on a "planning" bar over the model's tensors, stages after it (the
	// max_kl search) on the measuring bar.
	var mbar *progress
	plan, err := compress.MakePlan(ctx, src, s, compress.PlanOptions{Workers: workers, HashTensors: hash,
		Progress: func(done, total int, name string) {
			if mbar == nil || mbar.label != "measuring" {
				if mbar != nil {
					mbar.Done()
				}
				mbar = newProgress(stderr, bar, int64(total), "measuring", "tensors")
			}
			mbar.Describe(shortName(name))
			mbar.Add(1)
		},
		Stage: func(what string) {
			if mbar == nil {
				mbar = newProgress(stderr, bar, int64(len(src.Tensors())), "planning", "tensors")
			}
			mbar.Stage(what)
		},
	})
	if mbar != nil {
		mbar.Done()
	}
	if err != nil {
		return nil, err
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(stderr, "seedlm: warning: %s\n", w)
	}
	return plan, nil
}

func runCompress(ctx context.Context, o *compressOptions, args []string, stdout, stderr io.Writer) (err error) {
	input := args[0]
	src, err := openInput(input)
	if err != nil {
		return err
	}
	defer src.Close()
	workers := workerCount(o.Workers)
	var plan *compress.Plan
	var part compress.Part
	if o.PlanFile != "" {
		if plan, err = compress.ReadPlan(o.PlanFile); err != nil {
			return err
		}
		if err := plan.MatchSettings(o.Settings, o.PlanFile); err != nil {
			return err
		}
		if err := plan.Match(src, o.PlanFile); err != nil {
			return err
		}
		for _, w := range plan.Warnings {
			fmt.Fprintf(stderr, "seedlm: warning: %s\n", w)
		}
		if part, err = parsePartFlag(o.Part, o.Quiet || o.JSON, stderr); err != nil {
			return err
		}
	} else if plan, err = makePlan(ctx, src, recordedSettings(o.Settings, o.DryRun), workers, false, !o.Quiet && !o.JSON, stderr); err != nil {
		return err
	}
	if o.DryRun {
		return dryRun(ctx, o, input, src, plan, part, workers, stdout, stderr)
	}

	out, err := partOutput(o.Output, input, part)
	if err != nil {
		return err
	}
	if err := checkOutput(out, input, o.Force); err != nil {
		return err
	}
	sweepTemps(out, stderr)
	if e, slow, err := compress.SlowEstimate(ctx, src, plan, part, workers); err != nil {
		return err
	} else if slow {
		warnSlow(stderr, e)
	}
	bar := newProgress(stderr, !o.Quiet && !o.JSON, plan.Weights(part), "encoding", "weights")
	defer bar.Done()
	rep, err := compress.Run(ctx, src, plan, part, out, compress.RunOptions{
		Workers:   workers,
		Overwrite: o.Force,
		PlanPath:  o.PlanFile,
		Progress: func(w int64) {
			bar.Add(w)
			if o.onBlocks != nil {
				o.onBlocks()
			}
		},
		Started:     func(name string) { bar.Describe(shortName(name)) },
		TensorDone:  o.afterTensor,
		ModelConfig: o.Settings.ModelConfig,
		Evaluating:  func() { bar.Describe("evaluating") },
	})
	if err != nil {
		return err
	}
	bar.Done()
	for _, w := range rep.Warnings[len(plan.Warnings):] {
		fmt.Fprintf(stderr, "seedlm: warning: %s\n", w)
	}
	if o.JSON {
		return writeJSON(stdout, rep)
	}
	if !o.Quiet {
		printCompressReport(stdout, rep)
	}
	return nil
}

// parsePartFlag reads --part: "" (the whole model), "I/N", or "auto" (from
// the batch engine's environment, saying which variables it used).
func parsePartFlag(s string, quiet bool, stderr io.Writer) (compress.Part, error) {
	switch strings.TrimSpace(s) {
	case "":
		return compress.Part{}, nil
	case "auto":
		p, from, err := compress.PartFromEnv(os.Getenv)
		if err != nil {
			return p, withHint(usagef("--part auto: %v", err), "docs/SCALE-OUT.md shows each engine's setup; or pass --part I/N")
		}
		if !quiet {
			fmt.Fprintf(stderr, "seedlm: part %s from %s\n", p, from)
		}
		return p, nil
	}
	p, err := compress.ParsePart(s)
	if err != nil {
		return p, usagef("--part: %v", err)
	}
	return p, nil
}

func printCompressReport(w io.Writer, r *compress.Report) {
	fmt.Fprintf(w, "compressed %s → %s\n", r.Input, r.Output)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.Part != nil {
		fmt.Fprintf(tw, "  part\t%d of %d (parts numbered from 0): %d of %d tensors, plan %.12s…; join the parts with seedlm merge\n",
			r.Part.Index, r.Part.Count, r.Tensors, r.Part.Of, r.PlanSHA256)
	}
	fmt.Fprintf(tw, "  settings\t%s\n", describeSettings(r.Settings))
	dups := ""
	if r.DuplicateTensors > 0 {
		dups = ", " + plural(r.DuplicateTensors, "duplicate", "duplicates") + " stored once"
	}
	fmt.Fprintf(tw, "  tensors\t%s (%s coded, %s stored exactly%s)\n", commas(int64(r.Tensors)),
		commas(int64(r.CodedTensors)), commas(int64(r.PassthroughTensors)), dups)
	if r.DuplicateTensors > 0 {
		var names []string
		for _, st := range r.PerTensor {
			if st.DuplicateOf != "" {
				names = append(names, st.Name+" = "+st.DuplicateOf)
			}
		}
		if len(names) > 3 {
			names = append(names[:3], fmt.Sprintf("and %d more", len(names)-3))
		}
		fmt.Fprintf(tw, "  duplicates\t%s (byte-identical, tied weights): %s; %s saved\n",
			plural(r.DuplicateTensors, "tensor", "tensors"), strings.Join(names, ", "), plural64(r.DuplicateBytesSaved, "byte", "bytes"))
	}
	fmt.Fprintf(tw, "  weights\t%s (%s coded)\n", commas(r.Weights), commas(r.CodedWeights))
	what := r.SourceFormat
	if r.Part != nil {
		what = "this part's tensors"
	}
	if len(r.Files) > 0 {
		what += fmt.Sprintf(", with %s", plural(len(r.Files), "sidecar file", "sidecar files"))
	}
	fmt.Fprintf(tw, "  input\t%s (%s)\n", plural64(r.InputBytes, "byte", "bytes"), what)
	if len(r.Files) > 0 || len(r.SkippedFiles) > 0 {
		var names []string
		for _, f := range r.Files {
			names = append(names, f.Name)
		}
		stored := "none"
		if len(names) > 0 {
			stored = fmt.Sprintf("%s byte for byte (%s)", strings.Join(names, ", "), plural64(r.FileBytes, "byte", "bytes"))
		}
		fmt.Fprintf(tw, "  files\t%s\n", stored)
		if len(r.SkippedFiles) > 0 {
			fmt.Fprintf(tw, "  skipped\t%s\n", strings.Join(r.SkippedFiles, "; "))
		}
	}
	fmt.Fprintf(tw, "  archive\t%s on disk\n", plural64(r.OutputBytes, "byte", "bytes"))
	fmt.Fprintf(tw, "  ratio\t%.2f× vs input, %.2f× vs fp32\n", r.RatioVsInput, r.RatioVsFP32)
	fmt.Fprintf(tw, "  bits/weight\t%.3f overall (file bits / all weights), %.3f in coded tensors\n", r.BitsPerWeight, r.CodedBitsPerWeight)
	if r.Objective != "" {
		fmt.Fprintf(tw, "  objective\t%s\n", describeObjective(r.Objective, r.Probes))
	}
	if s := r.Search; s != nil {
		fmt.Fprintf(tw, "  max KL\t%g: the smallest plan the search found measures KL %.4g (%.3f bits/weight in the allocated tensors, %d plans evaluated)\n",
			s.MaxKL, s.KL, s.BitsPerWeight, s.Evaluations)
	}
	if r.CodedTensors > 0 {
		fmt.Fprintf(tw, "  quality\tSNR %s (worst tensor %s: %s); relative error %.4f (weight error, not output KL)\n",
			fmtDB(r.SNRdB), fmtDB(r.SNRWorstDB), r.SNRWorstTensor, r.RelErr)
	}
	switch q := r.Quality; {
	case q != nil:
		fmt.Fprintf(tw, "  output\tKL(original ‖ decoded) mean %.4g, p95 %.4g nats; top-1 agreement %.4g %%; perplexity %.4g → %.4g (output quality, measured on %s next-token distributions; %s)\n",
			*q.KLMean, *q.KLP95, 100**q.Top1, *q.PPLOriginal, *q.PPLCandidate, commas(int64(q.Tokens)), fmtSeconds(r.EvalSeconds))
	case r.EvalNote != "":
		fmt.Fprintf(tw, "  output\t%s\n", r.EvalNote)
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(tw, "  warnings\t%d (printed above)\n", len(r.Warnings))
	}
	fmt.Fprintf(tw, "  time\t%s wall, %s weights/s encoding (%s, %s kernel)\n",
		fmtSeconds(r.WallSeconds), commas(int64(math.Round(r.WeightsPerSecond))), plural(r.Workers, "worker", "workers"), r.Kernel)
	tw.Flush()
}

// planObjective describes a plan's objective.
func planObjective(p *compress.Plan) string {
	probes := ""
	if p.Sensitivity != nil {
		probes = p.Sensitivity.Probes
	}
	return describeObjective(p.Objective, probes)
}

// describeObjective says what a target allocation minimized.
func describeObjective(name, probes string) string {
	switch name {
	case "output":
		return fmt.Sprintf("output: predicted KL(original ‖ decoded), each tensor weighted by its measured sensitivity (%s probes)", probes)
	case "relative":
		return "relative: each weight's error relative to its tensor's mean square (the proxy for models seedlm cannot run)"
	}
	return "weights: total squared weight error"
}

// dryRun prints the plan (of one part, with --part) and its estimate
// without writing anything.
func dryRun(ctx context.Context, o *compressOptions, input string, src checkpoint.Source, plan *compress.Plan, part compress.Part, workers int, stdout, stderr io.Writer) error {
	e, err := compress.EstimateRun(ctx, src, plan, part, workers)
	if err != nil {
		return err
	}
	if n := e.CodedWeights(); n > 0 && e.EstimatedSeconds/(float64(n)/1e6) > compress.SlowSecondsPerMillion {
		warnSlow(stderr, e)
	}
	e.Input = input
	if o.JSON {
		return writeJSON(stdout, e)
	}
	what := ""
	if !part.Whole() {
		what = fmt.Sprintf(" part %s,", part)
	}
	fmt.Fprintf(stdout, "dry run: %s (%s),%s %s; nothing written\n", input, src.Format(), what, plural(len(e.Tensors), "tensor", "tensors"))
	fmt.Fprintf(stdout, "settings: %s\n", describeSettings(plan.Settings))
	if plan.Objective != "" {
		fmt.Fprintf(stdout, "objective: %s\n", planObjective(plan))
		if s := plan.Sensitivity; s != nil {
			fmt.Fprintf(stdout, "sensitivity: S = KL(original ‖ perturbed) / %g² for noise of relative size %g in one matrix, on %s\n", s.Rel, s.Rel, s.Text)
		}
	}
	switch {
	case plan.Quality != nil:
		fmt.Fprintf(stdout, "evaluation: after encoding, KL and top-1 on %s\n", plan.Quality.Text)
	case plan.EvalNote != "":
		fmt.Fprintf(stdout, "evaluation: %s\n", plan.EvalNote)
	}
	if s := plan.Search; s != nil {
		fmt.Fprintf(stdout, "max KL %g: the search chose a plan measuring KL %.4g (%.3f bits/weight in the allocated tensors, %d plans evaluated)\n", s.MaxKL, s.KL, s.BitsPerWeight, s.Evaluations)
	}
	sens := plan.Sensitivity != nil
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	head := "TENSOR\tDTYPE\tSHAPE\tRULE\tCODEC\tBITS/W\tEST. TIME"
	if sens {
		head += "\tSENSITIVITY"
	}
	fmt.Fprintln(tw, head)
	for _, r := range e.Tensors {
		est := "-"
		if !r.Passthrough {
			est = fmtSeconds(r.EstimatedSeconds)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%.3f\t%s", r.Name, r.DType, shapeString(r.Shape), r.Rule, orDash(r.Codec), r.BitsPerWeight, est)
		if sens {
			v := "-"
			if r.Sensitivity > 0 {
				v = fmt.Sprintf("%.4g", r.Sensitivity)
			}
			line += "\t" + v
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	bpw := 0.0
	if e.Weights > 0 {
		bpw = float64(e.ExpectedPayloadBytes) * 8 / float64(e.Weights)
	}
	fmt.Fprintf(stdout, "expected: ≈%s payload bytes (%.3f bits/weight, index not counted); estimated time ≈%s with %s (%s kernel, rate measured on random weights)\n",
		commas(e.ExpectedPayloadBytes), bpw, fmtSeconds(e.EstimatedSeconds), plural(workers, "worker", "workers"), e.Kernel)
	return nil
}

// warnSlow says, before the work starts, that the settings will take long.
func warnSlow(w io.Writer, e *compress.Estimate) {
	n := e.CodedWeights()
	fmt.Fprintf(w, "seedlm: warning: these settings are slow: encoding %s coded weights is estimated at %s with %s here (about %s per million weights; the paper's C8 P3 K16 takes seconds); compress --dry-run shows the estimate per tensor\n",
		commas(n), fmtDuration(e.EstimatedSeconds), plural(e.Workers, "worker", "workers"), fmtDuration(e.EstimatedSeconds/(float64(n)/1e6)))
}

// partOutput is the archive to write: -o, or the default name; for a part,
// -o may name a folder (created if it ends in "/"), which then receives
// the part under its default name, so every task of a batch job can run the
// same command line.
func partOutput(o, input string, part compress.Part) (string, error) {
	if o == "" {
		return defaultArchiveName(input, part), nil
	}
	if part.Whole() {
		return o, nil
	}
	st, err := os.Stat(o)
	isDir := err == nil && st.IsDir()
	if !isDir && strings.HasSuffix(o, "/") {
		if err := os.MkdirAll(o, 0o755); err != nil {
			return "", err
		}
		isDir = true
	}
	if !isDir {
		return o, nil
	}
	return filepath.Join(o, filepath.Base(defaultArchiveName(input, part))), nil
}

// defaultArchiveName is INPUT with its extension replaced by .seedlm (a
// folder gets .seedlm appended); a part gets .part-I-of-N.seedlm.
func defaultArchiveName(input string, part compress.Part) string {
	ext := ".seedlm"
	if !part.Whole() {
		ext = fmt.Sprintf(".part-%d-of-%d.seedlm", part.Index, part.Count)
	}
	in := filepath.Clean(input)
	if st, err := os.Stat(in); err == nil && st.IsDir() {
		return in + ext
	}
	lower := strings.ToLower(in)
	for _, suf := range []string{".safetensors.index.json", ".index.json", ".safetensors", ".bin", ".pt", ".pth"} {
		if strings.HasSuffix(lower, suf) {
			return in[:len(in)-len(suf)] + ext
		}
	}
	return in + ext
}

// checkOutput refuses to write over the input, and over an existing file
// without --force.
func checkOutput(out, input string, force bool) error {
	return checkOutputFile(out, input, force, "the input", "choose another output with -o", "name the archive file with -o")
}
