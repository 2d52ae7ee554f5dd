package archive

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/seedlm/seedlm/internal/dtype"
)

// The checks here are the one definition of a valid index: Open runs them
// on every archive it reads (so verify, inspect, decompress and stream
// refuse the same files), and the Writer runs them before it commits (so
// seedlm never writes an archive it would refuse). They cover what a
// decompressor derives from the index: tensor names and dtypes it writes
// into safetensors headers, and the file names of a sharded model's folder.

// Source formats an archive may record (Header.SourceFormat).
const (
	FormatSafetensors        = "safetensors"
	FormatSafetensorsSharded = "safetensors-sharded"
	FormatTorch              = "torch"
	// FormatTorchSharded is a sharded PyTorch checkpoint
	// (pytorch_model-*.bin with pytorch_model.bin.index.json). Its tensors'
	// shard names are those of the safetensors shards decompress writes
	// (SafetensorsShardName); SourceFiles keeps the .bin names.
	FormatTorchSharded = "torch-sharded"
)

// Sharded reports whether an archive of this source format is decompressed
// to a folder of shards with an index.
func Sharded(format string) bool {
	return format == FormatSafetensorsSharded || format == FormatTorchSharded
}

// DefaultWeightsFile is the weights file of a model folder decompressed
// from a PyTorch source (transformers looks for it by this name).
const DefaultWeightsFile = "model.safetensors"

// WeightsFile is the file name decompress gives the weights of an
// unsharded model folder (SourceFolder): the source's own file name for a
// safetensors source, else DefaultWeightsFile.
func (h *Header) WeightsFile() string {
	if h.SourceFormat == FormatSafetensors && len(h.SourceFiles) == 1 {
		return h.SourceFiles[0]
	}
	return DefaultWeightsFile
}

// IndexFile is the index file name of a sharded model's folder.
func (h *Header) IndexFile() string {
	if h.SourceIndex != "" {
		return h.SourceIndex
	}
	return DefaultShardIndex
}

// DefaultShardIndex is the index file name of a rebuilt sharded model when
// the archive does not record the source's.
const DefaultShardIndex = "model.safetensors.index.json"

// maxFileName is the longest shard or index file name accepted (the usual
// file-system limit on one path component).
const maxFileName = 255

// checkFileName accepts a plain file name that a folder can hold next to
// others without surprises: no separators, not "." or "..", not hidden (the
// writers' temp files start with "."), no control characters.
func checkFileName(what, name, suffix string) error {
	switch {
	case name == "" || len(name) > maxFileName:
		return fmt.Errorf("%s %q is empty or longer than %d bytes", what, name, maxFileName)
	case strings.ContainsAny(name, `/\:`) || name == "." || name == "..":
		return fmt.Errorf("%s %q is not a plain file name (it holds a path separator or is . or ..)", what, name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%s %q is a hidden file name", what, name)
	case strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("%s %q holds a control character", what, name)
	case !strings.HasSuffix(name, suffix) || name == suffix:
		return fmt.Errorf("%s %q does not end in %s", what, name, suffix)
	}
	return nil
}

// checkHeader validates the archive-wide fields of an archive of the given
// format version holding n tensors, and brings a version-1 header up to
// date: version 1 recorded a sharded source's index name as
// Settings["source_index"], version 2 in SourceIndex.
func checkHeader(h *Header, version uint16, n int) error {
	if version == 1 {
		if h.SourceIndex != "" || h.Part != nil || h.SourceFolder {
			return fmt.Errorf("source_index, source_folder and part are version-2 fields, the archive says version 1")
		}
		if name, ok := h.Settings["source_index"]; ok {
			h.SourceIndex = name
			delete(h.Settings, "source_index")
			if len(h.Settings) == 0 {
				h.Settings = nil
			}
		}
	}
	switch h.SourceFormat {
	case FormatSafetensors, FormatSafetensorsSharded, FormatTorch:
	case FormatTorchSharded:
		if version == 1 {
			return fmt.Errorf("source_format %s is a version-2 value, the archive says version 1", h.SourceFormat)
		}
	default:
		return fmt.Errorf("source_format %q is not one of %s, %s, %s, %s", h.SourceFormat, FormatSafetensors, FormatSafetensorsSharded, FormatTorch, FormatTorchSharded)
	}
	if h.SourceBytes < 0 {
		return fmt.Errorf("source_bytes %d is negative", h.SourceBytes)
	}
	if s := h.SourceIndex; s != "" {
		if !Sharded(h.SourceFormat) {
			return fmt.Errorf("source_index %q in an archive of a %s source (only sharded sources have one)", s, h.SourceFormat)
		}
		if !utf8.ValidString(s) {
			return fmt.Errorf("source_index %q is not UTF-8", s)
		}
		if err := checkFileName("source_index", s, ".json"); err != nil {
			return err
		}
	}
	if h.SourceFolder && !Sharded(h.SourceFormat) {
		// The weights come back as one file in the folder.
		if len(h.SourceFiles) != 1 {
			return fmt.Errorf("source_folder with %d source_files, want 1", len(h.SourceFiles))
		}
		suffix := ""
		if h.SourceFormat == FormatSafetensors {
			suffix = ".safetensors"
		}
		if err := checkFileName("source_files[0]", h.SourceFiles[0], suffix); err != nil {
			return err
		}
	}
	if p := h.Part; p != nil {
		if err := p.check(n); err != nil {
			return fmt.Errorf("part: %w", err)
		}
	}
	return nil
}

// check validates a part record for an archive of n tensors.
func (p *Part) check(n int) error {
	switch {
	case p.Count < 1 || p.Count > MaxTensors || p.Index < 0 || p.Index >= p.Count:
		return fmt.Errorf("part %d of %d is out of range", p.Index, p.Count)
	case p.Tensors < n || p.Tensors > MaxTensors:
		return fmt.Errorf("%d tensors in all, but this part holds %d", p.Tensors, n)
	case len(p.Positions) != n:
		return fmt.Errorf("%d positions for %d tensors", len(p.Positions), n)
	}
	if err := checkHashString(p.PlanSHA256); err != nil {
		return fmt.Errorf("plan_sha256: %w", err)
	}
	prev := -1
	for _, pos := range p.Positions {
		if pos <= prev || pos >= p.Tensors {
			return fmt.Errorf("positions must increase within [0, %d): %d after %d", p.Tensors, pos, prev)
		}
		prev = pos
	}
	return nil
}

// checkIndex validates a whole index: the header, every entry on its own
// (checkEntry) and what only the entries together show: unique names,
// duplicates that point back at a tensor with the same bytes, shard and
// sidecar file names that cannot collide with each other or with the
// index or weights file, and the total size.
func checkIndex(ix *Index, version uint16) error {
	if len(ix.Tensors) > MaxTensors {
		return fmt.Errorf("%d tensors, more than %d", len(ix.Tensors), MaxTensors)
	}
	if err := checkHeader(&ix.Header, version, len(ix.Tensors)); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	names := make(map[string]int, len(ix.Tensors))
	// Every file name the output folder will hold, lower case → as written.
	taken := map[string]string{}
	sharded := Sharded(ix.Header.SourceFormat)
	indexName := ix.Header.IndexFile()
	var total int64
	for i := range ix.Tensors {
		t := &ix.Tensors[i]
		if err := checkEntry(t); err != nil {
			return fmt.Errorf("tensor %d (%q): %w", i, t.Name, err)
		}
		if _, dup := names[t.Name]; dup {
			return fmt.Errorf("tensor name %q appears twice", t.Name)
		}
		if t.DuplicateOf != "" {
			if version == 1 {
				return fmt.Errorf("tensor %q: duplicate_of is a version-2 field, the archive says version 1", t.Name)
			}
			j, ok := names[t.DuplicateOf]
			if !ok {
				return fmt.Errorf("tensor %q is a duplicate of %q, which is not an earlier tensor", t.Name, t.DuplicateOf)
			}
			o := &ix.Tensors[j]
			switch {
			case o.DuplicateOf != "":
				return fmt.Errorf("tensor %q is a duplicate of %q, itself a duplicate (of %q): name the first", t.Name, o.Name, o.DuplicateOf)
			case o.DType != t.DType || !slices.Equal(o.Shape, t.Shape):
				return fmt.Errorf("tensor %q (%s %v) is a duplicate of %q, which is %s %v", t.Name, t.DType, t.Shape, o.Name, o.DType, o.Shape)
			case o.Passthrough != t.Passthrough:
				return fmt.Errorf("tensor %q is a duplicate of %q but says passthrough %v, that tensor %v", t.Name, o.Name, t.Passthrough, o.Passthrough)
			}
		}
		names[t.Name] = i
		total += t.NumElements() // each ≤ MaxElements: no overflow before the check
		if total > MaxTotalElements {
			return fmt.Errorf("the tensors hold more than %d weights in all", int64(MaxTotalElements))
		}
		if !sharded {
			if t.Shard != "" {
				return fmt.Errorf("tensor %q names shard %q, but the source (%s) is not sharded", t.Name, t.Shard, ix.Header.SourceFormat)
			}
			continue
		}
		if err := checkFileName("tensor "+fmt.Sprintf("%q", t.Name)+" shard", t.Shard, ".safetensors"); err != nil {
			return err
		}
		low := strings.ToLower(t.Shard)
		if prev, ok := taken[low]; ok && prev != t.Shard {
			return fmt.Errorf("shards %q and %q differ only in case (they would overwrite each other on many file systems)", prev, t.Shard)
		}
		taken[low] = t.Shard
		if strings.EqualFold(t.Shard, indexName) {
			return fmt.Errorf("shard %q has the name of the index file %q", t.Shard, indexName)
		}
	}
	return checkFiles(ix, version, taken)
}

// checkFiles validates the sidecar files: only in a folder archive, plain
// names in strictly increasing order, none equal (ignoring case) to
// another, a shard, the index file or the weights file.
func checkFiles(ix *Index, version uint16, taken map[string]string) error {
	if len(ix.Files) == 0 {
		return nil
	}
	h := &ix.Header
	switch {
	case version == 1:
		return fmt.Errorf("files is a version-2 field, the archive says version 1")
	case !h.SourceFolder:
		return fmt.Errorf("%d sidecar file(s) in an archive without source_folder", len(ix.Files))
	case len(ix.Files) > MaxFiles:
		return fmt.Errorf("%d files, more than %d", len(ix.Files), MaxFiles)
	}
	if Sharded(h.SourceFormat) {
		taken[strings.ToLower(h.IndexFile())] = h.IndexFile()
	} else {
		taken[strings.ToLower(h.WeightsFile())] = h.WeightsFile()
	}
	for i := range ix.Files {
		f := &ix.Files[i]
		if !utf8.ValidString(f.Name) {
			return fmt.Errorf("file name %q is not UTF-8", f.Name)
		}
		if err := checkFileName("file", f.Name, ""); err != nil {
			return err
		}
		if i > 0 && ix.Files[i-1].Name >= f.Name {
			return fmt.Errorf("files %q and %q are not in increasing name order", ix.Files[i-1].Name, f.Name)
		}
		if err := checkRef(&f.Chunk); err != nil {
			return fmt.Errorf("file %q: %w", f.Name, err)
		}
		if f.Chunk.Length > MaxFileBytes {
			return fmt.Errorf("file %q is %d bytes, more than %d", f.Name, f.Chunk.Length, int64(MaxFileBytes))
		}
		low := strings.ToLower(f.Name)
		if prev, ok := taken[low]; ok {
			return fmt.Errorf("file %q has the name of %q, which the output folder holds too (names are compared ignoring case)", f.Name, prev)
		}
		taken[low] = f.Name
	}
	return nil
}

// checkDType validates a tensor's dtype against its storage.
func checkDType(t *TensorEntry, n int64) error {
	if _, ok := dtype.Bits(t.DType); !ok {
		return fmt.Errorf("dtype %q is not a safetensors dtype", t.DType)
	}
	if !t.Passthrough {
		// The float types the decoder's output can be written back as
		// (presets stores every other dtype exactly).
		if !dtype.Codable(t.DType) {
			return fmt.Errorf("coded tensor has dtype %s; only float tensors (F64, F32, F16, BF16, F8_E4M3, F8_E5M2) are coded", t.DType)
		}
		return nil
	}
	want, err := dtype.ByteLen(t.DType, t.Shape)
	if err != nil {
		return err
	}
	if t.Raw != nil && t.Raw.Length != want {
		return fmt.Errorf("raw chunk is %d bytes, want %d (%d elements of %s)", t.Raw.Length, want, n, t.DType)
	}
	return nil
}

// SafetensorsShardName is the safetensors shard decompress writes for a
// PyTorch shard, as transformers names them:
// pytorch_model-00001-of-00002.bin → model-00001-of-00002.safetensors.
func SafetensorsShardName(torchShard string) string {
	base := torchShard
	for _, ext := range []string{".bin", ".pt", ".pth"} {
		if strings.HasSuffix(strings.ToLower(base), ext) {
			base = base[:len(base)-len(ext)]
			break
		}
	}
	if rest, ok := strings.CutPrefix(base, "pytorch_model"); ok {
		base = "model" + rest
	}
	return base + ".safetensors"
}
