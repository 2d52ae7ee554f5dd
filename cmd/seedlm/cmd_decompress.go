package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/dtype"
)

// decompressOptions are decompress's resolved settings.
type decompressOptions struct {
	Output string
	Layers int
	DType  string // "" = the source's
	Force  bool
	Quiet  bool
	JSON   bool
	// AllowPartial decodes a file cut after its base layers with the
	// layers it holds completely.
	AllowPartial bool

	// afterTensor, when set, is called after each tensor is written.
	afterTensor func(i int)
}

func (o *decompressOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Output, "output", "o", "", "file (or folder, for a model compressed from its folder or a sharded model) to write; - writes a single-file model to standard output (default: ARCHIVE without .seedlm, plus .safetensors for a file)")
	fs.IntVar(&o.Layers, "layers", 0, "decode at most N progressive layers per tensor (0: all)")
	fs.String(flagName(keyDType), "source", "dtype of every float tensor: source, f32, f16 or bf16 (integer tensors, and float tensors with source, are written as stored; exactly stored tensors stay byte-exact)")
	fs.BoolVar(&o.Force, "force", false, "replace an existing output file (or folder of safetensors files); never the archive, never a link, device or other special file")
	fs.BoolP(flagName(keyQuiet), "q", false, "no progress bar and no summary")
	fs.BoolVar(&o.JSON, "json", false, "print the summary as one JSON object on stdout")
	fs.BoolVar(&o.AllowPartial, "allow-partial", false, "decode a partially downloaded archive (cut after its base layers) with the layers it holds completely; missing chunks are listed on stderr")
}

func (o *decompressOptions) resolve(c *config) error {
	var err error
	if o.Quiet, err = c.getBool(keyQuiet); err != nil {
		return err
	}
	if o.DType, err = parseDTypeFlag(c.getString(keyDType)); err != nil {
		return err
	}
	if o.Layers < 0 {
		return usagef("--layers must be ≥ 0, got %d", o.Layers)
	}
	return nil
}

func newDecompressCmd(a *app) *cobra.Command {
	var o decompressOptions
	cmd := &cobra.Command{
		Use:   "decompress ARCHIVE",
		Short: "Rebuild a safetensors checkpoint from a .seedlm archive",
		Long: `Rebuild a safetensors checkpoint from a .seedlm archive: same tensor names,
shapes, dtypes and metadata. Every hash is verified before anything is written.
Coded tensors are decoded (lossy, as inspect reports) and rounded to the
requested dtype (round to nearest even); exactly stored tensors come back
byte for byte, unless --dtype converts them (every float tensor gets the
requested dtype). Values beyond the range of the dtype (e.g. above 65504 for
f16) become ±Inf and are counted in a warning. A sharded source comes back as
a folder with the same shards and index. -o - writes a single-file model to
standard output (the summary then goes to stderr).

Memory stays bounded whatever the tensor sizes: tensors are decoded and
written in slices of about a million weights. The output's size is checked
against the free space of its folder before anything is written.

--layers N decodes the base layer and N−1 enhancement layers of each tensor
(fewer where a tensor has fewer). A truncated archive is an integrity failure
(exit 3); with --allow-partial a file cut anywhere after its base layers (an
interrupted download of a progressive archive) is decoded with the layers it
holds completely, and the missing chunks are listed on stderr.`,
		Args: exactArgs("ARCHIVE"),
		RunE: a.configured(o.resolve, func(ctx context.Context, args []string) error {
			return runDecompress(ctx, &o, args, a.stdout, a.stderr)
		}),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

type decompressReport struct {
	Archive string `json:"archive"`
	Output  string `json:"output"`
	Sharded bool   `json:"sharded"`
	// Folder: the output is a model folder (a sharded model, or a model
	// compressed from its folder): WeightsFiles (and IndexFile) beside the
	// sidecar Files.
	Folder       bool     `json:"folder"`
	WeightsFiles []string `json:"weights_files,omitempty"`
	IndexFile    string   `json:"index_file,omitempty"`
	Files        []string `json:"files"`
	// ConvertedFrom: a PyTorch source's files, written as safetensors.
	ConvertedFrom []string `json:"converted_from,omitempty"`
	Tensors       int      `json:"tensors"`
	CodedTensors  int      `json:"coded_tensors"`
	// DuplicateTensors were stored once under another name (tied
	// weights) and written under both.
	DuplicateTensors int     `json:"duplicate_tensors"`
	Layers           int     `json:"layers"` // requested (0: all)
	DType            string  `json:"dtype"`
	OutputBytes      int64   `json:"output_bytes"`
	WallSeconds      float64 `json:"wall_seconds"`
	DecodeSeconds    float64 `json:"decode_seconds"`
	DecodeMBps       float64 `json:"decode_mb_per_s"` // float32 MB decoded per second
	// RelErr is the coded tensors' relative weight error with the layers
	// decoded (from the index, before dtype rounding).
	RelErr float64 `json:"rel_err"`
	// ConvertedTensors: exactly stored float tensors --dtype converted.
	ConvertedTensors int `json:"converted_tensors"`
	// FewerLayersTensors: coded tensors decoded with fewer layers than
	// they were compressed with, for any of the reasons below.
	// OmittedLayersTensors had layers left out by seedlm stream;
	// LimitedTensors had layers missing from a partial file; the rest were
	// limited by --layers.
	FewerLayersTensors   int `json:"fewer_layers_tensors"`
	OmittedLayersTensors int `json:"omitted_layers_tensors"`
	// Overflow: weights beyond the output dtype's range, written as ±Inf
	// (or, for F8_E4M3, saturated), per tensor.
	OverflowWeights int64            `json:"overflow_weights"`
	Overflow        []tensorOverflow `json:"overflow"`
	// Partial: the archive file is incomplete (--allow-partial); the
	// chunks it lacks are MissingChunks, and LimitedTensors coded tensors
	// were decoded with fewer layers than requested.
	Partial        bool           `json:"partial"`
	ArchiveBytes   int64          `json:"archive_bytes"`      // on disk
	FullBytes      int64          `json:"archive_full_bytes"` // complete archive
	MissingChunks  []missingChunk `json:"missing_chunks"`
	LimitedTensors int            `json:"limited_tensors"`
}

// tensorOverflow counts one tensor's weights beyond its output dtype.
type tensorOverflow struct {
	Tensor  string `json:"tensor"`
	DType   string `json:"dtype"`
	Weights int64  `json:"weights"`
	Of      int64  `json:"of"`
}

// missingChunk is one chunk a partial archive lacks.
type missingChunk struct {
	Tensor string `json:"tensor"`
	Chunk  string `json:"chunk"` // "layer K" (layer 0 is the base)
	Layer  int    `json:"layer"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Have   int64  `json:"have"` // bytes present (0: none)
}

func missingChunks(a *archive.Archive) []missingChunk {
	out := []missingChunk{}
	for _, m := range a.Missing() {
		out = append(out, missingChunk{Tensor: m.Tensor, Chunk: m.Name(), Layer: m.Layer, Offset: m.Offset, Length: m.Length, Have: m.Have})
	}
	return out
}

// warnMissing lists a partial archive's missing chunks on stderr.
func warnMissing(w io.Writer, path string, a *archive.Archive, what string) {
	ms := a.Missing()
	if len(ms) == 0 {
		return
	}
	fmt.Fprintf(w, "seedlm: warning: %s is a partial file (%s of %s bytes): %s missing; %s\n",
		path, commas(a.Size()), commas(a.FullSize()), plural(len(ms), "chunk", "chunks"), what)
	for _, m := range ms {
		state := "missing"
		if m.Have > 0 {
			state = fmt.Sprintf("incomplete, %s of %s bytes", commas(m.Have), commas(m.Length))
		}
		fmt.Fprintf(w, "seedlm: warning:   tensor %q, chunk %q (%s)\n", m.Tensor, m.Name(), state)
	}
}

func runDecompress(ctx context.Context, o *decompressOptions, args []string, stdout, stderr io.Writer) (err error) {
	start := time.Now()
	path := args[0]
	a, err := openArchive(path, o.AllowPartial)
	if err != nil {
		return err
	}
	defer a.Close()
	ix := a.Index()
	maxLayers := 0
	for _, t := range ix.Tensors {
		maxLayers = max(maxLayers, len(t.Layers))
	}
	if o.Layers > maxLayers && maxLayers > 0 {
		return withHint(usagef("--layers %d: %s has at most %s per tensor", o.Layers, path, plural(maxLayers, "layer", "layers")), "omit --layers to decode every layer")
	}
	h := ix.Header
	if h.Part != nil {
		return withHint(usagef("%s is %s, not a whole archive", path, partString(h.Part)),
			"join the parts first (seedlm merge PART.seedlm... -o MODEL.seedlm), then decompress the merged archive")
	}
	sharded := archive.Sharded(h.SourceFormat)
	folder := sharded || h.SourceFolder
	out := o.Output
	if out == "" {
		out = defaultDecompressName(path, folder)
	}
	var fileNames []string
	for _, f := range ix.Files {
		fileNames = append(fileNames, f.Name)
	}
	if err := checkDecompressOutput(out, path, folder, o.Force, fileNames); err != nil {
		return err
	}
	toStdout := out == stdoutName
	report := stdout
	if toStdout {
		report = stderr // stdout carries the model
	}

	// The output: every float tensor in the requested dtype.
	dtypes := make([]string, len(ix.Tensors))
	var total int64
	for i, t := range ix.Tensors {
		dtypes[i] = t.DType
		if o.DType != "" && (!t.Passthrough || dtype.CanFloat32(t.DType)) {
			dtypes[i] = o.DType
		}
		if !t.Passthrough && t.DuplicateOf == "" {
			total += t.NumElements()
		}
	}
	meta := h.Metadata
	torch := h.SourceFormat == archive.FormatTorch || h.SourceFormat == archive.FormatTorchSharded
	if len(meta) == 0 && torch {
		// transformers expects format=pt in safetensors metadata.
		meta = map[string]string{"format": "pt"}
	}
	layout := newOutputLayout(ix, dtypes, meta)
	if !toStdout {
		need, err := layout.size()
		if err != nil {
			return err
		}
		if err := checkFreeSpace(out, need); err != nil {
			return err
		}
		sweepTemps(out, stderr)
	}
	// Hashes first: nothing is written from a damaged archive.
	if err := a.Verify(ctx); err != nil {
		return err
	}
	warnMissing(stderr, path, a, "decoding with the complete layers only")

	w, err := createOutput(out, layout, o.Force, stdout)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()

	bar := newProgress(stderr, !o.Quiet && !o.JSON && !toStdout, total, "decoding", "weights")
	defer bar.Done()
	rep := &decompressReport{Archive: path, Output: out, Sharded: sharded, Folder: folder, Tensors: len(ix.Tensors), Layers: o.Layers, DType: orSource(o.DType),
		ArchiveBytes: a.Size(), FullBytes: a.FullSize(), MissingChunks: missingChunks(a), Overflow: []tensorOverflow{}, Files: []string{}}
	if folder {
		for _, sh := range layout.shards {
			rep.WeightsFiles = append(rep.WeightsFiles, sh.Name)
		}
		rep.IndexFile = layout.index
	}
	if torch {
		rep.ConvertedFrom = h.SourceFiles
	}
	rep.Partial = len(rep.MissingChunks) > 0
	var norm2, sqErr float64
	var decodeTime time.Duration
	var decodedBytes int64
	for i, t := range ix.Tensors {
		if err := ctx.Err(); err != nil {
			return err
		}
		dt := dtypes[i]
		var over int64
		if t.DuplicateOf != "" {
			rep.DuplicateTensors++
		}
		if t.Passthrough {
			err = w.WriteTensorFunc(t.Name, func(dst io.Writer) error {
				if dt == t.DType {
					return a.ReadPassthroughTo(t.Name, func(b []byte) error { _, err := dst.Write(b); return err })
				}
				var f32 []float32
				return a.ReadPassthroughTo(t.Name, func(b []byte) error {
					n, wide, err := convertRaw(t.DType, b, &f32)
					if err != nil {
						return fmt.Errorf("tensor %q: %w", t.Name, err)
					}
					over += wide
					data, err := dtype.FromFloat32(dt, f32[:n])
					if err != nil {
						return fmt.Errorf("tensor %q: %w", t.Name, err)
					}
					over += dtype.Overflowed(dt, f32[:n], data)
					_, err = dst.Write(data)
					return err
				})
			})
			if dt != t.DType {
				rep.ConvertedTensors++
			}
		} else {
			st := t // the entry holding the chunks (a duplicate's original)
			if t.DuplicateOf != "" {
				o, _ := a.Entry(t.DuplicateOf)
				st = *o
			}
			layers := len(st.Layers)
			if o.Layers > 0 {
				layers = min(o.Layers, layers)
			}
			if avail := a.AvailableLayers(t.Name); avail < layers {
				layers = avail // partial file: only complete layers
				if t.DuplicateOf == "" {
					rep.LimitedTensors++
				}
			}
			if t.DuplicateOf == "" {
				if layers < len(t.Layers)+t.OmittedLayers {
					rep.FewerLayersTensors++
				}
				if t.OmittedLayers > 0 {
					rep.OmittedLayersTensors++
				}
				norm2 += t.Norm2
				sqErr += t.SqErrAt(layers - 1)
			}
			err = w.WriteTensorFunc(t.Name, func(dst io.Writer) error {
				t0 := time.Now()
				return a.DecodeTensorTo(t.Name, layers, func(wts []float32) error {
					decodeTime += time.Since(t0)
					decodedBytes += 4 * int64(len(wts))
					data, err := dtype.FromFloat32(dt, wts)
					if err != nil {
						return fmt.Errorf("tensor %q: %w", t.Name, err)
					}
					over += dtype.Overflowed(dt, wts, data)
					if t.DuplicateOf == "" {
						bar.Add(int64(len(wts)))
					}
					_, err = dst.Write(data)
					t0 = time.Now()
					return err
				})
			})
			if t.DuplicateOf == "" {
				rep.CodedTensors++
			}
		}
		if err != nil {
			return err
		}
		if over > 0 {
			rep.OverflowWeights += over
			rep.Overflow = append(rep.Overflow, tensorOverflow{Tensor: t.Name, DType: dt, Weights: over, Of: t.NumElements()})
		}
		if o.afterTensor != nil {
			o.afterTensor(i)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if fw, ok := w.(shardedWriter); ok {
		for _, f := range layout.files {
			err := fw.WriteFile(f.Name, func(dst io.Writer) error {
				b, err := a.ReadFile(f.Name)
				if err == nil {
					_, err = dst.Write(b)
				}
				return err
			})
			if err != nil {
				return err
			}
			rep.Files = append(rep.Files, f.Name)
		}
	}
	bar.Done()
	if err := w.Commit(); err != nil {
		return err
	}
	committed = true
	if !toStdout {
		if rep.OutputBytes, err = diskSize(out); err != nil {
			return err
		}
	} else if rep.OutputBytes, err = layout.size(); err != nil {
		return err
	}
	warnOverflow(stderr, rep.Overflow)
	rep.RelErr = relErr(norm2, sqErr)
	rep.WallSeconds = time.Since(start).Seconds()
	rep.DecodeSeconds = decodeTime.Seconds()
	if rep.DecodeSeconds > 0 {
		rep.DecodeMBps = float64(decodedBytes) / 1e6 / rep.DecodeSeconds
	}
	if o.JSON {
		return writeJSON(report, rep)
	}
	if !o.Quiet {
		rep.print(report, o.Layers)
	}
	return nil
}

func (rep *decompressReport) print(w io.Writer, layers int) {
	exact := rep.Tensors - rep.CodedTensors - rep.DuplicateTensors
	fmt.Fprintf(w, "decompressed %s → %s\n", rep.Archive, rep.Output)
	conv := ""
	if rep.ConvertedTensors > 0 {
		conv = fmt.Sprintf(", %s of them converted to %s", commas(int64(rep.ConvertedTensors)), rep.DType)
	}
	dup := ""
	if rep.DuplicateTensors > 0 {
		dup = fmt.Sprintf("; %s written again from the tensor %s", plural(rep.DuplicateTensors, "tied duplicate", "tied duplicates"), map[bool]string{true: "it shares", false: "they share"}[rep.DuplicateTensors == 1])
	}
	fmt.Fprintf(w, "  %s (%s decoded, dtype %s; %s stored exactly%s%s), %s on disk\n",
		plural(rep.Tensors, "tensor", "tensors"), commas(int64(rep.CodedTensors)), rep.DType, commas(int64(exact)), conv, dup, plural64(rep.OutputBytes, "byte", "bytes"))
	if rep.Folder {
		what := strings.Join(rep.WeightsFiles, ", ")
		if len(rep.WeightsFiles) > 3 {
			what = fmt.Sprintf("%s … %s (%d shards)", rep.WeightsFiles[0], rep.WeightsFiles[len(rep.WeightsFiles)-1], len(rep.WeightsFiles))
		}
		if rep.IndexFile != "" {
			what += " and " + rep.IndexFile
		}
		files := "no sidecar files"
		if len(rep.Files) > 0 {
			files = plural(len(rep.Files), "sidecar file", "sidecar files") + " byte for byte (" + strings.Join(rep.Files, ", ") + ")"
		}
		fmt.Fprintf(w, "  folder       %s; %s\n", what, files)
	}
	if len(rep.ConvertedFrom) > 0 {
		fmt.Fprintf(w, "  format       the PyTorch source (%s) is written as safetensors\n", strings.Join(rep.ConvertedFrom, ", "))
	}
	if rep.CodedTensors > 0 {
		if rep.FewerLayersTensors == 0 {
			fmt.Fprintf(w, "  layers       every decoded tensor has all the layers it was compressed with\n")
		} else {
			var why []string
			if rep.OmittedLayersTensors > 0 {
				why = append(why, fmt.Sprintf("%d had layers left out by seedlm stream", rep.OmittedLayersTensors))
			}
			if rep.LimitedTensors > 0 {
				why = append(why, fmt.Sprintf("%d had layers missing from the partial file", rep.LimitedTensors))
			}
			if layers > 0 {
				why = append(why, fmt.Sprintf("--layers %d", layers))
			}
			fmt.Fprintf(w, "  layers       %d of %d decoded tensors have fewer layers than they were compressed with (%s)\n",
				rep.FewerLayersTensors, rep.CodedTensors, strings.Join(why, "; "))
		}
	}
	if rep.Partial {
		fmt.Fprintf(w, "  partial archive (%s of %s bytes): %s missing, %s decoded with fewer layers; relative error %.4f\n",
			commas(rep.ArchiveBytes), commas(rep.FullBytes), plural(len(rep.MissingChunks), "chunk", "chunks"), plural(rep.LimitedTensors, "tensor", "tensors"), rep.RelErr)
	}
	if rep.OverflowWeights > 0 {
		fmt.Fprintf(w, "  overflow     %s in %s beyond the %s range, written as ±Inf (see the warnings)\n", plural64(rep.OverflowWeights, "weight", "weights"), plural(len(rep.Overflow), "tensor", "tensors"), rep.DType)
	}
	fmt.Fprintf(w, "  time         %s wall, decode %.1f MB/s of float32 weights\n", fmtSeconds(rep.WallSeconds), rep.DecodeMBps)
}

func orSource(dt string) string {
	if dt == "" {
		return "source"
	}
	return dt
}

// relErr is √(sqErr/norm2), √sqErr when norm2 is 0 (archive.TensorEntry.RelErr's
// rule, over decompress's running sums).
func relErr(norm2, sqErr float64) float64 {
	if norm2 <= 0 {
		return math.Sqrt(sqErr)
	}
	return math.Sqrt(sqErr / norm2)
}

// defaultDecompressName strips .seedlm and adds .safetensors (a folder for
// a sharded source or a model folder).
func defaultDecompressName(path string, folder bool) string {
	base := strings.TrimSuffix(filepath.Clean(path), ".seedlm")
	if folder {
		return base
	}
	return base + ".safetensors"
}

// diskSize is the size of a file, or the total of a folder's files.
func diskSize(path string) (int64, error) {
	var total int64
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	return total, err
}
