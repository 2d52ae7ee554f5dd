package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/eval"
	"github.com/seedlm/seedlm/internal/model"
)

// evalOptions are eval's resolved settings.
type evalOptions struct {
	Samples      int
	TokensPer    int
	Seed         uint64
	TokensFile   string
	ModelConfig  string
	MaxKLFlag    string
	MaxKL        float64 // < 0: no gate
	Layers       int
	AllowPartial bool
	MaxMemory    string // "" = what the system has available
	Workers      int
	JSON         bool
	Quiet        bool

	maxMemory int64
}

func (o *evalOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.Samples, "samples", eval.DefaultSamples, "sequences of evaluation text to sample from the original")
	fs.IntVar(&o.TokensPer, "tokens-per-sample", eval.DefaultTokens, "tokens sampled after BOS per sequence (capped to the model's context)")
	fs.Uint64Var(&o.Seed, "seed", eval.DefaultSeed, "seed of the sampled evaluation text")
	fs.StringVar(&o.TokensFile, "tokens", "", "score this token file instead of sampled text (one sequence of token ids per line, or a JSON array of arrays)")
	fs.StringVar(&o.ModelConfig, "model-config", "", "the model's Hugging Face config.json (default: config.json beside ORIGINAL, else beside CANDIDATE)")
	fs.StringVar(&o.MaxKLFlag, "max-kl", "", "quality gate: exit 5 when the mean KL(original ‖ candidate) exceeds this many nats")
	fs.IntVar(&o.Layers, "layers", 0, "decode at most N progressive layers per tensor of an archive CANDIDATE (0: all)")
	fs.BoolVar(&o.AllowPartial, "allow-partial", false, "evaluate a partially downloaded archive CANDIDATE with the layers it holds completely")
	fs.StringVar(&o.MaxMemory, "max-memory", "", "refuse to start when the estimated memory exceeds this (e.g. 8GB; default: the memory available now)")
	fs.Int(flagName(keyWorkers), 0, "worker goroutines (0: one per core); results do not depend on it")
	fs.BoolVar(&o.JSON, "json", false, "print the result as one JSON object on stdout")
	fs.BoolP(flagName(keyQuiet), "q", false, "no progress bar and no report (the exit code still gates)")
}

func (o *evalOptions) resolve(c *config) error {
	var err error
	if o.Quiet, o.Workers, err = c.quietAndWorkers(); err != nil {
		return err
	}
	switch {
	case o.Samples <= 0:
		return usagef("--samples must be ≥ 1, got %d", o.Samples)
	case o.TokensPer <= 0:
		return usagef("--tokens-per-sample must be ≥ 1, got %d", o.TokensPer)
	case o.Layers < 0:
		return usagef("--layers must be ≥ 0, got %d", o.Layers)
	}
	o.MaxKL = -1
	if o.MaxKLFlag != "" {
		v, err := strconv.ParseFloat(strings.TrimSpace(o.MaxKLFlag), 64)
		if err != nil || !(v >= 0) || math.IsInf(v, 1) {
			return usagef("--max-kl %q: want a number of nats ≥ 0", o.MaxKLFlag)
		}
		o.MaxKL = v
	}
	if o.MaxMemory != "" {
		if o.maxMemory, err = parseByteSize(o.MaxMemory); err != nil {
			return usagef("--max-memory %q: %v", o.MaxMemory, err)
		}
	}
	return nil
}

func newEvalCmd(a *app) *cobra.Command {
	var o evalOptions
	cmd := &cobra.Command{
		Use:   "eval ORIGINAL CANDIDATE",
		Short: "Measure how far a compressed model's predictions are from the original's (KL, top-1, perplexity)",
		Long: `Measure output quality, not weight error: run the original model and the
candidate (a .seedlm archive, also a partial one with --allow-partial, or a
decoded checkpoint) on the same text and compare their next-token
distributions. Reports KL(original ‖ candidate) in nats (mean, 95th
percentile, max over positions), top-1 agreement (how often both predict the
same next token) and the perplexity of both.

The text is sampled from the original: --samples sequences of
--tokens-per-sample tokens at temperature 1 from BOS, with --seed (defaults
16 × 128, seed 1; capped to the context length). Or --tokens FILE: one
sequence of token ids per line (or a JSON array of arrays), used as given.
Same inputs → same numbers, on every machine and worker count.

Runs Llama-family models (model_type llama, mistral, qwen2) described by the
Hugging Face config.json beside ORIGINAL (or --model-config). Archive tensors
are decoded and rounded to their source dtype, as decompress writes them.

--max-kl X makes it a quality gate: exit 5 when the mean KL exceeds X.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return withHint(usagef("eval: expected ORIGINAL and CANDIDATE, got %d argument(s)", len(args)), "usage: %s", cmd.UseLine())
			}
			return nil
		},
		RunE: a.configured(o.resolve, func(ctx context.Context, args []string) error {
			return runEval(ctx, &o, args, a.stdout, a.stderr)
		}),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// qualityGateError is a candidate whose KL exceeds --max-kl (exit 5).
type qualityGateError struct {
	kl, max float64
	// inJSON: the --json report (with "passed": false) is on stdout
	// already, so no second JSON object (the error's) follows it.
	inJSON bool
}

func (e *qualityGateError) jsonReported() bool { return e.inJSON }

func (e *qualityGateError) Error() string {
	return fmt.Sprintf("quality gate failed: mean KL(original ‖ candidate) is %.4g nats, above --max-kl %g", e.kl, e.max)
}

type evalReport struct {
	Original      string   `json:"original"`
	Candidate     string   `json:"candidate"`
	CandidateKind string   `json:"candidate_kind"` // "archive" or "checkpoint"
	Partial       bool     `json:"partial"`
	Arch          string   `json:"arch"`
	ModelConfig   string   `json:"model_config"`
	Text          string   `json:"text"`
	Notes         []string `json:"notes"`
	eval.Result
	MaxKL            *float64 `json:"max_kl,omitempty"`
	Passed           *bool    `json:"passed,omitempty"`
	WallSeconds      float64  `json:"wall_seconds"`
	SampleSeconds    float64  `json:"sample_seconds"`
	OriginalSeconds  float64  `json:"original_seconds"`
	CandidateSeconds float64  `json:"candidate_seconds"`
	EstimatedBytes   int64    `json:"estimated_bytes"`
	Workers          int      `json:"workers"`
	Kernel           string   `json:"kernel"`
}

// candidate is an opened CANDIDATE: its weights and how to release them.
type candidate struct {
	kind    string
	weights model.Weights
	infos   []checkpoint.TensorInfo
	partial bool
	close   func() error
}

func openCandidate(path string, o *evalOptions, stderr io.Writer) (*candidate, error) {
	if isArchiveFile(path) {
		a, err := openArchive(path, o.AllowPartial)
		if err != nil {
			return nil, err
		}
		warnMissing(stderr, path, a, "evaluating with the complete layers only")
		w := model.FromArchive(a, o.Layers)
		return &candidate{kind: "archive", weights: w, infos: w.Tensors(), partial: len(a.Missing()) > 0, close: a.Close}, nil
	}
	if o.Layers > 0 || o.AllowPartial {
		return nil, withHint(usagef("--layers and --allow-partial apply to an archive CANDIDATE; %s is not a .seedlm archive", path), "drop them, or name the archive")
	}
	src, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	return &candidate{kind: "checkpoint", weights: model.FromSource(src), infos: src.Tensors(), close: src.Close}, nil
}

// isArchiveFile: a .seedlm name, or a file starting with the archive magic.
func isArchiveFile(path string) bool {
	if strings.HasSuffix(strings.ToLower(path), ".seedlm") {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, len(archive.Magic))
	n, _ := io.ReadFull(f, head)
	return n == len(archive.Magic) && string(head) == archive.Magic
}

// compareTensorLists names the first tensor whose name or shape differs.
func compareTensorLists(orig, cand []checkpoint.TensorInfo, origPath, candPath string) error {
	by := make(map[string]checkpoint.TensorInfo, len(cand))
	for _, t := range cand {
		by[t.Name] = t
	}
	for _, t := range orig {
		c, ok := by[t.Name]
		if !ok {
			return withHint(fmt.Errorf("CANDIDATE %s has no tensor %q, which ORIGINAL %s has", candPath, t.Name, origPath),
				"compare a model with a compressed or decoded copy of itself")
		}
		if !slices.Equal(t.Shape, c.Shape) {
			return withHint(fmt.Errorf("tensor %q has shape %s in ORIGINAL %s but %s in CANDIDATE %s",
				t.Name, dtype.ShapeString(t.Shape), origPath, dtype.ShapeString(c.Shape), candPath),
				"compare a model with a compressed or decoded copy of itself")
		}
		delete(by, t.Name)
	}
	for _, t := range cand { // candidate order: the first extra one
		if _, extra := by[t.Name]; extra {
			return withHint(fmt.Errorf("CANDIDATE %s has tensor %q, which ORIGINAL %s lacks", candPath, t.Name, origPath),
				"compare a model with a compressed or decoded copy of itself")
		}
	}
	return nil
}

// evalConfig finds and reads the model's config.json.
func evalConfig(o *evalOptions, orig, cand string) (*model.Config, error) {
	path := o.ModelConfig
	if path == "" {
		var err error
		if path, err = model.FindConfig(orig); err != nil {
			p2, err2 := model.FindConfig(cand)
			if err2 != nil {
				return nil, withHint(fmt.Errorf("no model config: %w", err),
					"pass --model-config FILE: the original model's Hugging Face config.json (it names the architecture and sizes)")
			}
			path = p2
		}
	}
	c, err := model.LoadConfig(path)
	if err != nil {
		var ce *model.ConfigError
		if errors.As(err, &ce) && o.ModelConfig == "" {
			return nil, withHint(err, "seedlm read %s; pass --model-config FILE to use another", path)
		}
		return nil, err
	}
	return c, nil
}

func runEval(ctx context.Context, o *evalOptions, args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	origPath, candPath := args[0], args[1]
	if isArchiveFile(origPath) {
		return withHint(usagef("ORIGINAL %s is a .seedlm archive", origPath), "ORIGINAL is the uncompressed model (a checkpoint); the archive goes second")
	}
	cfg, err := evalConfig(o, origPath, candPath)
	if err != nil {
		return err
	}
	src, err := checkpoint.Open(origPath)
	if err != nil {
		return err
	}
	defer src.Close()
	usedOrig, err := model.CheckTensors(cfg, src.Tensors(), "ORIGINAL "+origPath)
	if err != nil {
		return err
	}
	cand, err := openCandidate(candPath, o, stderr)
	if err != nil {
		return err
	}
	defer cand.close()
	if err := compareTensorLists(src.Tensors(), cand.infos, origPath, candPath); err != nil {
		return err
	}
	usedCand, err := model.CheckTensors(cfg, cand.infos, "CANDIDATE "+candPath)
	if err != nil {
		return err
	}

	// The text: sampled (sizes known now) or read from a file.
	var text *eval.Text
	samples, perSample := o.Samples, o.TokensPer
	var capNote string
	if o.TokensFile != "" {
		if text, err = eval.ReadTokens(o.TokensFile, cfg); err != nil {
			return err
		}
	} else if perSample, capNote = eval.CapTokens(cfg, perSample); perSample <= 0 {
		return fmt.Errorf("%s: the context (%d positions) leaves no room to sample after BOS", cfg.Path, cfg.MaxPos)
	}
	scored := samples * perSample
	maxLen := perSample
	if text != nil {
		scored = text.Tokens()
		maxLen = 0
		for _, s := range text.Seqs {
			maxLen = max(maxLen, len(s))
		}
	}
	workers := workerCount(o.Workers)
	est := evalMemory(cfg, usedOrig, usedCand, text == nil, samples, maxLen, scored, workers)
	limit, limitFrom := o.maxMemory, "--max-memory"
	if limit == 0 {
		limit, limitFrom = availableMemory(), "available memory"
	}
	if limit > 0 && est > limit {
		return withHint(fmt.Errorf("evaluating %s needs about %s of memory (weights in their stored dtype, activations and the original's log-probabilities over %d positions × %d tokens of vocabulary); %s is %s",
			origPath, fmtBytes(est), scored, cfg.Vocab, limitFrom, fmtBytes(limit)),
			"score fewer positions (--samples, --tokens-per-sample), run on a machine with more memory, or raise --max-memory if the estimate is pessimistic")
	}

	bar := newProgress(stderr, !o.Quiet && !o.JSON, int64(3*scored), "eval", "tokens")
	defer bar.Done()
	var barAt int64
	phase := func(base int64, desc string) func(done, total int64) {
		bar.Describe(desc)
		return func(done, total int64) {
			if total <= 0 {
				return
			}
			at := base + done*int64(scored)/total
			if at > barAt {
				bar.Add(at - barAt)
				barAt = at
			}
		}
	}

	rep := &evalReport{Original: origPath, Candidate: candPath, CandidateKind: cand.kind, Partial: cand.partial,
		Arch: cfg.Arch, ModelConfig: cfg.Path, EstimatedBytes: est, Workers: workers, Kernel: model.KernelName(), Notes: []string{}}
	orig, err := model.Load(ctx, cfg, model.FromSource(src))
	if err != nil {
		return fmt.Errorf("ORIGINAL %s: %w", origPath, err)
	}
	orig.Workers = workers
	t0 := time.Now()
	if text == nil {
		if text, err = eval.Sample(ctx, orig, eval.SampleOptions{Samples: samples, Tokens: perSample, Seed: o.Seed, Progress: phase(0, "eval: sampling text")}); err != nil {
			return fmt.Errorf("ORIGINAL %s: %w", origPath, err)
		}
	}
	rep.SampleSeconds = time.Since(t0).Seconds()
	t0 = time.Now()
	ref, err := eval.NewReference(ctx, orig, text, phase(int64(scored), "eval: original"))
	if err != nil {
		return fmt.Errorf("ORIGINAL %s: %w", origPath, err)
	}
	rep.OriginalSeconds = time.Since(t0).Seconds()
	orig = nil // the candidate is loaded after the original is released
	src.Close()
	runtime.GC()

	t0 = time.Now()
	cm, err := model.Load(ctx, cfg, cand.weights)
	if err != nil {
		return fmt.Errorf("CANDIDATE %s: %w", candPath, err)
	}
	cm.Workers = workers
	res, err := ref.Compare(ctx, cm, phase(int64(2*scored), "eval: candidate"))
	if err != nil {
		return fmt.Errorf("CANDIDATE %s: %w", candPath, err)
	}
	rep.CandidateSeconds = time.Since(t0).Seconds()
	bar.Done()
	rep.Result = *res
	rep.Text = text.Source
	if capNote != "" {
		rep.Notes = append(rep.Notes, capNote)
	}
	rep.Notes = append(rep.Notes, text.Notes...)
	rep.WallSeconds = time.Since(start).Seconds()
	var gate error
	if o.MaxKL >= 0 {
		pass := res.KLMean <= o.MaxKL
		rep.MaxKL, rep.Passed = &o.MaxKL, &pass
		if !pass {
			gate = &qualityGateError{kl: res.KLMean, max: o.MaxKL, inJSON: o.JSON}
		}
	}
	switch {
	case o.JSON:
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	case !o.Quiet:
		printEval(stdout, rep)
	}
	return gate
}

func printEval(w io.Writer, r *evalReport) {
	what := r.CandidateKind
	if r.Partial {
		what = "partial archive"
	}
	fmt.Fprintf(w, "eval %s (%s) vs %s (%s)\n", r.Original, r.Arch, r.Candidate, what)
	fmt.Fprintf(w, "  text: %s\n", r.Text)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintf(w, "  KL(original ‖ candidate): mean %.4g, p95 %.4g, max %.4g nats over %s next-token distributions\n",
		r.KLMean, r.KLP95, r.KLMax, commas(int64(r.Tokens)))
	fmt.Fprintf(w, "  top-1 agreement: %.1f %%\n", 100*r.Top1)
	fmt.Fprintf(w, "  perplexity on the text: original %.4g, candidate %.4g\n", r.PPLOriginal, r.PPLCandidate)
	if r.MaxKL != nil {
		verdict := "passed"
		if !*r.Passed {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "  quality gate --max-kl %g: %s\n", *r.MaxKL, verdict)
	}
	fmt.Fprintf(w, "  %s wall (sampling %s, original %s, candidate %s; %d workers, %s kernel)\n", fmtSeconds(r.WallSeconds),
		fmtSeconds(r.SampleSeconds), fmtSeconds(r.OriginalSeconds), fmtSeconds(r.CandidateSeconds), r.Workers, r.Kernel)
}

// evalMemory estimates eval's peak memory: the original with the sampling
// decoder, then the candidate (after the original is released, plus one
// float32 copy of its largest tensor while an archive tensor is decoded),
// each with the activations of one batch and the reference log-probs.
func evalMemory(c *model.Config, orig, cand []checkpoint.TensorInfo, sampling bool, samples, maxLen, scored, workers int) int64 {
	rows := min(scored, eval.BatchTokens)
	act := c.ActivationBytes(rows, maxLen, workers)
	ref := eval.ReferenceBytes(scored, c.Vocab)
	p1 := model.WeightBytes(orig) + act + ref
	if sampling {
		p1 = max(p1, model.WeightBytes(orig)+c.DecoderBytes(samples, maxLen+1))
	}
	var largest int64
	for _, t := range cand {
		largest = max(largest, 4*t.NumElements())
	}
	p2 := model.WeightBytes(cand) + largest + act + ref
	return max(p1, p2) + 64<<20 // runtime and buffers
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

// availableMemory is what the system can give now: MemAvailable, and the
// cgroup limit less usage when one applies (containers); 0 when unknown.
func availableMemory() int64 {
	var best int64
	take := func(v int64) {
		if v > 0 && (best == 0 || v < best) {
			best = v
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			var kb int64
			if n, _ := fmt.Sscanf(line, "MemAvailable: %d kB", &kb); n == 1 {
				take(kb << 10)
			}
		}
	}
	readInt := func(p string) int64 {
		b, err := os.ReadFile(p)
		if err != nil {
			return 0
		}
		var v int64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &v); err != nil {
			return 0 // "max": no limit
		}
		return v
	}
	for _, d := range []struct{ limit, usage string }{
		{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
		{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"},
	} {
		if l := readInt(filepath.Clean(d.limit)); l > 0 && l < 1<<60 {
			take(l - readInt(d.usage))
		}
	}
	return best
}
