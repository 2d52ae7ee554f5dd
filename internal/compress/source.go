package compress

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
)

// Source is a checkpoint's identity as a plan records it: enough to refuse,
// before any work, a part run on other files than the plan was made from.
//
// Why not a SHA-256 of every file: each part would have to read the whole
// model (a 70B checkpoint is 140 GB) to check it, where it reads only its
// share to encode. Instead the plan records each file's name and size and a
// SHA-256 of its first and last MiB (a safetensors header, a torch zip's
// pickle and central directory: any re-save or different model changes
// them), checked by every part before it starts; and, per tensor, the
// SHA-256 of its bytes, which a part checks on the tensors it reads anyway
// (no extra I/O). Together they cover every byte a part uses.
type Source struct {
	Format string       `json:"format"` // checkpoint.Source.Format
	Files  []SourceFile `json:"files"`
}

// SourceFile is one file of the input (for a sharded model: each shard and
// the index).
type SourceFile struct {
	Name string `json:"name"` // base name
	Size int64  `json:"size"`
	// HeadTailSHA256 is the SHA-256 of the file's first and last MiB (the
	// whole file when it is smaller than 2 MiB).
	HeadTailSHA256 string `json:"head_tail_sha256"`
}

const headTail = 1 << 20

// identify reads a source's identity.
func identify(src checkpoint.Source) (Source, error) {
	s := Source{Format: src.Format()}
	dir := sourceDir(src)
	for _, name := range sourceFileNames(src) {
		f, err := hashHeadTail(filepath.Join(dir, name))
		if err != nil {
			return s, err
		}
		s.Files = append(s.Files, f)
	}
	return s, nil
}

func hashHeadTail(path string) (SourceFile, error) {
	sf := SourceFile{Name: filepath.Base(path)}
	f, err := os.Open(path)
	if err != nil {
		return sf, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return sf, err
	}
	sf.Size = st.Size()
	h := sha256.New()
	if sf.Size <= 2*headTail {
		if _, err := io.Copy(h, f); err != nil {
			return sf, fmt.Errorf("%s: %w", path, err)
		}
	} else {
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, headTail)); err != nil {
			return sf, fmt.Errorf("%s: %w", path, err)
		}
		if _, err := io.Copy(h, io.NewSectionReader(f, sf.Size-headTail, headTail)); err != nil {
			return sf, fmt.Errorf("%s: %w", path, err)
		}
	}
	sf.HeadTailSHA256 = hex.EncodeToString(h.Sum(nil))
	return sf, nil
}

// sourceDir is the folder the source's files are in.
func sourceDir(src checkpoint.Source) string {
	p := src.Path()
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return p
	}
	return filepath.Dir(p)
}

// shardNames lists a sharded source's shard base names in order; for other
// sources, the file's base name.
func shardNames(src checkpoint.Source) []string {
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

// sourceFileNames is every file of the input: the shards and, for a sharded
// model, its index.
func sourceFileNames(src checkpoint.Source) []string {
	files := shardNames(src)
	if idx := checkpoint.IndexPath(src); idx != "" {
		files = append(files, filepath.Base(idx))
	}
	return files
}

// sourceIndexName is the base name of a sharded safetensors model's index
// file, which decompress writes back under that name ("" for other
// sources: a sharded PyTorch model comes back with the default
// model.safetensors.index.json).
func sourceIndexName(src checkpoint.Source) string {
	if src.Format() != archive.FormatSafetensorsSharded {
		return ""
	}
	return filepath.Base(checkpoint.IndexPath(src))
}

// archiveShard is the shard name a tensor gets in the archive: the file
// decompress writes it to (a PyTorch shard's safetensors name).
func archiveShard(format, shard string) string {
	if format == archive.FormatTorchSharded && shard != "" {
		return archive.SafetensorsShardName(shard)
	}
	return shard
}

// archiveInfo is a planned tensor as the archive records it.
func (p *Plan) archiveInfo(t *TensorPlan) archive.Info {
	info := archive.Info(t.info())
	info.Shard = archiveShard(p.Source.Format, info.Shard)
	return info
}

// InputFiles are the paths a run must never overwrite: the source and every
// shard.
func InputFiles(src checkpoint.Source) []string {
	files := []string{src.Path()}
	dir := sourceDir(src)
	for _, name := range sourceFileNames(src) {
		files = append(files, filepath.Join(dir, name))
	}
	return files
}

// header is the archive header a run of the plan on src writes (without
// a part record). SourceBytes counts the weights files and the sidecars
// stored, so the ratio compares like with like.
func (p *Plan) header(src checkpoint.Source) (archive.Header, error) {
	var total int64
	dir := sourceDir(src)
	for _, name := range sourceFileNames(src) {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return archive.Header{}, err
		}
		total += st.Size()
	}
	for _, s := range p.Sidecars {
		total += s.Size
	}
	return archive.Header{
		SourceFormat: src.Format(),
		SourceFiles:  shardNames(src),
		SourceBytes:  total,
		Metadata:     src.Metadata(),
		Settings:     p.Settings,
		SourceIndex:  sourceIndexName(src),
		SourceFolder: checkpoint.Folder(src) != "",
	}, nil
}

// Match checks that src is the input the plan was made from, and that this
// seedlm made the plan: a *MismatchError lists every difference. The
// tensors' bytes are checked later, as a run reads them (see Source).
func (p *Plan) Match(src checkpoint.Source, planPath string) error {
	var d []string
	if v := Version(); p.SeedlmVersion != v {
		d = append(d, fmt.Sprintf("the plan was made by seedlm %s, this is seedlm %s", p.SeedlmVersion, v))
	}
	id, err := identify(src)
	if err != nil {
		return err
	}
	if id.Format != p.Source.Format {
		d = append(d, fmt.Sprintf("the input is %s, the plan's %s", id.Format, p.Source.Format))
	}
	planned := map[string]SourceFile{}
	for _, f := range p.Source.Files {
		planned[f.Name] = f
	}
	for _, f := range id.Files {
		pf, ok := planned[f.Name]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("file %s is not in the plan", f.Name))
		case pf.Size != f.Size:
			d = append(d, fmt.Sprintf("file %s is %d bytes, the plan's %d", f.Name, f.Size, pf.Size))
		case pf.HeadTailSHA256 != f.HeadTailSHA256:
			d = append(d, fmt.Sprintf("file %s has other contents than the plan's (SHA-256 of its first and last MiB %s, the plan's %s)",
				f.Name, short(f.HeadTailSHA256), short(pf.HeadTailSHA256)))
		}
		delete(planned, f.Name)
	}
	for _, f := range p.Source.Files {
		if _, missing := planned[f.Name]; missing {
			d = append(d, fmt.Sprintf("the plan's file %s is not in the input", f.Name))
		}
	}
	ts := src.Tensors()
	if len(ts) != len(p.Tensors) {
		d = append(d, fmt.Sprintf("the input has %d tensors, the plan %d", len(ts), len(p.Tensors)))
	} else {
		for i, t := range ts {
			pt := &p.Tensors[i]
			if t.Name != pt.Name || t.DType != pt.DType || !slices.Equal(t.Shape, pt.Shape) || t.Shard != pt.Shard {
				d = append(d, fmt.Sprintf("tensor %d is %q %s %v, the plan's %q %s %v", i, t.Name, t.DType, t.Shape, pt.Name, pt.DType, pt.Shape))
			}
		}
	}
	if len(d) > 0 {
		return &MismatchError{Plan: planPath, Diffs: d}
	}
	return nil
}

// MatchSettings checks that s, when given, are the plan's settings.
func (p *Plan) MatchSettings(s Settings, planPath string) error {
	got, want := s.Record(), p.Settings
	var d []string
	for k, v := range got {
		if w, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%s=%s is set here, the plan has no %s", k, v, k))
		} else if w != v {
			d = append(d, fmt.Sprintf("%s=%s here, %s in the plan", k, v, w))
		}
	}
	for k, w := range want {
		if _, ok := got[k]; !ok && len(got) > 0 {
			d = append(d, fmt.Sprintf("the plan has %s=%s, not set here", k, w))
		}
	}
	if len(d) > 0 {
		sort.Strings(d)
		return &MismatchError{Plan: planPath, Diffs: d}
	}
	return nil
}
