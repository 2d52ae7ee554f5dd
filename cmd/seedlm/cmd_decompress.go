package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
	fs.StringVarP(&o.Output, "output", "o", "", "file (or folder, for a sharded model) to write (default: ARCHIVE without .seedlm, plus .safetensors)")
	fs.IntVar(&o.Layers, "layers", 0, "decode at most N progressive layers per tensor (0: all)")
	fs.String(flagName(keyDType), "source", "dtype of coded tensors: source, f32, f16 or bf16 (exactly stored tensors are always byte-exact)")
	fs.BoolVar(&o.Force, "force", false, "replace an existing output (never the archive)")
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
byte for byte. A sharded source comes back as a folder with the same shards
and index.

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
	Archive       string  `json:"archive"`
	Output        string  `json:"output"`
	Sharded       bool    `json:"sharded"`
	Tensors       int     `json:"tensors"`
	CodedTensors  int     `json:"coded_tensors"`
	Layers        int     `json:"layers"` // requested (0: all)
	DType         string  `json:"dtype"`
	OutputBytes   int64   `json:"output_bytes"`
	WallSeconds   float64 `json:"wall_seconds"`
	DecodeSeconds float64 `json:"decode_seconds"`
	DecodeMBps    float64 `json:"decode_mb_per_s"` // float32 MB decoded per second
	// RelErr is the coded tensors' relative weight error with the layers
	// decoded (from the index, before dtype rounding).
	RelErr float64 `json:"rel_err"`
	// Partial: the archive file is incomplete (--allow-partial); the
	// chunks it lacks are MissingChunks, and LimitedTensors coded tensors
	// were decoded with fewer layers than requested.
	Partial        bool           `json:"partial"`
	ArchiveBytes   int64          `json:"archive_bytes"`      // on disk
	FullBytes      int64          `json:"archive_full_bytes"` // complete archive
	MissingChunks  []missingChunk `json:"missing_chunks"`
	LimitedTensors int            `json:"limited_tensors"`
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
	fmt.Fprintf(w, "seedlm: warning: %s is a partial file (%s of %s bytes): %d chunk(s) missing; %s\n",
		path, commas(a.Size()), commas(a.FullSize()), len(ms), what)
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
		return withHint(usagef("--layers %d: %s has at most %d layer(s) per tensor", o.Layers, path, maxLayers), "omit --layers to decode every layer")
	}
	// Hashes first: nothing is written from a damaged archive.
	if err := a.Verify(ctx); err != nil {
		return err
	}
	warnMissing(stderr, path, a, "decoding with the complete layers only")

	h := ix.Header
	sharded := h.SourceFormat == "safetensors-sharded"
	out := o.Output
	if out == "" {
		out = defaultDecompressName(path, sharded)
	}
	if err := checkDecompressOutput(out, path, sharded, o.Force); err != nil {
		return err
	}
	ts := make([]outTensor, len(ix.Tensors))
	var total int64
	for i, t := range ix.Tensors {
		dt := t.DType
		if !t.Passthrough && o.DType != "" {
			dt = o.DType
		}
		ts[i] = outTensor{Name: t.Name, DType: dt, Shape: t.Shape, Shard: t.Shard}
		if !t.Passthrough {
			total += numElems(t.Shape)
		}
	}
	meta := h.Metadata
	if len(meta) == 0 && h.SourceFormat == "torch" {
		// transformers expects format=pt in safetensors metadata.
		meta = map[string]string{"format": "pt"}
	}
	var w tensorWriter
	var sw *shardedWriter
	if sharded {
		idx := h.SourceIndex
		if idx == "" || idx != filepath.Base(idx) {
			idx = "model.safetensors.index.json"
		}
		sw, err = newShardedWriter(out, ts, meta, idx, o.Force)
		w = sw
	} else {
		w, err = createSafetensors(out, ts, meta)
	}
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()

	bar := newProgress(stderr, !o.Quiet && !o.JSON, total, "decompress")
	defer bar.Done()
	rep := &decompressReport{Archive: path, Output: out, Sharded: sharded, Tensors: len(ix.Tensors), Layers: o.Layers, DType: orSource(o.DType),
		ArchiveBytes: a.Size(), FullBytes: a.FullSize(), MissingChunks: missingChunks(a)}
	rep.Partial = len(rep.MissingChunks) > 0
	var norm2, sqErr float64
	var decodeTime time.Duration
	var decodedBytes int64
	for i, t := range ix.Tensors {
		if err := ctx.Err(); err != nil {
			return err
		}
		var data []byte
		if t.Passthrough {
			if data, err = a.ReadPassthrough(t.Name); err != nil {
				return err
			}
		} else {
			layers := len(t.Layers)
			if o.Layers > 0 {
				layers = min(o.Layers, layers)
			}
			if avail := a.AvailableLayers(t.Name); avail < layers {
				layers = avail // partial file: only complete layers
				rep.LimitedTensors++
			}
			norm2 += t.Norm2
			sqErr += t.SqErrAt(layers - 1)
			t0 := time.Now()
			wts, err := a.DecodeTensor(t.Name, layers)
			if err != nil {
				return err
			}
			decodeTime += time.Since(t0)
			decodedBytes += 4 * int64(len(wts))
			if data, err = dtype.FromFloat32(ts[i].DType, wts); err != nil {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
			bar.Add(int64(len(wts)))
			rep.CodedTensors++
		}
		if err := w.WriteTensor(t.Name, data); err != nil {
			return err
		}
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
	if rep.OutputBytes, err = diskSize(out); err != nil {
		return err
	}
	rep.RelErr = relErr(norm2, sqErr)
	rep.WallSeconds = time.Since(start).Seconds()
	rep.DecodeSeconds = decodeTime.Seconds()
	if rep.DecodeSeconds > 0 {
		rep.DecodeMBps = float64(decodedBytes) / 1e6 / rep.DecodeSeconds
	}
	if o.JSON {
		return writeJSON(stdout, rep)
	}
	if !o.Quiet {
		layers := "all layers"
		if o.Layers > 0 {
			layers = fmt.Sprintf("%d layer(s)", o.Layers)
		}
		if rep.Partial {
			layers = "the complete layers"
			if o.Layers > 0 {
				layers = fmt.Sprintf("at most %d complete layer(s)", o.Layers)
			}
		}
		fmt.Fprintf(stdout, "decompressed %s → %s\n", path, out)
		fmt.Fprintf(stdout, "  %d tensors (%d decoded with %s, dtype %s; %d byte-exact), %s bytes on disk\n",
			rep.Tensors, rep.CodedTensors, layers, rep.DType, rep.Tensors-rep.CodedTensors, commas(rep.OutputBytes))
		if rep.Partial {
			fmt.Fprintf(stdout, "  partial archive (%s of %s bytes): %d chunk(s) missing, %d tensor(s) decoded with fewer layers; relative error %.4f\n",
				commas(rep.ArchiveBytes), commas(rep.FullBytes), len(rep.MissingChunks), rep.LimitedTensors, rep.RelErr)
		}
		fmt.Fprintf(stdout, "  %s wall, decode %.1f MB/s (float32 output)\n", fmtSeconds(rep.WallSeconds), rep.DecodeMBps)
	}
	return nil
}

func orSource(dt string) string {
	if dt == "" {
		return "source"
	}
	return dt
}

func numElems(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// defaultDecompressName strips .seedlm and adds .safetensors (a folder for
// a sharded source).
func defaultDecompressName(path string, sharded bool) string {
	base := strings.TrimSuffix(filepath.Clean(path), ".seedlm")
	if sharded {
		return base
	}
	return base + ".safetensors"
}

func checkDecompressOutput(out, archivePath string, sharded, force bool) error {
	absOut, _ := filepath.Abs(out)
	absIn, _ := filepath.Abs(archivePath)
	if absOut == absIn || sameFile(out, archivePath) {
		return withHint(usagef("output %s is the archive", out), "choose another output with -o")
	}
	st, err := os.Stat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case sharded:
		return checkReplaceableDir(out, st, force)
	case st.IsDir():
		return withHint(fmt.Errorf("output %s is a directory", out), "name the output file with -o")
	case !force:
		return withHint(fmt.Errorf("output %s already exists", out), "use --force to replace it, or -o to choose another name")
	}
	return nil
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
