package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/dtype"
)

type inspectOptions struct {
	JSON         bool
	AllowPartial bool
}

func (o *inspectOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object on stdout")
	fs.BoolVar(&o.AllowPartial, "allow-partial", false, "show what a partially downloaded archive (cut after its base layers) holds, and list the missing chunks")
}

func newInspectCmd(a *app) *cobra.Command {
	var o inspectOptions
	cmd := &cobra.Command{
		Use:   "inspect ARCHIVE",
		Short: "Show per-tensor sizes, bits per weight, ratios, quality and codec settings",
		Long: `Show what an archive holds, per tensor and in total: stored bytes, bits per
weight, compression ratio against fp32 and against the source dtype, the
relative error and SNR after each number of progressive layers (measured at
compress time against the original weights), and the codec settings.
inspect reads the index only; run verify to check the payload hashes.
A truncated archive is an integrity failure (exit 3); with --allow-partial a
file cut after its base layers is shown with the layers it holds completely,
and the missing chunks are listed.`,
		Args: exactArgs("ARCHIVE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.Context(), &o, args, a.stdout, a.stderr)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

type inspectLayer struct {
	Params        string   `json:"codec"`
	BlockSize     int      `json:"block_size"`
	LatentDim     int      `json:"latent_dim"`
	SeedBits      int      `json:"seed_bits"`
	CoeffBits     int      `json:"coeff_bits"`
	ExpBits       int      `json:"exponent_bits"`
	ExpBias       int      `json:"exp_bias"`
	Bytes         int64    `json:"bytes"`
	BitsPerWeight float64  `json:"bits_per_weight"`
	RelErr        float64  `json:"rel_err"` // after decoding this layer and those before it
	SNRdB         *float64 `json:"snr_db"`  // null: exact
}

type inspectTensor struct {
	Name          string         `json:"name"`
	DType         string         `json:"dtype"`
	Shape         []int64        `json:"shape"`
	Shard         string         `json:"shard,omitempty"`
	Rule          string         `json:"rule"`
	Passthrough   bool           `json:"passthrough"`
	DuplicateOf   string         `json:"duplicate_of,omitempty"`
	Weights       int64          `json:"weights"`
	Bytes         int64          `json:"bytes"`
	BitsPerWeight float64        `json:"bits_per_weight"`
	RatioVsFP32   float64        `json:"ratio_vs_fp32"`
	RatioVsSource float64        `json:"ratio_vs_source"`
	Layers        []inspectLayer `json:"layers,omitempty"`
	OmittedLayers int            `json:"omitted_layers,omitempty"`
	// MissingLayers: layers the archive has but a partial file lacks
	// (--allow-partial); Layers lists only the complete ones.
	MissingLayers  int `json:"missing_layers,omitempty"`
	norm2, lastErr float64
}

type inspectTotals struct {
	Tensors            int        `json:"tensors"`
	CodedTensors       int        `json:"coded_tensors"`
	DuplicateTensors   int        `json:"duplicate_tensors"`
	Weights            int64      `json:"weights"`
	CodedWeights       int64      `json:"coded_weights"`
	FileBytes          int64      `json:"file_bytes"`
	PayloadBytes       int64      `json:"payload_bytes"`
	IndexBytes         int64      `json:"index_and_header_bytes"`
	SidecarBytes       int64      `json:"sidecar_bytes"`
	IncompleteBytes    int64      `json:"incomplete_chunk_bytes,omitempty"` // partial file: bytes of cut chunks
	SourceBytes        int64      `json:"source_bytes"`
	BitsPerWeight      float64    `json:"bits_per_weight"`
	CodedBitsPerWeight float64    `json:"coded_bits_per_weight"`
	RatioVsFP32        float64    `json:"ratio_vs_fp32"`
	RatioVsSource      float64    `json:"ratio_vs_source"`
	RelErr             []float64  `json:"rel_err"` // overall, after 1, 2, … layers
	SNRdB              []*float64 `json:"snr_db"`
}

// inspectPart is a part archive's part record (the tensors' positions
// left out).
type inspectPart struct {
	Index      int    `json:"index"`
	Count      int    `json:"count"`
	PlanSHA256 string `json:"plan_sha256"`
	// Tensors is the number of tensors of the whole (merged) archive.
	Tensors int `json:"tensors"`
}

// inspectFile is a sidecar file the archive holds.
type inspectFile struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

type inspectReport struct {
	Archive      string            `json:"archive"`
	SourceFormat string            `json:"source_format"`
	SourceFiles  []string          `json:"source_files,omitempty"`
	SourceIndex  string            `json:"source_index,omitempty"`
	SourceFolder bool              `json:"source_folder"`
	Files        []inspectFile     `json:"files"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Settings     map[string]string `json:"settings"` // {} when none
	// Part is set for a part archive (compress --part), which holds only
	// some of the model's tensors.
	Part *inspectPart `json:"part,omitempty"`
	// Quality is the output quality compress measured (the archive's
	// record): KL(original ‖ decoded) and top-1 agreement.
	Quality *archive.Quality `json:"quality,omitempty"`
	Tensors []inspectTensor  `json:"tensors"`
	Total   inspectTotals    `json:"total"`
	// Partial file (--allow-partial): the complete archive's size and the
	// chunks missing from this file.
	Partial       bool           `json:"partial,omitempty"`
	FullBytes     int64          `json:"full_bytes,omitempty"`
	MissingChunks []missingChunk `json:"missing_chunks,omitempty"`
}

func runInspect(_ context.Context, o *inspectOptions, args []string, stdout, _ io.Writer) error {
	path := args[0]
	a, err := openArchive(path, o.AllowPartial)
	if err != nil {
		return err
	}
	defer a.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	var in *inspection
	if len(a.Missing()) == 0 {
		in = newInspection(path, fi.Size(), a.Index(), nil)
	} else {
		in = newPartialInspection(path, a)
	}
	if o.JSON {
		return in.writeJSON(stdout)
	}
	return in.print(stdout)
}

// inspection is inspect's report: the totals, and a way to produce each
// tensor's row when it is printed. Rows are not kept: an index may hold a
// million tensors, and the report's memory stays that of the index.
type inspection struct {
	rep *inspectReport // Tensors left empty
	ix  *archive.Index
	// missing[i]: layers of tensor i a partial file lacks (nil: none).
	missing []int
}

// row is tensor i's line of the report.
func (in *inspection) row(i int) inspectTensor {
	e := &in.ix.Tensors[i]
	layers := e.Layers
	t := inspectTensor{Name: e.Name, DType: e.DType, Shape: e.Shape, Shard: e.Shard, Rule: e.Rule, Passthrough: e.Passthrough,
		Weights: e.NumElements(), OmittedLayers: e.OmittedLayers, norm2: e.Norm2, DuplicateOf: e.DuplicateOf}
	if e.DuplicateOf != "" {
		return t // no bytes of its own; it decodes to its original
	}
	if in.missing != nil && !e.Passthrough {
		t.MissingLayers = in.missing[i]
		layers = layers[:len(layers)-in.missing[i]]
	}
	n := t.Weights
	for _, l := range layers {
		t.Bytes += l.Chunk.Length
	}
	if e.Passthrough {
		t.Bytes = e.Bytes()
	}
	if t.Bytes > 0 {
		t.RatioVsFP32 = float64(4*n) / float64(t.Bytes)
		if sz, ok := dtype.Size(e.DType); ok {
			t.RatioVsSource = float64(int64(sz)*n) / float64(t.Bytes)
		} else if e.Passthrough {
			t.RatioVsSource = 1
		}
	}
	if n > 0 {
		t.BitsPerWeight = float64(t.Bytes) * 8 / float64(n)
	}
	for k, l := range layers {
		il := inspectLayer{Params: l.Params.String(), BlockSize: l.Params.BlockSize, LatentDim: l.Params.LatentDim,
			SeedBits: l.Params.SeedBits, CoeffBits: l.Params.CoeffBits, ExpBits: l.Params.ExpBits,
			ExpBias: l.ExpBias, Bytes: l.Chunk.Length, SNRdB: archive.SNRdB(e.Norm2, l.SqErr)}
		if n > 0 {
			il.BitsPerWeight = float64(l.Chunk.Length) * 8 / float64(n)
		}
		il.RelErr = e.RelErr(k)
		t.Layers = append(t.Layers, il)
	}
	return t
}

// newInspection computes the totals in one pass over the index.
func newInspection(path string, fileBytes int64, ix *archive.Index, missing []int) *inspection {
	h := ix.Header
	in := &inspection{ix: ix, missing: missing,
		rep: &inspectReport{Archive: path, SourceFormat: h.SourceFormat, SourceFiles: h.SourceFiles, SourceIndex: h.SourceIndex, SourceFolder: h.SourceFolder,
			Metadata: h.Metadata, Settings: settingsOrEmpty(h.Settings), Files: []inspectFile{}}}
	for _, f := range ix.Files {
		in.rep.Files = append(in.rep.Files, inspectFile{Name: f.Name, Bytes: f.Chunk.Length, SHA256: f.Chunk.SHA256})
	}
	if p := h.Part; p != nil {
		in.rep.Part = &inspectPart{Index: p.Index, Count: p.Count, PlanSHA256: p.PlanSHA256, Tensors: p.Tensors}
	}
	in.rep.Quality = h.Quality
	tot := &in.rep.Total
	tot.FileBytes = fileBytes
	tot.SourceBytes = h.SourceBytes
	maxL := 0
	var srcTensorBytes, codedBytes int64
	stored := func(i int) int { // layers the file holds
		n := len(ix.Tensors[i].Layers)
		if missing != nil {
			n -= missing[i]
		}
		return n
	}
	for i := range ix.Tensors {
		e := &ix.Tensors[i]
		t := in.row(i)
		if t.Bytes > 0 {
			if sz, ok := dtype.Size(e.DType); ok {
				srcTensorBytes += int64(sz) * t.Weights
			} else if e.Passthrough {
				srcTensorBytes += t.Bytes
			}
		}
		tot.Tensors++
		tot.Weights += t.Weights
		tot.PayloadBytes += t.Bytes
		if e.DuplicateOf != "" {
			tot.DuplicateTensors++
		} else if !e.Passthrough {
			tot.CodedTensors++
			tot.CodedWeights += t.Weights
			codedBytes += t.Bytes
			maxL = max(maxL, stored(i))
		}
	}
	for _, f := range ix.Files {
		tot.SidecarBytes += f.Chunk.Length
	}
	tot.IndexBytes = fileBytes - tot.PayloadBytes - tot.SidecarBytes
	if fileBytes > 0 {
		tot.RatioVsFP32 = float64(4*tot.Weights) / float64(fileBytes)
		src := h.SourceBytes
		if src == 0 || h.Part != nil {
			// A part holds some tensors of the source: compare with
			// those alone.
			src = srcTensorBytes
		}
		tot.RatioVsSource = float64(src) / float64(fileBytes)
	}
	if tot.Weights > 0 {
		tot.BitsPerWeight = float64(fileBytes) * 8 / float64(tot.Weights)
	}
	if tot.CodedWeights > 0 {
		tot.CodedBitsPerWeight = float64(codedBytes) * 8 / float64(tot.CodedWeights)
	}
	// Overall error after k layers: tensors with fewer layers contribute
	// their final error. The sums are archive's (the compress summary's
	// figures for the last layer, to the bit).
	for k := 0; k < maxL; k++ {
		tk := ix.TotalsWith(func(i int) int { return min(k+1, stored(i)) })
		tot.RelErr = append(tot.RelErr, tk.RelErr)
		tot.SNRdB = append(tot.SNRdB, tk.SNRdB())
	}
	return in
}

// newPartialInspection reports what a partial file holds: each coded
// tensor's complete layers (the rest counted as missing), and the chunks
// the file lacks.
func newPartialInspection(path string, a *archive.Archive) *inspection {
	ix := a.Index()
	missing := make([]int, len(ix.Tensors))
	var payload int64
	for i := range ix.Tensors {
		t := &ix.Tensors[i]
		if t.Passthrough || t.DuplicateOf != "" {
			payload += t.Bytes()
			continue
		}
		n := a.AvailableLayers(t.Name)
		missing[i] = len(t.Layers) - n
		payload += t.BytesUpTo(n - 1)
	}
	in := newInspection(path, a.Size(), ix, missing)
	rep := in.rep
	rep.Partial = true
	rep.FullBytes = a.FullSize()
	rep.MissingChunks = missingChunks(a)
	rep.Total.IndexBytes = archive.HeaderSize + a.IndexBytes()
	rep.Total.IncompleteBytes = a.Size() - payload - rep.Total.IndexBytes - rep.Total.SidecarBytes
	return in
}

// writeJSON prints the report as writeJSON would print it with every row
// in Tensors, producing the rows one at a time.
func (in *inspection) writeJSON(w io.Writer) error {
	rep := *in.rep
	rep.Tensors = []inspectTensor{}
	var head bytes.Buffer
	if err := writeJSON(&head, &rep); err != nil {
		return err
	}
	const empty = `"tensors": [],`
	i := bytes.Index(head.Bytes(), []byte(empty))
	if i < 0 {
		return fmt.Errorf("internal: no tensors in the inspect report")
	}
	bw := bufio.NewWriter(w)
	bw.Write(head.Bytes()[:i])
	bw.WriteString(`"tensors": [`)
	for k := range in.ix.Tensors {
		if k > 0 {
			bw.WriteString(",")
		}
		bw.WriteString("\n    ")
		var row bytes.Buffer
		e := json.NewEncoder(&row)
		e.SetIndent("    ", "  ")
		if err := e.Encode(in.row(k)); err != nil {
			return err
		}
		bw.Write(bytes.TrimSuffix(row.Bytes(), []byte("\n")))
	}
	if len(in.ix.Tensors) > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("],")
	bw.Write(head.Bytes()[i+len(empty):])
	return bw.Flush()
}

// print writes the text report. The table is aligned like text/tabwriter
// would align it (columns two spaces apart), but from a first pass that
// measures the columns, so rows are not held in memory.
func (in *inspection) print(out io.Writer) error {
	w := bufio.NewWriter(out)
	r := in.rep
	t := &r.Total
	folder := ""
	if r.SourceFolder {
		folder = " model folder"
	}
	fmt.Fprintf(w, "archive %s: %s on disk, source %s%s (%s", r.Archive, plural64(t.FileBytes, "byte", "bytes"), r.SourceFormat, folder, plural64(t.SourceBytes, "byte", "bytes"))
	if len(r.SourceFiles) > 1 {
		fmt.Fprintf(w, " in %d shards", len(r.SourceFiles))
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "settings: %s\n", describeSettings(r.Settings))
	if p := r.Part; p != nil {
		fmt.Fprintf(w, "part: %d of %d (numbered from 0), %d of the model's %d tensors, plan %.12s…; ratios vs source count this part's tensors; join the parts with seedlm merge\n",
			p.Index, p.Count, t.Tensors, p.Tensors, p.PlanSHA256)
	}
	if r.Partial {
		fmt.Fprintf(w, "partial file: %s of %s bytes; %s missing (listed below); figures are for the complete layers it holds\n",
			commas(t.FileBytes), commas(r.FullBytes), plural(len(r.MissingChunks), "chunk", "chunks"))
	}
	fmt.Fprintln(w)
	header := []string{"TENSOR", "DTYPE", "SHAPE", "CODEC", "BYTES", "BITS/W", "×FP32", "×SRC", "REL.ERR by layers", "SNR dB by layers", "RULE"}
	widths := make([]int, len(header))
	measure := func(cells []string) {
		for j, c := range cells[:len(cells)-1] {
			widths[j] = max(widths[j], utf8.RuneCountInString(c))
		}
	}
	measure(header)
	for i := range in.ix.Tensors {
		measure(tableRow(in.row(i)))
	}
	line := func(cells []string) {
		for j, c := range cells[:len(cells)-1] {
			w.WriteString(c)
			w.WriteString(strings.Repeat(" ", widths[j]-utf8.RuneCountInString(c)+2))
		}
		w.WriteString(cells[len(cells)-1])
		w.WriteByte('\n')
	}
	line(header)
	for i := range in.ix.Tensors {
		line(tableRow(in.row(i)))
	}
	fmt.Fprintln(w)
	if len(r.Files) > 0 {
		var fs []string
		var n int64
		for _, f := range r.Files {
			fs = append(fs, fmt.Sprintf("%s (%s)", f.Name, plural64(f.Bytes, "byte", "bytes")))
			n += f.Bytes
		}
		fmt.Fprintf(w, "files: %s stored byte for byte, %s: %s\n\n", plural(len(r.Files), "sidecar file", "sidecar files"), plural64(n, "byte", "bytes"), strings.Join(fs, ", "))
	}
	dups := ""
	if t.DuplicateTensors > 0 {
		dups = ", " + plural(t.DuplicateTensors, "duplicate", "duplicates") + " stored once"
	}
	fmt.Fprintf(w, "total: %s (%s coded%s), %s weights (%s coded)\n", plural(t.Tensors, "tensor", "tensors"), commas(int64(t.CodedTensors)), dups, commas(t.Weights), commas(t.CodedWeights))
	files := ""
	if len(r.Files) > 0 {
		files = fmt.Sprintf(" + %s sidecar files", commas(t.SidecarBytes))
	}
	if t.IncompleteBytes > 0 {
		fmt.Fprintf(w, "  bytes        %s on disk = %s tensor payload + %s header and index%s + %s of incomplete chunks\n",
			commas(t.FileBytes), commas(t.PayloadBytes), commas(t.IndexBytes), files, commas(t.IncompleteBytes))
	} else {
		fmt.Fprintf(w, "  bytes        %s on disk = %s tensor payload + %s header and index%s\n", commas(t.FileBytes), commas(t.PayloadBytes), commas(t.IndexBytes), files)
	}
	fmt.Fprintf(w, "  bits/weight  %.3f overall, %.3f in coded tensors\n", t.BitsPerWeight, t.CodedBitsPerWeight)
	fmt.Fprintf(w, "  ratio        %.2f× vs fp32, %.2f× vs source\n", t.RatioVsFP32, t.RatioVsSource)
	for k := range t.RelErr {
		fmt.Fprintf(w, "  quality      %s: relative error %.4f, SNR %s (coded tensors; weight error, not output KL)\n", plural(k+1, "layer", "layers"), t.RelErr[k], fmtDB(t.SNRdB[k]))
	}
	switch q := r.Quality; {
	case q.Pending():
		fmt.Fprintf(w, "  output       to be measured by merge (the plan evaluates the merged model on %s)\n", q.Text)
	case q != nil:
		what := "measured by compress with every layer"
		if r.Partial {
			what += "; this partial file holds fewer"
		}
		fmt.Fprintf(w, "  output       KL(original ‖ decoded) mean %.4g, p95 %.4g, max %.4g nats; top-1 agreement %.4g %%; perplexity %.4g → %.4g\n",
			*q.KLMean, *q.KLP95, *q.KLMax, 100**q.Top1, *q.PPLOriginal, *q.PPLCandidate)
		fmt.Fprintf(w, "               (output quality, %s, over %s next-token distributions of %s)\n", what, commas(int64(q.Tokens)), q.Text)
	}
	if r.Partial {
		fmt.Fprintf(w, "\nmissing chunks (%d):\n", len(r.MissingChunks))
		for _, m := range r.MissingChunks {
			state := "missing"
			if m.Have > 0 {
				state = fmt.Sprintf("incomplete, %s of %s bytes", commas(m.Have), commas(m.Length))
			}
			fmt.Fprintf(w, "  tensor %s, chunk %q at offset %d (%s)\n", m.Tensor, m.Chunk, m.Offset, state)
		}
	}
	return w.Flush()
}

// tableRow is a tensor's cells in the text table.
func tableRow(x inspectTensor) []string {
	codec, rel, snr := "exact", "0", "exact"
	if x.DuplicateOf != "" {
		return []string{x.Name, x.DType, shapeString(x.Shape), "= " + x.DuplicateOf, "0", "-", "-", "-", "as its original", "", x.Rule}
	}
	if !x.Passthrough {
		var cs, rs, ss []string
		for _, l := range x.Layers {
			cs = append(cs, fmt.Sprintf("%s bias%+d", l.Params, l.ExpBias))
			rs = append(rs, fmt.Sprintf("%.4f", l.RelErr))
			ss = append(ss, strings.TrimSuffix(fmtDB(l.SNRdB), " dB"))
		}
		codec, rel, snr = strings.Join(cs, " + "), strings.Join(rs, " / "), strings.Join(ss, " / ")
		if x.OmittedLayers > 0 {
			codec += fmt.Sprintf(" (+%d layers omitted)", x.OmittedLayers)
		}
		if x.MissingLayers > 0 {
			codec += fmt.Sprintf(" (+%d missing)", x.MissingLayers)
		}
	}
	return []string{x.Name, x.DType, shapeString(x.Shape), codec, commas(x.Bytes), fmt.Sprintf("%.3f", x.BitsPerWeight),
		fmt.Sprintf("%.2f", x.RatioVsFP32), fmt.Sprintf("%.2f", x.RatioVsSource), rel, snr, x.Rule}
}
