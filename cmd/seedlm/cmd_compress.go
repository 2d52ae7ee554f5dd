package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
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
	Settings planSettings

	// afterTensor, when set, is called after each tensor is added to the
	// archive (tests use it to cancel mid-run).
	afterTensor func(i int)
	// onBlocks, when set, is called from the encoder's workers as blocks
	// finish (tests use it to cancel inside an encode).
	onBlocks func()
}

// AddFlags registers compress's flags. Keys shared with the config file are
// named by flagName(key).
func (o *compressOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Output, "output", "o", "", "archive to write (default: INPUT with its extension replaced by .seedlm)")
	fs.BoolVar(&o.Force, "force", false, "replace an existing output archive (never the input)")
	fs.BoolVar(&o.JSON, "json", false, "print the summary (or the --dry-run plan) as one JSON object on stdout")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print each tensor's plan, expected bits per weight and estimated time; write nothing")
	fs.BoolP(flagName(keyQuiet), "q", false, "no progress bar and no summary (errors are still printed)")
	fs.Int(flagName(keyWorkers), 0, "encoder goroutines (0: one per CPU); never changes the output")
	fs.String(flagName(keyPreset), "", "named preset: "+strings.Join(presets.Names(), ", ")+" (see seedlm presets)")
	fs.Float64(flagName(keyLevel), 0, "compression level 0.1…0.9, higher is smaller (0.3 is the paper's 4-bit configuration)")
	fs.Float64(flagName(keyTargetBPW), 0, "size target for the whole archive in bits per weight (codes a sample of every tensor to choose settings)")
	fs.Float64(flagName(keyTargetRatio), 0, "size target as a ratio to fp32 (= 32 / target-bpw)")
	fs.Int(flagName(keyLayers), 0, "progressive layers per coded tensor: a base layer plus N−1 enhancement layers coding the residual (default: the plan's, 1 for the default)")
	fs.Int(flagName(keyMinElements), 0, "store tensors with fewer weights exactly (default 1024)")
	fs.Int(flagName(keyBlockSize), 0, "C: weights per block, overriding the plan for every coded tensor (paper: 8)")
	fs.Int(flagName(keyLatentDim), 0, "P: coefficients per block (paper: 3)")
	fs.Int(flagName(keySeedBits), 0, "K: LFSR seed bits; the search doubles per bit (paper: 16)")
	fs.Int(flagName(keyCoeffBits), 0, "B: bits per coefficient (paper: 4)")
	fs.Int(flagName(keyExpBits), 0, "E: bits of the shared block exponent (paper: 4)")
}

// resolve fills the options from flags > environment > config file.
func (o *compressOptions) resolve(c *config) error {
	var err error
	if o.Quiet, err = c.getBool(keyQuiet); err != nil {
		return err
	}
	if o.Workers, err = c.getInt(keyWorkers); err != nil {
		return err
	}
	if o.Workers < 0 {
		return usagef("workers (from %s) must be ≥ 0, got %d", c.origin(keyWorkers), o.Workers)
	}
	o.Settings, err = settingsFromConfig(c)
	return err
}

func newCompressCmd(a *app) *cobra.Command {
	var o compressOptions
	cmd := &cobra.Command{
		Use:   "compress INPUT",
		Short: "Compress a checkpoint into a .seedlm archive",
		Long: `Compress a checkpoint into a .seedlm archive.

INPUT is a .safetensors file, a sharded model's *.index.json or the folder that
holds it, or a PyTorch .bin/.pt/.pth. With no preset, level or codec flag every
float tensor of rank ≥ 2 and at least 1024 weights is coded with the paper's
4-bit configuration (C=8 P=3 K=16 B=4 E=4, 4.0 bits per weight), one layer;
everything else (norms, biases, integer tensors) is stored byte-exact.

The archive is written to a temporary file beside OUT and renamed into place
only when complete; an error or Ctrl-C leaves nothing at OUT.`,
		Args: exactArgs("INPUT"),
		RunE: a.configured(o.resolve, func(ctx context.Context, args []string) error {
			return runCompress(ctx, &o, args, a.stdout, a.stderr)
		}),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// tensorStat is one tensor's line in the compress report.
type tensorStat struct {
	Name        string     `json:"name"`
	DType       string     `json:"dtype"`
	Shape       []int64    `json:"shape"`
	Rule        string     `json:"rule"`
	Passthrough bool       `json:"passthrough"`
	Codec       string     `json:"codec,omitempty"`
	Weights     int64      `json:"weights"`
	StoredBytes int64      `json:"stored_bytes"`
	RelErr      []float64  `json:"rel_err,omitempty"` // after 1, 2, … layers
	SNRdB       []*float64 `json:"snr_db,omitempty"`  // null: exact
	Seconds     float64    `json:"seconds"`
	norm2       float64    // ‖w‖²
	sqErr       float64    // ‖w−ŵ‖² with every layer
}

// compressReport is compress's summary; --json prints it as is.
type compressReport struct {
	Input              string            `json:"input"`
	Output             string            `json:"output"`
	SourceFormat       string            `json:"source_format"`
	Tensors            int               `json:"tensors"`
	CodedTensors       int               `json:"coded_tensors"`
	PassthroughTensors int               `json:"passthrough_tensors"`
	Weights            int64             `json:"weights"`
	CodedWeights       int64             `json:"coded_weights"`
	InputBytes         int64             `json:"input_bytes"`
	OutputBytes        int64             `json:"output_bytes"`
	RatioVsInput       float64           `json:"ratio_vs_input"`
	RatioVsFP32        float64           `json:"ratio_vs_fp32"`
	BitsPerWeight      float64           `json:"bits_per_weight"`
	CodedBitsPerWeight float64           `json:"coded_bits_per_weight"`
	RelErr             float64           `json:"rel_err"`
	SNRMeanDB          *float64          `json:"snr_mean_db"`
	SNRWorstDB         *float64          `json:"snr_worst_db"`
	SNRWorstTensor     string            `json:"snr_worst_tensor,omitempty"`
	WallSeconds        float64           `json:"wall_seconds"`
	EncodeSeconds      float64           `json:"encode_seconds"`
	WeightsPerSecond   float64           `json:"weights_per_second"`
	Workers            int               `json:"workers"`
	Kernel             string            `json:"kernel"`
	Settings           map[string]string `json:"settings"`
	PerTensor          []tensorStat      `json:"per_tensor"`
}

func runCompress(ctx context.Context, o *compressOptions, args []string, stdout, stderr io.Writer) (err error) {
	start := time.Now()
	input := args[0]
	if _, err := os.Stat(input); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("input %s does not exist", input)
	}
	src, err := openSource(input)
	if err != nil {
		if strings.Contains(err.Error(), "hint:") {
			return err
		}
		return withHint(err, "INPUT must be a .safetensors file, a sharded model's *.index.json or its folder, or a PyTorch .bin/.pt/.pth")
	}
	defer src.Close()
	infos := src.Tensors()
	if len(infos) == 0 {
		return fmt.Errorf("%s: no tensors to compress", input)
	}
	workers := o.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	mbar := newProgress(stderr, !o.Quiet && !o.JSON, int64(len(infos)), "measuring")
	plans, warnings, err := makePlans(ctx, o.Settings, src, workers, func(done, total int, name string) {
		mbar.Describe(shortName(name))
		mbar.Add(1)
	})
	mbar.Done()
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "seedlm: warning: %s\n", w)
	}
	if o.DryRun {
		return dryRun(ctx, o, input, src, infos, plans, workers, stdout)
	}

	out := o.Output
	if out == "" {
		out = defaultArchiveName(input)
	}
	if err := checkOutput(out, input, o.Force); err != nil {
		return err
	}
	sweepTemps(out, stderr)
	srcBytes, err := inputBytes(src)
	if err != nil {
		return err
	}
	hdr := archive.Header{
		SourceFormat: src.Format(),
		SourceFiles:  sourceFiles(src),
		SourceBytes:  srcBytes,
		Metadata:     src.Metadata(),
		Settings:     o.Settings.record(),
	}
	if src.Format() == "safetensors-sharded" {
		// decompress writes the index back under the same name.
		if name := sourceIndexName(src.Path()); name != "" {
			hdr.Settings["source_index"] = name
		}
	}
	w, err := createArchive(out, hdr, o.Force, inputFiles(src), plannedTensors(infos, plans))
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			if aerr := w.Abort(); aerr != nil && err != nil {
				err = fmt.Errorf("%w (and removing the temporary file: %v)", err, aerr)
			}
		}
	}()

	var total int64
	for i, t := range infos {
		for range plans[i].Layers {
			total += t.NumElements()
		}
	}
	bar := newProgress(stderr, !o.Quiet && !o.JSON, total, "compress")
	defer bar.Done()

	rep := &compressReport{
		Input: input, Output: out, SourceFormat: src.Format(), Tensors: len(infos),
		InputBytes: srcBytes, Workers: workers, Kernel: encoder.KernelName(), Settings: hdr.Settings,
	}
	var encodeTime time.Duration
	var codedWeightLayers int64
	for i, t := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := plans[i]
		n := t.NumElements()
		st := tensorStat{Name: t.Name, DType: t.DType, Shape: t.Shape, Rule: p.Rule, Passthrough: p.Passthrough, Weights: n}
		rep.Weights += n
		t0 := time.Now()
		if p.Passthrough {
			raw, err := src.ReadRaw(t.Name)
			if err != nil {
				return err
			}
			if err := w.AddPassthrough(t, p.Rule, raw); err != nil {
				return err
			}
			rep.PassthroughTensors++
		} else {
			bar.Describe(shortName(t.Name))
			wts, err := src.ReadFloat32(t.Name)
			if err != nil {
				return err
			}
			tEnc := time.Now()
			res, err := encoder.Encode(ctx, t.Name, wts, p.Layers, encoder.Options{
				Workers:  workers,
				Progress: withHook(layerProgress(p.Layers, n, bar), o.onBlocks),
			})
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return err
				}
				return fmt.Errorf("%s: %w", input, err)
			}
			encodeTime += time.Since(tEnc)
			if err := w.AddCoded(t, p.Rule, res); err != nil {
				return err
			}
			codedWeightLayers += n * int64(len(p.Layers))
			rep.CodedTensors++
			rep.CodedWeights += n
			st.Codec = layersString(p.Layers)
			for k := range res.Layers {
				st.RelErr = append(st.RelErr, res.RelErr(k))
				st.SNRdB = append(st.SNRdB, snrDB(res.Norm2, res.SqErr[k]))
			}
			st.norm2, st.sqErr = res.Norm2, res.SqErr[len(res.SqErr)-1]
		}
		st.Seconds = time.Since(t0).Seconds()
		rep.PerTensor = append(rep.PerTensor, st)
		if o.afterTensor != nil {
			o.afterTensor(i)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	bar.Done()
	if err := w.Commit(); err != nil {
		return err
	}
	committed = true

	// Every number below is measured from what was written.
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	rep.OutputBytes = fi.Size()
	if err := fillStoredBytes(out, rep); err != nil {
		return err
	}
	rep.WallSeconds = time.Since(start).Seconds()
	rep.EncodeSeconds = encodeTime.Seconds()
	if rep.EncodeSeconds > 0 {
		rep.WeightsPerSecond = float64(codedWeightLayers) / rep.EncodeSeconds
	}
	rep.finish()
	if o.JSON {
		return writeJSON(stdout, rep)
	}
	if !o.Quiet {
		rep.print(stdout)
	}
	return nil
}

// layerProgress turns the encoder's "blocks done" callbacks into weights
// done. Layers run one after another, so the running block count tells
// which layer (and block size) a callback belongs to.
// withHook adds a test hook to a progress callback.
func withHook(f func(int), hook func()) func(int) {
	if hook == nil {
		return f
	}
	return func(b int) {
		if f != nil {
			f(b)
		}
		hook()
	}
}

func layerProgress(layers []encoder.Params, n int64, bar *progress) func(int) {
	if bar.bar == nil {
		return nil
	}
	var done atomic.Int64
	ends := make([]int64, len(layers))
	var acc int64
	for i, p := range layers {
		acc += int64(p.Blocks(int(n)))
		ends[i] = acc
	}
	return func(blocks int) {
		after := done.Add(int64(blocks))
		li := sort.Search(len(ends), func(i int) bool { return ends[i] >= after })
		li = min(li, len(layers)-1)
		bar.Add(int64(blocks) * int64(layers[li].BlockSize))
	}
}

// fillStoredBytes reads the committed archive's index for each tensor's
// stored bytes.
func fillStoredBytes(path string, rep *compressReport) error {
	a, err := openArchive(path, false)
	if err != nil {
		return fmt.Errorf("re-reading %s: %w", path, err)
	}
	defer a.Close()
	byName := map[string]*archive.TensorEntry{}
	ix := a.Index()
	for i := range ix.Tensors {
		byName[ix.Tensors[i].Name] = &ix.Tensors[i]
	}
	var codedBytes int64
	for i := range rep.PerTensor {
		st := &rep.PerTensor[i]
		if e := byName[st.Name]; e != nil {
			st.StoredBytes = entryBytes(e)
			if !e.Passthrough {
				codedBytes += st.StoredBytes
			}
		}
	}
	if rep.CodedWeights > 0 {
		rep.CodedBitsPerWeight = float64(codedBytes) * 8 / float64(rep.CodedWeights)
	}
	return nil
}

// entryBytes is a tensor's payload bytes in the archive.
func entryBytes(e *archive.TensorEntry) int64 {
	if e.Passthrough {
		if e.Raw != nil {
			return e.Raw.Length
		}
		return 0
	}
	var b int64
	for _, l := range e.Layers {
		b += l.Chunk.Length
	}
	return b
}

// finish computes the derived totals.
func (r *compressReport) finish() {
	if r.OutputBytes > 0 {
		r.RatioVsInput = float64(r.InputBytes) / float64(r.OutputBytes)
		r.RatioVsFP32 = float64(4*r.Weights) / float64(r.OutputBytes)
	}
	if r.Weights > 0 {
		r.BitsPerWeight = float64(r.OutputBytes) * 8 / float64(r.Weights)
	}
	var norm, se, sum float64
	var cnt int
	for _, st := range r.PerTensor {
		if st.Passthrough || len(st.RelErr) == 0 {
			continue
		}
		last := len(st.RelErr) - 1
		norm += st.norm2
		se += st.sqErr
		if s := st.SNRdB[last]; s != nil {
			sum += *s
			cnt++
			if r.SNRWorstDB == nil || *s < *r.SNRWorstDB {
				v := *s
				r.SNRWorstDB = &v
				r.SNRWorstTensor = st.Name
			}
		}
	}
	if norm > 0 {
		r.RelErr = math.Sqrt(se / norm)
	}
	if cnt > 0 {
		m := sum / float64(cnt)
		r.SNRMeanDB = &m
	}
}

func (r *compressReport) print(w io.Writer) {
	fmt.Fprintf(w, "compressed %s → %s\n", r.Input, r.Output)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  settings\t%s\n", describeSettings(r.Settings))
	fmt.Fprintf(tw, "  tensors\t%d (%d coded, %d stored exactly)\n", r.Tensors, r.CodedTensors, r.PassthroughTensors)
	fmt.Fprintf(tw, "  weights\t%s (%s coded)\n", commas(r.Weights), commas(r.CodedWeights))
	fmt.Fprintf(tw, "  input\t%s bytes (%s)\n", commas(r.InputBytes), r.SourceFormat)
	fmt.Fprintf(tw, "  output\t%s bytes on disk\n", commas(r.OutputBytes))
	fmt.Fprintf(tw, "  ratio\t%.2f× vs input, %.2f× vs fp32\n", r.RatioVsInput, r.RatioVsFP32)
	fmt.Fprintf(tw, "  bits/weight\t%.3f overall (file bits / all weights), %.3f in coded tensors\n", r.BitsPerWeight, r.CodedBitsPerWeight)
	if r.CodedTensors > 0 {
		fmt.Fprintf(tw, "  quality\tSNR mean %s, worst %s (%s); relative error %.4f\n",
			fmtDB(r.SNRMeanDB), fmtDB(r.SNRWorstDB), r.SNRWorstTensor, r.RelErr)
	}
	fmt.Fprintf(tw, "  time\t%s wall, %s weights/s encoding (%d workers, %s kernel)\n",
		fmtSeconds(r.WallSeconds), commas(int64(math.Round(r.WeightsPerSecond))), r.Workers, r.Kernel)
	tw.Flush()
}

// dryRun prints the plan without writing anything.
func dryRun(ctx context.Context, o *compressOptions, input string, src checkpoint.Source, infos []checkpoint.TensorInfo, plans []presets.TensorPlan, workers int, stdout io.Writer) error {
	type row struct {
		Name        string  `json:"name"`
		DType       string  `json:"dtype"`
		Shape       []int64 `json:"shape"`
		Weights     int64   `json:"weights"`
		Rule        string  `json:"rule"`
		Passthrough bool    `json:"passthrough"`
		Codec       string  `json:"codec,omitempty"`
		BitsPerW    float64 `json:"bits_per_weight"`
		Bytes       int64   `json:"expected_bytes"`
		Seconds     float64 `json:"estimated_seconds"`
	}
	rates := map[encoder.Params]float64{}
	var rows []row
	var totBytes, totW int64
	var totSec float64
	for i, t := range infos {
		p := plans[i]
		n := t.NumElements()
		r := row{Name: t.Name, DType: t.DType, Shape: t.Shape, Weights: n, Rule: p.Rule, Passthrough: p.Passthrough}
		if p.Passthrough {
			if sz, ok := dtypeSize(t.DType); ok {
				r.Bytes = n * int64(sz)
			} else if raw, err := src.ReadRaw(t.Name); err == nil {
				r.Bytes = int64(len(raw))
			}
			if n > 0 {
				r.BitsPerW = float64(r.Bytes) * 8 / float64(n)
			}
		} else {
			r.Codec = layersString(p.Layers)
			r.BitsPerW = nominalBPW(p.Layers)
			for _, lp := range p.Layers {
				r.Bytes += int64(lp.PayloadBytes(int(n)))
				rate, ok := rates[lp]
				if !ok {
					var err error
					if rate, err = measureRate(ctx, lp, workers); err != nil {
						return err
					}
					rates[lp] = rate
				}
				r.Seconds += float64(n) / rate
			}
		}
		totBytes += r.Bytes
		totW += n
		totSec += r.Seconds
		rows = append(rows, r)
	}
	if o.JSON {
		return writeJSON(stdout, map[string]any{
			"input": input, "dry_run": true, "workers": workers, "kernel": encoder.KernelName(),
			"settings": o.Settings.record(), "tensors": rows,
			"expected_payload_bytes": totBytes, "weights": totW, "estimated_seconds": totSec,
		})
	}
	fmt.Fprintf(stdout, "dry run: %s (%s), %d tensors; nothing written\n", input, src.Format(), len(infos))
	fmt.Fprintf(stdout, "settings: %s\n", describeSettings(o.Settings.record()))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENSOR\tDTYPE\tSHAPE\tRULE\tCODEC\tBITS/W\tEST. TIME")
	for _, r := range rows {
		est := "-"
		if !r.Passthrough {
			est = fmtSeconds(r.Seconds)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3f\t%s\n", r.Name, r.DType, shapeString(r.Shape), r.Rule, orDash(r.Codec), r.BitsPerW, est)
	}
	tw.Flush()
	bpw := 0.0
	if totW > 0 {
		bpw = float64(totBytes) * 8 / float64(totW)
	}
	fmt.Fprintf(stdout, "expected: ≈%s payload bytes (%.3f bits/weight, index not counted); estimated time ≈%s with %d workers (%s kernel, rate measured on random weights)\n",
		commas(totBytes), bpw, fmtSeconds(totSec), workers, encoder.KernelName())
	return nil
}

// measureRate times the encoder on random normal weights with p: one
// warm-up run (it builds the per-K tables), then growing runs until one
// takes at least 100 ms. Real weights often encode faster than random ones
// (the search prunes more), so this errs on the slow side.
func measureRate(ctx context.Context, p encoder.Params, workers int) (float64, error) {
	rng := rand.New(rand.NewSource(1))
	gen := func(blocks int) []float32 {
		w := make([]float32, blocks*p.BlockSize)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		return w
	}
	opt := encoder.Options{Workers: workers}
	if _, err := encoder.EncodeLayer(ctx, "calibration", gen(workers), p, opt); err != nil {
		return 0, err
	}
	blocks := 16 * workers
	for {
		w := gen(blocks)
		t0 := time.Now()
		if _, err := encoder.EncodeLayer(ctx, "calibration", w, p, opt); err != nil {
			return 0, err
		}
		d := time.Since(t0)
		if d >= 100*time.Millisecond || blocks >= 1<<16 {
			return float64(len(w)) / max(d.Seconds(), 1e-9), nil
		}
		blocks *= 4
	}
}

// defaultArchiveName is INPUT with its extension replaced by .seedlm (a
// folder gets .seedlm appended).
func defaultArchiveName(input string) string {
	in := filepath.Clean(input)
	if st, err := os.Stat(in); err == nil && st.IsDir() {
		return in + ".seedlm"
	}
	lower := strings.ToLower(in)
	for _, suf := range []string{".safetensors.index.json", ".index.json", ".safetensors", ".bin", ".pt", ".pth"} {
		if strings.HasSuffix(lower, suf) {
			return in[:len(in)-len(suf)] + ".seedlm"
		}
	}
	return in + ".seedlm"
}

// checkOutput refuses to write over the input, and over an existing file
// without --force.
func checkOutput(out, input string, force bool) error {
	return checkOutputPath(out, input, force, "the input", "choose another output with -o", "name the archive file with -o")
}

// checkOutputPath is the shared rule behind checkOutput and
// checkStreamOutput: never the input (whatever --force says), never a
// directory, an existing file only with --force. inputIs names the input in
// the error; sameHint and dirHint are the hints for those two cases.
func checkOutputPath(out, input string, force bool, inputIs, sameHint, dirHint string) error {
	return checkOutputFile(out, input, force, inputIs, sameHint, dirHint)
}

// sourceFiles lists the input's shard base names in order.
func sourceFiles(src checkpoint.Source) []string {
	var files []string
	seen := map[string]bool{}
	for _, t := range src.Tensors() {
		if t.Shard != "" && !seen[t.Shard] {
			seen[t.Shard] = true
			files = append(files, t.Shard)
		}
	}
	if len(files) == 0 {
		files = []string{filepath.Base(src.Path())}
	}
	return files
}

// inputBytes is the size on disk of every file of the input (for a sharded
// model: its shards and its index).
func inputBytes(src checkpoint.Source) (int64, error) {
	st, err := os.Stat(src.Path())
	if err != nil {
		return 0, err
	}
	if src.Format() != "safetensors-sharded" {
		if st.IsDir() {
			return 0, fmt.Errorf("%s: is a directory", src.Path())
		}
		return st.Size(), nil
	}
	dir := src.Path()
	if !st.IsDir() {
		dir = filepath.Dir(dir)
	}
	files := sourceFiles(src)
	if idx := sourceIndexName(src.Path()); idx != "" {
		files = append(files, idx)
	}
	var total int64
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			return 0, err
		}
		total += fi.Size()
	}
	return total, nil
}

// inputFiles are the paths compress must never overwrite.
func inputFiles(src checkpoint.Source) []string {
	files := []string{src.Path()}
	dir := src.Path()
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		dir = filepath.Dir(dir)
	}
	for _, t := range src.Tensors() {
		if t.Shard != "" {
			files = append(files, filepath.Join(dir, t.Shard))
		}
	}
	return files
}
