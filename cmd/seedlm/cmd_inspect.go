package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

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
	Weights            int64      `json:"weights"`
	CodedWeights       int64      `json:"coded_weights"`
	FileBytes          int64      `json:"file_bytes"`
	PayloadBytes       int64      `json:"payload_bytes"`
	IndexBytes         int64      `json:"index_and_header_bytes"`
	IncompleteBytes    int64      `json:"incomplete_chunk_bytes,omitempty"` // partial file: bytes of cut chunks
	SourceBytes        int64      `json:"source_bytes"`
	BitsPerWeight      float64    `json:"bits_per_weight"`
	CodedBitsPerWeight float64    `json:"coded_bits_per_weight"`
	RatioVsFP32        float64    `json:"ratio_vs_fp32"`
	RatioVsSource      float64    `json:"ratio_vs_source"`
	RelErr             []float64  `json:"rel_err"` // overall, after 1, 2, … layers
	SNRdB              []*float64 `json:"snr_db"`
}

type inspectReport struct {
	Archive      string            `json:"archive"`
	SourceFormat string            `json:"source_format"`
	SourceFiles  []string          `json:"source_files,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Settings     map[string]string `json:"settings,omitempty"`
	Tensors      []inspectTensor   `json:"tensors"`
	Total        inspectTotals     `json:"total"`
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
	var rep *inspectReport
	if len(a.Missing()) == 0 {
		rep = buildInspect(path, fi.Size(), a.Index())
	} else {
		rep = buildPartialInspect(path, a)
	}
	if o.JSON {
		return writeJSON(stdout, rep)
	}
	rep.print(stdout)
	return nil
}

func buildInspect(path string, fileBytes int64, ix *archive.Index) *inspectReport {
	h := ix.Header
	rep := &inspectReport{Archive: path, SourceFormat: h.SourceFormat, SourceFiles: h.SourceFiles, Metadata: h.Metadata, Settings: h.Settings}
	tot := &rep.Total
	tot.FileBytes = fileBytes
	tot.SourceBytes = h.SourceBytes
	maxL := 0
	var srcTensorBytes int64
	for i := range ix.Tensors {
		e := &ix.Tensors[i]
		n := numElems(e.Shape)
		t := inspectTensor{Name: e.Name, DType: e.DType, Shape: e.Shape, Shard: e.Shard, Rule: e.Rule,
			Passthrough: e.Passthrough, Weights: n, Bytes: e.Bytes(), OmittedLayers: e.OmittedLayers, norm2: e.Norm2}
		if t.Bytes > 0 {
			t.RatioVsFP32 = float64(4*n) / float64(t.Bytes)
			if sz, ok := dtype.Size(e.DType); ok {
				t.RatioVsSource = float64(int64(sz)*n) / float64(t.Bytes)
				srcTensorBytes += int64(sz) * n
			} else if e.Passthrough {
				t.RatioVsSource = 1
				srcTensorBytes += t.Bytes
			}
		}
		if n > 0 {
			t.BitsPerWeight = float64(t.Bytes) * 8 / float64(n)
		}
		for _, l := range e.Layers {
			il := inspectLayer{Params: l.Params.String(), BlockSize: l.Params.BlockSize, LatentDim: l.Params.LatentDim,
				SeedBits: l.Params.SeedBits, CoeffBits: l.Params.CoeffBits, ExpBits: l.Params.ExpBits,
				ExpBias: l.ExpBias, Bytes: l.Chunk.Length, SNRdB: snrDB(e.Norm2, l.SqErr)}
			if n > 0 {
				il.BitsPerWeight = float64(l.Chunk.Length) * 8 / float64(n)
			}
			il.RelErr = relErr(e.Norm2, l.SqErr)
			t.Layers = append(t.Layers, il)
		}
		tot.Tensors++
		tot.Weights += n
		tot.PayloadBytes += t.Bytes
		if !e.Passthrough {
			tot.CodedTensors++
			tot.CodedWeights += n
			maxL = max(maxL, len(e.Layers))
		}
		rep.Tensors = append(rep.Tensors, t)
	}
	tot.IndexBytes = fileBytes - tot.PayloadBytes
	if fileBytes > 0 {
		tot.RatioVsFP32 = float64(4*tot.Weights) / float64(fileBytes)
		src := h.SourceBytes
		if src == 0 {
			src = srcTensorBytes
		}
		tot.RatioVsSource = float64(src) / float64(fileBytes)
	}
	if tot.Weights > 0 {
		tot.BitsPerWeight = float64(fileBytes) * 8 / float64(tot.Weights)
	}
	var codedBytes int64
	for _, t := range rep.Tensors {
		if !t.Passthrough {
			codedBytes += t.Bytes
		}
	}
	if tot.CodedWeights > 0 {
		tot.CodedBitsPerWeight = float64(codedBytes) * 8 / float64(tot.CodedWeights)
	}
	// Overall error after k layers: tensors with fewer layers contribute
	// their final error.
	for k := 0; k < maxL; k++ {
		var norm, se float64
		for i := range ix.Tensors {
			e := &ix.Tensors[i]
			if e.Passthrough || len(e.Layers) == 0 {
				continue
			}
			norm += e.Norm2
			se += e.Layers[min(k, len(e.Layers)-1)].SqErr
		}
		tot.RelErr = append(tot.RelErr, relErr(norm, se))
		tot.SNRdB = append(tot.SNRdB, snrDB(norm, se))
	}
	return rep
}

// buildPartialInspect reports what a partial file holds: each coded
// tensor's complete layers (the rest counted as missing), and the chunks
// the file lacks.
func buildPartialInspect(path string, a *archive.Archive) *inspectReport {
	src := a.Index()
	ix := &archive.Index{Header: src.Header, Tensors: make([]archive.TensorEntry, len(src.Tensors))}
	missing := make([]int, len(src.Tensors))
	var payload int64
	for i, t := range src.Tensors {
		if !t.Passthrough {
			n := a.AvailableLayers(t.Name)
			missing[i] = len(t.Layers) - n
			t.Layers = t.Layers[:n:n]
		}
		ix.Tensors[i] = t
		payload += t.Bytes()
	}
	rep := buildInspect(path, a.Size(), ix)
	for i := range rep.Tensors {
		rep.Tensors[i].MissingLayers = missing[i]
	}
	rep.Partial = true
	rep.FullBytes = a.FullSize()
	rep.MissingChunks = missingChunks(a)
	rep.Total.IndexBytes = archive.HeaderSize + a.IndexBytes()
	rep.Total.IncompleteBytes = a.Size() - payload - rep.Total.IndexBytes
	return rep
}

func relErr(norm2, sqErr float64) float64 {
	if norm2 <= 0 {
		return math.Sqrt(sqErr)
	}
	return math.Sqrt(sqErr / norm2)
}

func (r *inspectReport) print(w io.Writer) {
	t := &r.Total
	fmt.Fprintf(w, "archive %s: %s bytes on disk, source %s (%s bytes", r.Archive, commas(t.FileBytes), r.SourceFormat, commas(t.SourceBytes))
	if len(r.SourceFiles) > 1 {
		fmt.Fprintf(w, " in %d shards", len(r.SourceFiles))
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "settings: %s\n", describeSettings(r.Settings))
	if r.Partial {
		fmt.Fprintf(w, "partial file: %s of %s bytes; %d chunk(s) missing (listed below); figures are for the complete layers it holds\n",
			commas(t.FileBytes), commas(r.FullBytes), len(r.MissingChunks))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENSOR\tDTYPE\tSHAPE\tCODEC\tBYTES\tBITS/W\t×FP32\t×SRC\tREL.ERR by layers\tSNR dB by layers\tRULE")
	for _, x := range r.Tensors {
		codec, rel, snr := "exact", "0", "exact"
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3f\t%.2f\t%.2f\t%s\t%s\t%s\n",
			x.Name, x.DType, shapeString(x.Shape), codec, commas(x.Bytes), x.BitsPerWeight, x.RatioVsFP32, x.RatioVsSource, rel, snr, x.Rule)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "total: %d tensors (%d coded), %s weights (%s coded)\n", t.Tensors, t.CodedTensors, commas(t.Weights), commas(t.CodedWeights))
	if t.IncompleteBytes > 0 {
		fmt.Fprintf(w, "  bytes        %s on disk = %s payload + %s header and index + %s of incomplete chunks\n",
			commas(t.FileBytes), commas(t.PayloadBytes), commas(t.IndexBytes), commas(t.IncompleteBytes))
	} else {
		fmt.Fprintf(w, "  bytes        %s on disk = %s payload + %s header and index\n", commas(t.FileBytes), commas(t.PayloadBytes), commas(t.IndexBytes))
	}
	fmt.Fprintf(w, "  bits/weight  %.3f overall, %.3f in coded tensors\n", t.BitsPerWeight, t.CodedBitsPerWeight)
	fmt.Fprintf(w, "  ratio        %.2f× vs fp32, %.2f× vs source\n", t.RatioVsFP32, t.RatioVsSource)
	for k := range t.RelErr {
		fmt.Fprintf(w, "  quality      %d layer(s): relative error %.4f, SNR %s (coded tensors, vs original weights)\n", k+1, t.RelErr[k], fmtDB(t.SNRdB[k]))
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
}
