package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/compress"
)

// mergeOptions are merge's resolved settings.
type mergeOptions struct {
	Output      string
	Force       bool
	JSON        bool
	Quiet       bool
	Original    string
	ModelConfig string
	Workers     int
}

// AddFlags registers merge's flags.
func (o *mergeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Output, "output", "o", "", "archive to write (default: the parts' common name, X for X.part-I-of-N.seedlm)")
	fs.BoolVar(&o.Force, "force", false, "replace an existing output archive (never a part)")
	fs.BoolVar(&o.JSON, "json", false, "print the summary as one JSON object on stdout")
	fs.BoolP(flagName(keyQuiet), "q", false, "no summary (errors are still printed)")
	fs.StringVar(&o.Original, "original", "", "the model the parts were compressed from: needed when the plan evaluates the compressed model (merge measures the merged model's KL and top-1, as compress would have)")
	fs.StringVar(&o.ModelConfig, "model-config", "", "the model's config.json, with --original (default: beside it)")
	fs.Int(flagName(keyWorkers), 0, "goroutines for the evaluation (0: one per CPU); never changes the output")
}

// resolve reads quiet and workers as every command does (flag, SEEDLM_*
// environment, config file).
func (o *mergeOptions) resolve(c *config) error {
	var err error
	o.Quiet, o.Workers, err = c.quietAndWorkers()
	return err
}

func newMergeCmd(a *app) *cobra.Command {
	var o mergeOptions
	cmd := &cobra.Command{
		Use:   "merge PART.seedlm... | FOLDER",
		Short: "Join the part archives of compress --part into one archive",
		Long: `Join part archives (compress --plan PLAN --part I/N) into the archive that
compress would have written on one machine with the same settings, byte for
byte.

Merge checks every chunk's SHA-256 as it copies it (nothing is decoded, and
memory holds only the parts' indexes), that every part comes from the same
plan, input and settings, and that each part 0 … N−1 is given exactly once;
it names the missing parts. Nothing is written unless all of that holds.

A folder argument stands for the part archives in it (*.part-I-of-N.seedlm).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return withHint(usagef("merge: missing PART.seedlm"), "usage: %s", cmd.UseLine())
			}
			return nil
		},
		RunE: a.configured(o.resolve, func(ctx context.Context, args []string) error {
			return runMerge(ctx, &o, args, a.stdout, a.stderr)
		}),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

var partName = regexp.MustCompile(`^(.*)\.part-\d+-of-\d+\.seedlm$`)

// mergeReport is merge's summary; --json prints it.
type mergeReport struct {
	Output      string   `json:"output"`
	Parts       []string `json:"parts"`
	Tensors     int      `json:"tensors"`
	OutputBytes int64    `json:"output_bytes"`
	WallSeconds float64  `json:"wall_seconds"`
	// Quality is the merged model's measured output quality (the plan's
	// evaluation, with --original).
	Quality *archive.Quality `json:"quality,omitempty"`
}

// partFiles expands folders among args to the part archives they hold
// (*.part-I-of-N.seedlm, in name order).
func partFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil || !st.IsDir() {
			out = append(out, a)
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		n := len(out)
		for _, e := range ents {
			if e.Type().IsRegular() && partName.MatchString(e.Name()) {
				out = append(out, filepath.Join(a, e.Name()))
			}
		}
		if len(out) == n {
			return nil, withHint(usagef("merge: folder %s holds no part archives (*.part-I-of-N.seedlm)", a), "name the part files, or the folder compress --part -o FOLDER/ wrote them to")
		}
	}
	return out, nil
}

func runMerge(ctx context.Context, o *mergeOptions, args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	parts, err := partFiles(args)
	if err != nil {
		return err
	}
	out := o.Output
	if out == "" {
		m := partName.FindStringSubmatch(filepath.Base(parts[0]))
		if m == nil {
			return withHint(usagef("merge: name the output with -o"), "the parts are not named X.part-I-of-N.seedlm, so there is no default")
		}
		// Beside the first part, or beside the folder that holds it.
		out = filepath.Join(filepath.Dir(filepath.Clean(args[0])), m[1]+".seedlm")
	}
	for _, p := range parts {
		if err := checkOutputFile(out, p, o.Force, "one of the parts", "choose another output with -o", "name the archive file with -o"); err != nil {
			return err
		}
	}
	sweepTemps(out, stderr)
	var me *archive.MergeError
	fig, err := mergeQuality(ctx, o, parts)
	if err != nil {
		return err
	}
	mr, err := archive.Merge(ctx, out, parts, archive.CreateOptions{Overwrite: o.Force, Quality: fig})
	if errors.As(err, &me) && me.NeedsQuality {
		return withHint(err, "pass --original INPUT (and --model-config FILE if its config.json is elsewhere), as compress --part got it")
	}
	if errors.As(err, &me) && len(me.Missing) > 0 {
		nums := make([]string, len(me.Missing))
		for i, n := range me.Missing {
			nums[i] = fmt.Sprint(n)
		}
		return withHint(err, "run seedlm compress INPUT --plan PLAN --part I/%d for I = %s", me.Count, strings.Join(nums, ", "))
	}
	if err != nil {
		return err
	}
	rep := &mergeReport{Output: out, Parts: parts, Tensors: mr.Tensors, OutputBytes: mr.Bytes, WallSeconds: time.Since(start).Seconds(), Quality: fig}
	if w := compress.QualityWarning(fig); w != "" {
		fmt.Fprintf(stderr, "seedlm: warning: %s\n", w)
	}
	if o.JSON {
		return writeJSON(stdout, rep)
	}
	if !o.Quiet {
		fmt.Fprintf(stdout, "merged %s → %s: %s, %s, %s\n", plural(mr.Parts, "part", "parts"), out, plural(mr.Tensors, "tensor", "tensors"), plural64(mr.Bytes, "byte", "bytes"), fmtSeconds(rep.WallSeconds))
		if fig != nil {
			fmt.Fprintf(stdout, "  output: KL(original ‖ decoded) mean %.4g nats, top-1 agreement %.4g %% (output quality, measured on %s next-token distributions)\n",
				*fig.KLMean, 100**fig.Top1, commas(int64(fig.Tokens)))
		}
	}
	return nil
}

// mergeQuality measures the merged model when the parts wait for it (a
// plan that evaluates), with --original; nil when they do not.
func mergeQuality(ctx context.Context, o *mergeOptions, parts []string) (*archive.Quality, error) {
	if o.Original == "" {
		if o.ModelConfig != "" {
			return nil, usagef("merge: --model-config needs --original")
		}
		return nil, nil
	}
	src, err := openInput(o.Original)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return compress.MergeQuality(ctx, parts, src, o.ModelConfig, o.Workers)
}
