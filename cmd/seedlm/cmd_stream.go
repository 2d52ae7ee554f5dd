package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/archive"
)

// streamOptions are stream's resolved settings.
type streamOptions struct {
	Output       string
	MaxBytesFlag string
	MaxBytes     int64 // parsed from MaxBytesFlag
	Force        bool
	JSON         bool
	Quiet        bool
	AllowPartial bool
}

func (o *streamOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Output, "output", "o", "", "archive to write (required; never the source)")
	fs.StringVar(&o.MaxBytesFlag, "max-bytes", "", "size budget for OUT on disk, header and index included: bytes (100000) or with a unit (100KB, 1.5MiB; K/M/G/T = 1000^n, Ki/Mi/Gi/Ti = 1024^n; B is bytes, a lowercase b (bits) is refused)")
	fs.BoolVar(&o.Force, "force", false, "replace an existing output (never the source archive)")
	fs.BoolVar(&o.JSON, "json", false, "print the summary as one JSON object on stdout")
	fs.BoolP(flagName(keyQuiet), "q", false, "no summary (errors and warnings are still printed)")
	fs.BoolVar(&o.AllowPartial, "allow-partial", false, "accept a partially downloaded source (cut after its base layers); only its complete layers are used")
}

func (o *streamOptions) resolve(c *config) error {
	var err error
	if o.Quiet, err = c.getBool(keyQuiet); err != nil {
		return err
	}
	if o.MaxBytesFlag == "" {
		return withHint(usagef("stream: --max-bytes is required"), "e.g. --max-bytes 100000, --max-bytes 100KB or --max-bytes 1.5MiB")
	}
	if o.MaxBytes, err = parseByteSize(o.MaxBytesFlag); err != nil {
		return withHint(usagef("--max-bytes %q: %v", o.MaxBytesFlag, err), "give bytes (100000) or a number with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 1.5MiB")
	}
	if o.Output == "" {
		return withHint(usagef("stream: -o OUT is required"), "name the archive to write, e.g. -o model-100KB.seedlm")
	}
	return nil
}

func newStreamCmd(a *app) *cobra.Command {
	var o streamOptions
	cmd := &cobra.Command{
		Use:   "stream ARCHIVE --max-bytes N -o OUT",
		Short: "Write the best archive that fits in N bytes (base layers plus the most useful enhancement layers)",
		Long: `Write to OUT the best archive from ARCHIVE that fits in --max-bytes N bytes
on disk (header and index included). Every base layer and exactly stored
tensor is kept; enhancement layers are added across tensors in order of
recorded error reduction per byte (a weak layer that unlocks a strong one is
judged together with it), as many as fit. A larger budget never gives a
higher error. OUT is a normal archive: verify, inspect and decompress it.

N is bytes (100000) or a number with a unit: B, K/KB, M/MB, G/GB, T/TB
(powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024), e.g. 100KB or
1.5MiB; a fractional result is rounded down.

If the base layers do not fit, nothing is written and stream exits 4 with
the smallest possible N. OUT is written to a temporary file and renamed into
place; an existing OUT is replaced only with --force (and only if it is a
regular file), and never the source. The source chunks OUT leaves out are
hash-checked too: a damaged source gets a warning even when OUT is intact.`,
		Args: exactArgs("ARCHIVE"),
		RunE: a.configured(o.resolve, func(ctx context.Context, args []string) error {
			return runStream(ctx, &o, args, a.stdout, a.stderr)
		}),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// streamTensor is one tensor's line in the stream report.
type streamTensor struct {
	Name        string   `json:"name"`
	Passthrough bool     `json:"passthrough"`
	DuplicateOf string   `json:"duplicate_of,omitempty"`
	Layers      int      `json:"layers"`        // in OUT
	Available   int      `json:"source_layers"` // complete in the source
	Bytes       int64    `json:"bytes"`         // chunk bytes in OUT
	RelErr      float64  `json:"rel_err"`
	SNRdB       *float64 `json:"snr_db"` // null: exact
}

// streamReport is stream's summary; --json prints it as is.
type streamReport struct {
	Archive         string `json:"archive"`
	Output          string `json:"output"`
	MaxBytes        int64  `json:"max_bytes"`
	OutputBytes     int64  `json:"output_bytes"` // on disk, ≤ max_bytes
	MinBytes        int64  `json:"min_bytes"`    // base layers and exact tensors only
	FullBytes       int64  `json:"full_bytes"`   // every available layer
	SourceBytes     int64  `json:"source_bytes"` // the source file on disk
	SourcePartial   bool   `json:"source_partial"`
	LayersIncluded  int    `json:"layers_included"` // coded tensors' layers in OUT
	LayersAvailable int    `json:"layers_available"`
	CodedTensors    int    `json:"coded_tensors"`
	// DuplicateTensors are stored once under another name; they have what
	// their original has.
	DuplicateTensors int            `json:"duplicate_tensors"`
	RelErrBase       float64        `json:"rel_err_base"`   // base layers only
	RelErrBefore     float64        `json:"rel_err_before"` // the source, every available layer
	RelErrAfter      float64        `json:"rel_err_after"`  // OUT
	SNRBaseDB        *float64       `json:"snr_base_db"`
	SNRBeforeDB      *float64       `json:"snr_before_db"`
	SNRAfterDB       *float64       `json:"snr_after_db"`
	Tensors          []streamTensor `json:"tensors"`
	WallSeconds      float64        `json:"wall_seconds"`
	// SourceDamage: chunks of the source that fail their hash check and
	// that the output leaves out (the output is intact).
	SourceDamage []damagedChunk `json:"source_damage"`
}

// damagedChunk is a source chunk that failed its hash check.
type damagedChunk struct {
	Tensor string `json:"tensor"`
	Chunk  string `json:"chunk"`
	Offset int64  `json:"offset"`
	Reason string `json:"reason"`
}

func runStream(ctx context.Context, o *streamOptions, args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	path := args[0]
	out := o.Output
	// Opening the source first gives the CLI's integrity errors and hints
	// (a truncated source names --allow-partial).
	src, err := openArchive(path, o.AllowPartial)
	if err != nil {
		return err
	}
	srcSize := src.Size()
	partial := len(src.Missing()) > 0
	if partial {
		warnMissing(stderr, path, src, "streaming from the complete layers only")
	}
	src.Close()
	if err := checkStreamOutput(out, path, o.Force); err != nil {
		return err
	}
	sweepTemps(out, stderr)

	sr, err := archive.StreamWith(ctx, path, out, o.MaxBytes, archive.StreamOptions{Overwrite: o.Force, AllowPartial: o.AllowPartial})
	if be, ok := budgetError(err); ok {
		return &budgetTooSmall{path: path, maxBytes: o.MaxBytes, flag: o.MaxBytesFlag, minBytes: be.MinBytes, sourceBytes: srcSize}
	}
	if err != nil {
		return err
	}
	damage := []damagedChunk{}
	for _, ie := range sr.SourceDamage {
		damage = append(damage, damagedChunk{Tensor: ie.Tensor, Chunk: ie.Chunk, Offset: ie.Offset, Reason: ie.Reason})
		fmt.Fprintf(stderr, "seedlm: warning: the source %s is damaged: tensor %q, chunk %q at offset %d: %s\n", path, ie.Tensor, ie.Chunk, ie.Offset, ie.Reason)
	}
	if len(damage) > 0 {
		fmt.Fprintf(stderr, "seedlm: warning: %s leaves out the damaged chunk(s) and is intact (every chunk it holds was checked); restore the source from a good copy\n", out)
	}

	// Per-tensor figures from the written archive's index.
	a, err := openArchive(out, false)
	if err != nil {
		return fmt.Errorf("re-reading %s: %w", out, err)
	}
	defer a.Close()
	rep := &streamReport{Archive: path, Output: out, MaxBytes: o.MaxBytes, OutputBytes: a.Size(), SourceDamage: damage,
		MinBytes: sr.MinBytes, FullBytes: sr.FullBytes, SourceBytes: srcSize, SourcePartial: partial,
		LayersIncluded: sr.LayersIncluded, LayersAvailable: sr.LayersAvailable,
		RelErrBefore: sr.RelErrBefore, RelErrAfter: sr.RelErrAfter,
		SNRBeforeDB: archive.SNRdB(sr.Norm2, sr.SqErrBefore), SNRAfterDB: archive.SNRdB(sr.Norm2, sr.SqErrAfter)}
	avail := map[string]int{}
	for _, t := range sr.Tensors {
		avail[t.Name] = t.SourceLayers
	}
	for i := range a.Index().Tensors {
		t := &a.Index().Tensors[i]
		st := streamTensor{Name: t.Name, Passthrough: t.Passthrough, DuplicateOf: t.DuplicateOf, Layers: 1, Available: avail[t.Name], Bytes: t.Bytes()}
		switch {
		case t.DuplicateOf != "":
			rep.DuplicateTensors++
		case !t.Passthrough:
			rep.CodedTensors++
			st.Layers = len(t.Layers)
			st.RelErr = t.RelErr(len(t.Layers) - 1)
			st.SNRdB = archive.SNRdB(t.Norm2, t.SqErrAt(len(t.Layers)-1))
		}
		rep.Tensors = append(rep.Tensors, st)
	}
	base := a.Index().TotalsWith(func(int) int { return 1 })
	rep.RelErrBase, rep.SNRBaseDB = base.RelErr, base.SNRdB()
	rep.WallSeconds = time.Since(start).Seconds()
	if o.JSON {
		return writeJSON(stdout, rep)
	}
	if !o.Quiet {
		rep.print(stdout)
	}
	return nil
}

func (r *streamReport) print(w io.Writer) {
	fmt.Fprintf(w, "streamed %s → %s\n", r.Archive, r.Output)
	fmt.Fprintf(w, "  bytes        %s written of a %s-byte budget (%.1f%%)\n", commas(r.OutputBytes), commas(r.MaxBytes), 100*float64(r.OutputBytes)/float64(r.MaxBytes))
	src := "source"
	if r.SourcePartial {
		src = "complete layers of the partial source"
	}
	fmt.Fprintf(w, "  range        %s bytes minimum (base layers and exact tensors) … %s bytes with every layer (%s: %s bytes on disk)\n",
		commas(r.MinBytes), commas(r.FullBytes), src, commas(r.SourceBytes))
	fmt.Fprintf(w, "  layers       %d of %d in %d coded tensors (%s)\n", r.LayersIncluded, r.LayersAvailable, r.CodedTensors, r.layerHistogram())
	fmt.Fprintf(w, "  quality      relative error %.4f, SNR %s (before: %.4f, %s with every layer; base layers only: %.4f, %s)\n",
		r.RelErrAfter, fmtDB(r.SNRAfterDB), r.RelErrBefore, fmtDB(r.SNRBeforeDB), r.RelErrBase, fmtDB(r.SNRBaseDB))
	fmt.Fprintf(w, "  time         %s wall\n", fmtSeconds(r.WallSeconds))
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENSOR\tLAYERS\tBYTES\tREL.ERR\tSNR dB")
	for _, t := range r.Tensors {
		if t.Passthrough || t.DuplicateOf != "" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%.4f\t%s\n", t.Name, t.Layers, t.Available, commas(t.Bytes), t.RelErr, strings.TrimSuffix(fmtDB(t.SNRdB), " dB"))
	}
	tw.Flush()
	if n := len(r.Tensors) - r.CodedTensors - r.DuplicateTensors; n > 0 {
		fmt.Fprintf(w, "(%s stored exactly, always included)\n", plural(n, "tensor", "tensors"))
	}
	if r.DuplicateTensors > 0 {
		its := "their"
		if r.DuplicateTensors == 1 {
			its = "its"
		}
		fmt.Fprintf(w, "(%s stored once as %s original, with %s layers)\n", plural(r.DuplicateTensors, "duplicate", "duplicates"), its, its)
	}
}

// layerHistogram is e.g. "3 layers: 4 tensors, 1 layer: 3 tensors".
func (r *streamReport) layerHistogram() string {
	count := map[int]int{}
	for _, t := range r.Tensors {
		if !t.Passthrough && t.DuplicateOf == "" {
			count[t.Layers]++
		}
	}
	var ks []int
	for k := range count {
		ks = append(ks, k)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ks)))
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s: %s", plural(k, "layer", "layers"), plural(count[k], "tensor", "tensors")))
	}
	if len(parts) == 0 {
		return "no coded tensors"
	}
	return strings.Join(parts, ", ")
}

// budgetTooSmall is stream's refusal of a budget below the smallest
// possible archive (exit ExitBudget).
type budgetTooSmall struct {
	path               string
	flag               string
	maxBytes, minBytes int64
	sourceBytes        int64
}

func (e *budgetTooSmall) Error() string {
	given := fmt.Sprintf("%s bytes", commas(e.maxBytes))
	if strings.ContainsAny(strings.ToLower(e.flag), "bkmgt.") {
		given = fmt.Sprintf("%s (%s bytes)", e.flag, commas(e.maxBytes))
	}
	return fmt.Sprintf("stream %s: a budget of %s is too small: the header, index, base layers and exactly stored tensors need at least %s bytes; nothing was written",
		e.path, given, commas(e.minBytes))
}

func (e *budgetTooSmall) Hint() string {
	return fmt.Sprintf("use --max-bytes %d or more (the source archive is %s bytes)", e.minBytes, commas(e.sourceBytes))
}

// checkStreamOutput refuses the source as OUT (even with --force) and an
// existing OUT without --force.
func checkStreamOutput(out, src string, force bool) error {
	return checkOutputFile(out, src, force, "the source archive",
		"choose another output with -o; stream never overwrites its source", "name the output file with -o")
}

// byteUnits are the suffixes --max-bytes accepts: the prefix in either
// case (K = k = 1000, Ki = 1024), B for bytes. A lowercase b means bits
// (60Kb is 7,500 bytes to a network engineer) and is refused, not guessed.
var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

// parseByteSize reads a byte count: a decimal number (digits, optionally a
// fraction; "," and "_" may group digits) and an optional unit from
// byteUnits, with optional space between. The result is rounded down to
// whole bytes and must be positive.
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.' || t[i] == ',' || t[i] == '_') {
		i++
	}
	num := strings.NewReplacer(",", "", "_", "").Replace(t[:i])
	given := strings.TrimSpace(t[i:])
	if strings.HasSuffix(given, "b") {
		// Say what the byte spellings would give.
		pre := strings.TrimRight(strings.TrimSuffix(given, "b"), "iI")
		alts := []string{t[:i] + pre + "B"}
		if pre != "" {
			alts = append(alts, t[:i]+pre+"iB")
		}
		var said []string
		for _, a := range alts {
			if n, err := parseByteSize(a); err == nil {
				said = append(said, fmt.Sprintf("%s (%s bytes)", a, commas(n)))
			}
		}
		return 0, fmt.Errorf("unit %q: a lowercase b means bits, not bytes; write %s", given, strings.Join(said, " or "))
	}
	unit := strings.ToLower(given)
	if num == "" || strings.Count(num, ".") > 1 || strings.HasPrefix(num, ".") || strings.HasSuffix(num, ".") {
		return 0, errors.New("not a number of bytes")
	}
	mult, ok := byteUnits[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", t[i:])
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errors.New("not a number of bytes")
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // ≥ 0: rounds down
	if !n.IsInt64() || n.Int64() > 1<<62 {
		return 0, errors.New("too large")
	}
	if n.Sign() <= 0 {
		return 0, errors.New("must be at least 1 byte")
	}
	return n.Int64(), nil
}
