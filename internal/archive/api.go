// Package archive reads and writes .seedlm archives (docs/FORMAT.md).
//
// CONTRACT (agreed between the archive and CLI owners; the archive owner may
// extend it but keeps these names and meanings):
//
//	w, err := archive.Create(outPath, archive.Header{...})   // temp file beside outPath
//	w.AddPassthrough(info, raw)                              // lossless tensor (rule "passthrough")
//	w.AddPassthroughRule(info, rule, raw)                    // same, recording the plan's rule
//	w.AddCoded(info, rule, res)                              // encoder.Result, all its layers
//	w.Commit()                                               // hashes, index, fsync, rename
//	w.Abort()                                                // removes temp files; safe after Commit
//
//	a, err := archive.Open(path, archive.OpenOptions{AllowPartial: false})
//	a.Index()                                                // *Index: header + []TensorEntry
//	a.Verify(ctx)                                            // every hash + structure → *IntegrityError
//	a.DecodeTensor(name, layers int) ([]float32, error)      // coded tensors, first `layers` layers (0 = all)
//	a.ReadPassthrough(name) ([]byte, error)                  // byte-exact
//	archive.Stream(ctx, srcPath, dstPath, maxBytes) (*StreamReport, error)
//
// Extensions (archive owner):
//
//	archive.CreateWith(out, h, archive.CreateOptions{Overwrite, Inputs, Plan, Files})
//	    // Plan []PlannedTensor{Info, Rule, Layers, DuplicateOf}: the layout is
//	    // fixed up front, free space checked, chunks written in place (one pass)
//	    // Files []FileData{Name, Data}: a model folder's sidecar files
//	    // (Header.SourceFolder), stored byte for byte
//	w.AddDuplicate(info, rule, of)                           // tied tensor: stored once, as `of`
//	a.Files() / a.ReadFile(name)                             // sidecar files, hash-checked
//	h.WeightsFile() / h.IndexFile(); archive.Sharded(format); archive.SafetensorsShardName(bin)
//	archive.OpenReader(readerAt, size, name, opt)            // any io.ReaderAt
//	a.DecodeTensorTo(name, layers, func([]float32) error)    // bounded memory, DecodeStep weights at a time
//	a.ReadPassthroughTo(name, func([]byte) error)            // bounded memory
//	a.Close / Missing / AvailableLayers / Totals / Entry / BaseBytes / FullSize / IndexBytes
//	archive.StreamWith(ctx, src, dst, maxBytes, archive.StreamOptions{Overwrite, AllowPartial})
//	    // StreamReport.SourceDamage: left-out source chunks that fail their hash
//	(*TensorEntry).SqErrAt(k) / RelErr(k) / Bytes() / BytesUpTo(k) / BitsPerWeight()
//	(*Index).Totals(); DefaultShardIndex
//	archive.Merge(ctx, out, partPaths, opt)                   // part archives (Header.Part) → the one-machine archive
//	archive.FormatSafetensors / FormatSafetensorsSharded / FormatTorch
//
// Every index any reader opens, and every archive the writer commits,
// passes one validation (validate.go; docs/FORMAT.md section 2.4).
//
// Errors: *IntegrityError (Tensor, Chunk, Offset; errors.Is with
// ErrVersion, ErrTruncated, ErrCorrupt), *NotArchiveError (no magic:
// errors.Is ErrNotArchive; bad input, not damage), from Stream,
// *BudgetError (MinBytes), and from Merge, *MergeError (Missing, Count).
package archive

import "github.com/seedlm/seedlm/internal/encoder"

// Header is the archive-wide part of the index.
type Header struct {
	// SourceFormat and SourceFiles describe the input ("safetensors",
	// "safetensors-sharded", "torch"; shard base names in order).
	SourceFormat string   `json:"source_format"`
	SourceFiles  []string `json:"source_files,omitempty"`
	// SourceBytes is the input's size on disk (all shards).
	SourceBytes int64 `json:"source_bytes"`
	// Metadata is the source's safetensors __metadata__.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Settings records how the archive was made (preset, level, flags) as
	// key → value strings, for inspect. Never timestamps or hostnames:
	// archives are byte-identical for the same input and settings.
	Settings map[string]string `json:"settings,omitempty"`
	// SourceIndex is the base name of a sharded source's index file
	// (model.safetensors.index.json), so decompress writes it back under the
	// same name; "" for other sources. Version 1 kept it in Settings.
	SourceIndex string `json:"source_index,omitempty"`
	// SourceFolder is set when the input was a model folder: decompress
	// then writes a folder (the weights under their original file names,
	// and the sidecar files of Index.Files) instead of a lone file.
	SourceFolder bool `json:"source_folder,omitempty"`
	// Part is set only in a part archive (one machine's share of a
	// compression split over several; see Merge), never in a merged or
	// one-machine archive.
	Part *Part `json:"part,omitempty"`
}

// Part says which share of the full archive a part archive holds. Merge
// checks that the parts of one archive agree on everything but Index and
// Positions, and that together they hold every tensor exactly once.
type Part struct {
	// Index is this part's number, 0 … Count−1, of Count.
	Index int `json:"index"`
	Count int `json:"count"`
	// PlanSHA256 is the content hash of the plan every part was encoded
	// from (lowercase hex).
	PlanSHA256 string `json:"plan_sha256"`
	// Tensors is the number of tensors of the full archive; Positions holds,
	// for each tensor of this part in order, its position among them
	// (strictly increasing).
	Tensors   int   `json:"tensors"`
	Positions []int `json:"positions"`
}

// LayerEntry is one progressive layer of a coded tensor.
type LayerEntry struct {
	Params  encoder.Params `json:"params"`
	ExpBias int            `json:"exp_bias"`
	// N is the number of weights the layer codes: always the tensor's
	// element count. Stored so a reader can check it against the payload
	// length (Params.PayloadBytes(N) == Chunk.Length) before decoding.
	N     int64    `json:"n"`
	Chunk ChunkRef `json:"chunk"`
	// SqErr is ‖w − ŵ‖² after decoding layers 0…this one.
	SqErr float64 `json:"sq_err"`
}

// ChunkRef locates a payload chunk and its hash.
type ChunkRef struct {
	Offset int64  `json:"offset"` // from the start of the file
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"` // hex
}

// TensorEntry is one tensor of the index.
type TensorEntry struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"` // source dtype
	Shape []int64 `json:"shape"`
	Shard string  `json:"shard,omitempty"`
	Rule  string  `json:"rule"`
	// DuplicateOf names an earlier tensor of the same dtype and shape whose
	// bytes this one shares (tied weights): the entry has no chunks of its
	// own (no Raw, no Layers), Passthrough equal to that tensor's, and
	// decodes to exactly what that tensor decodes to.
	DuplicateOf string `json:"duplicate_of,omitempty"`
	// Passthrough tensors have Raw set and no Layers.
	Passthrough bool         `json:"passthrough"`
	Raw         *ChunkRef    `json:"raw,omitempty"`
	Norm2       float64      `json:"norm2"` // ‖w‖² of the float32 weights (0 for passthrough)
	Layers      []LayerEntry `json:"layers,omitempty"`
	// OmittedLayers counts enhancement layers the archive was made with but
	// that this file leaves out (Stream drops the least useful ones); 0 for
	// an archive written by compress.
	OmittedLayers int `json:"omitted_layers,omitempty"`
}

// FileEntry is one file stored byte for byte beside the tensors: a model
// folder's small sidecars (config.json, tokenizer files, ...).
type FileEntry struct {
	Name  string   `json:"name"` // a plain file name
	Chunk ChunkRef `json:"chunk"`
}

// Index is the archive's table of contents.
type Index struct {
	Header  Header        `json:"header"`
	Tensors []TensorEntry `json:"tensors"`
	// Files are the sidecar files of a model folder (Header.SourceFolder),
	// in name order.
	Files []FileEntry `json:"files,omitempty"`
}

// Info describes a tensor being added: what the index records besides its
// chunks. It has the fields of checkpoint.TensorInfo, so a caller converts
// one with archive.Info(t).
type Info struct {
	Name  string
	DType string
	Shape []int64
	Shard string
}
