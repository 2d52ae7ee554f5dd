package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/compress"
)

// planOptions are plan's resolved settings.
type planOptions struct {
	Output   string
	Force    bool
	JSON     bool
	Quiet    bool
	Workers  int
	Parts    int
	Settings compress.Settings
}

// AddFlags registers plan's flags.
func (o *planOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Output, "output", "o", "", "plan file to write (default: INPUT with its extension replaced by .plan.json)")
	fs.BoolVar(&o.Force, "force", false, "replace an existing plan file")
	fs.BoolVar(&o.JSON, "json", false, "print the summary as one JSON object on stdout")
	fs.IntVar(&o.Parts, "parts", 0, "also show how N parts (compress --part I/N) would share the estimated work")
	fs.BoolP(flagName(keyQuiet), "q", false, "no progress bar and no summary (errors are still printed)")
	fs.Int(flagName(keyWorkers), 0, "goroutines for measuring and hashing (0: one per CPU); never changes the plan")
	addSettingsFlags(fs)
}

func (o *planOptions) resolve(c *config) error {
	var err error
	if o.Quiet, o.Workers, err = c.quietAndWorkers(); err != nil {
		return err
	}
	if o.Parts < 0 {
		return usagef("--parts must be ≥ 0, got %d", o.Parts)
	}
	o.Settings, err = settingsFromConfig(c)
	return err
}

func newPlanCmd(a *app) *cobra.Command {
	var o planOptions
	cmd := &cobra.Command{
		Use:   "plan INPUT",
		Short: "Decide once how to compress every tensor, for compress --part on many machines",
		Long: `Plan a compression once and write it to a file.

The plan holds what compress would decide (each tensor's settings, the
measured target allocation), the settings, this seedlm's version and the
input's identity: every file's name and size, a SHA-256 of each file's first
and last MiB, and a SHA-256 of every tensor's bytes (plan reads the whole
model once for these). Then, on N machines or N tasks of a batch engine:

  seedlm compress INPUT --plan PLAN.json --part I/N     (I = 0 … N−1)
  seedlm merge INPUT.part-*-of-N.seedlm -o OUT.seedlm

Each part checks the plan against its input (exit 2 naming what differs)
and merge writes the archive one machine would have written, byte for
byte. docs/SCALE-OUT.md has Kubernetes, Slurm and GitHub Actions examples.`,
		Args: exactArgs("INPUT"),
		RunE: a.configured(o.resolve, func(ctx context.Context, args []string) error {
			return runPlan(ctx, &o, args, a.stdout, a.stderr)
		}),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// planSummary is what plan prints (--json).
type planSummary struct {
	Input       string            `json:"input"`
	Plan        string            `json:"plan"`
	SHA256      string            `json:"sha256"`
	Settings    map[string]string `json:"settings"`
	Tensors     int               `json:"tensors"`
	Coded       int               `json:"coded_tensors"`
	Passthrough int               `json:"passthrough_tensors"`
	Duplicates  int               `json:"duplicate_tensors"`
	Weights     int64             `json:"weights"`
	// Files are the model folder's sidecar files the archive will store;
	// SkippedFiles the folder's other entries, with the reason.
	Files        []string `json:"files"`
	SkippedFiles []string `json:"skipped_files,omitempty"`
	PlannedBytes int64    `json:"planned_payload_bytes"`
	// Cost is the estimated encode work in weights at the paper's 4-bit
	// configuration (compress.TensorPlan.Cost); PartCosts its share per
	// part with --parts.
	Cost      float64   `json:"cost"`
	PartCosts []float64 `json:"part_costs,omitempty"`
	Warnings  []string  `json:"warnings,omitempty"`
	// Objective, Evaluation (the pending record), EvalNote and Search are
	// the plan's output-quality decisions (compress.Plan).
	Objective  string           `json:"objective,omitempty"`
	Evaluation *archive.Quality `json:"evaluation,omitempty"`
	EvalNote   string           `json:"eval_note,omitempty"`
	Search     *compress.Search `json:"max_kl_search,omitempty"`
}

func runPlan(ctx context.Context, o *planOptions, args []string, stdout, stderr io.Writer) error {
	input := args[0]
	out := o.Output
	if out == "" {
		out = strings.TrimSuffix(defaultArchiveName(input, compress.Part{}), ".seedlm") + ".plan.json"
	}
	if err := checkOutput(out, input, o.Force); err != nil {
		return err
	}
	src, err := openInput(input)
	if err != nil {
		return err
	}
	defer src.Close()
	workers := workerCount(o.Workers)
	plan, err := makePlan(ctx, src, recordedSettings(o.Settings, false), workers, true, !o.Quiet && !o.JSON, stderr)
	if err != nil {
		return err
	}
	if err := plan.WriteFile(out, o.Force); err != nil {
		return err
	}
	s := plan.Summarize()
	sum := &planSummary{Input: input, Plan: out, SHA256: plan.SHA256, Settings: settingsOrEmpty(plan.Settings), Tensors: s.Tensors,
		Coded: s.Coded, Passthrough: s.Passthrough, Duplicates: s.Duplicates, Weights: s.Weights, PlannedBytes: s.PlannedBytes, Cost: s.Cost,
		Warnings: plan.Warnings, Files: []string{}, SkippedFiles: plan.SkippedFiles,
		Objective: plan.Objective, Evaluation: plan.Quality, EvalNote: plan.EvalNote, Search: plan.Search}
	for _, f := range plan.Sidecars {
		sum.Files = append(sum.Files, f.Name)
	}
	if o.Parts > 0 {
		for _, ps := range plan.Assign(o.Parts) {
			var c float64
			for _, i := range ps {
				c += plan.Tensors[i].Cost()
			}
			sum.PartCosts = append(sum.PartCosts, c)
		}
	}
	if o.JSON {
		return writeJSON(stdout, sum)
	}
	if o.Quiet {
		return nil
	}
	fmt.Fprintf(stdout, "planned %s → %s (sha256 %.12s…)\n", input, out, plan.SHA256)
	fmt.Fprintf(stdout, "  settings  %s\n", describeSettings(plan.Settings))
	dups := ""
	if s.Duplicates > 0 {
		dups = ", " + plural(s.Duplicates, "duplicate", "duplicates") + " stored once"
	}
	fmt.Fprintf(stdout, "  tensors   %s (%s coded, %s stored exactly%s), %s weights\n", commas(int64(s.Tensors)), commas(int64(s.Coded)), commas(int64(s.Passthrough)), dups, commas(s.Weights))
	if len(sum.Files) > 0 {
		fmt.Fprintf(stdout, "  files     %s stored byte for byte (%s)\n", plural(len(sum.Files), "sidecar file", "sidecar files"), strings.Join(sum.Files, ", "))
	}
	if len(sum.SkippedFiles) > 0 {
		fmt.Fprintf(stdout, "  skipped   %s\n", strings.Join(sum.SkippedFiles, "; "))
	}
	bpw := 0.0
	if s.Weights > 0 {
		bpw = float64(s.PlannedBytes) * 8 / float64(s.Weights)
	}
	fmt.Fprintf(stdout, "  payload   ≈%s bytes planned (%.3f bits/weight, index not counted)\n", commas(s.PlannedBytes), bpw)
	if plan.Objective != "" {
		fmt.Fprintf(stdout, "  objective %s\n", planObjective(plan))
	}
	if sr := plan.Search; sr != nil {
		fmt.Fprintf(stdout, "  max KL    %g: the search chose a plan measuring KL %.4g (%.3f bits/weight in the allocated tensors)\n", sr.MaxKL, sr.KL, sr.BitsPerWeight)
	}
	switch {
	case plan.Quality != nil:
		fmt.Fprintf(stdout, "  output    evaluated after merge: pass merge --original %s\n", input)
	case plan.EvalNote != "":
		fmt.Fprintf(stdout, "  output    %s\n", plan.EvalNote)
	}
	if len(sum.PartCosts) > 0 {
		lo, hi := sum.PartCosts[0], sum.PartCosts[0]
		for _, c := range sum.PartCosts {
			lo, hi = min(lo, c), max(hi, c)
		}
		fmt.Fprintf(stdout, "  parts     %d: estimated work per part %s to %s weight-equivalents (largest/mean %.2f)\n",
			o.Parts, commas(int64(math.Round(lo))), commas(int64(math.Round(hi))), hi*float64(o.Parts)/max(s.Cost, 1))
	}
	fmt.Fprintf(stdout, "next: seedlm compress %s --plan %s --part I/N   (I = 0 … N−1), then seedlm merge\n", input, out)
	return nil
}
