package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/seedlm/seedlm/internal/encoder"
)

// CreateOptions control how an archive is written.
type CreateOptions struct {
	// Overwrite lets Commit replace an existing file at the output path
	// (the CLI's --force). Without it Create and Commit refuse.
	Overwrite bool
	// Inputs are paths the output must never replace, even with Overwrite
	// (the checkpoint being compressed, all its shards).
	Inputs []string
}

// Writer assembles an archive. Base chunks (raw bytes and layer 0) go to one
// spill file and each enhancement layer k to its own, all beside the output,
// so memory stays bounded by one tensor; Commit then writes header, index and
// the spills in layout order to a temp file and renames it into place.
// Nothing appears at the output path before Commit succeeds.
//
// Any error is final: the Writer removes its temp files and every later call
// returns the error. A Writer is safe for concurrent use; tensors are laid
// out in the order their Add calls complete.
type Writer struct {
	mu     sync.Mutex
	out    string
	opt    CreateOptions
	idx    Index
	names  map[string]bool
	spills []*spillFile // spills[k] holds layer-k chunks (k=0 also raw chunks)
	temps  []string     // every temp file created, removed by cleanup
	err    error        // sticky
	done   bool
}

type spillFile struct {
	f    *os.File
	w    *bufio.Writer
	size int64
}

// Create starts an archive at out with default options.
func Create(out string, h Header) (*Writer, error) { return CreateWith(out, h, CreateOptions{}) }

// CreateWith starts an archive at out. It fails early, before any encoding
// work, if out exists (without Overwrite), is an input, or its folder is not
// writable.
func CreateWith(out string, h Header, opt CreateOptions) (*Writer, error) {
	if err := checkOutput(out, opt.Overwrite, opt.Inputs); err != nil {
		return nil, err
	}
	w := &Writer{out: out, opt: opt, idx: Index{Header: cloneHeader(h)}, names: map[string]bool{}}
	if _, err := w.spill(0); err != nil {
		return nil, err
	}
	return w, nil
}

func cloneHeader(h Header) Header {
	h.SourceFiles = append([]string(nil), h.SourceFiles...)
	if len(h.SourceFiles) == 0 {
		h.SourceFiles = nil
	}
	h.Metadata = cloneMap(h.Metadata)
	h.Settings = cloneMap(h.Settings)
	if h.Part != nil {
		p := *h.Part
		p.Positions = append([]int(nil), p.Positions...)
		h.Part = &p
	}
	return h
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// checkOutput refuses outputs that exist (unless overwrite), are folders, or
// are one of the inputs.
func checkOutput(out string, overwrite bool, inputs []string) error {
	if out == "" {
		return errors.New("archive: empty output path")
	}
	fi, err := os.Stat(out)
	switch {
	case err == nil && fi.IsDir():
		return errorf("name a file, e.g. "+filepath.Join(out, "model.seedlm"), "archive: output %s is a folder", out)
	case err == nil:
		for _, in := range inputs {
			if ii, err := os.Stat(in); err == nil && os.SameFile(fi, ii) {
				return errorf("choose another output path", "archive: output %s is the input %s; refusing to overwrite it", out, in)
			}
		}
		if !overwrite {
			return errorf("allow replacing it, or choose another path", "archive: output %s already exists", out)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("archive: output %s: %w", out, err)
	}
	if di, err := os.Stat(filepath.Dir(out)); err != nil || !di.IsDir() {
		return errorf("create it first", "archive: output folder %s does not exist", filepath.Dir(out))
	}
	return nil
}

// tempBeside creates a temp file in out's folder (so the final rename stays
// on one file system) and registers it for cleanup.
func tempBeside(out, tag string, temps *[]string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+"."+tag+".tmp-*")
	if err != nil {
		return nil, errorf("check that the folder is writable and has free space", "archive: create temp file beside %s: %w", out, err)
	}
	*temps = append(*temps, f.Name())
	return f, nil
}

func (w *Writer) spill(k int) (*spillFile, error) {
	for len(w.spills) <= k {
		f, err := tempBeside(w.out, fmt.Sprintf("layer%d", len(w.spills)), &w.temps)
		if err != nil {
			return nil, err
		}
		w.spills = append(w.spills, &spillFile{f: f, w: bufio.NewWriterSize(f, 1<<20)})
	}
	return w.spills[k], nil
}

// fail records err, removes every temp file and returns err.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	w.cleanup()
	return err
}

func (w *Writer) cleanup() {
	for _, s := range w.spills {
		s.f.Close()
	}
	w.spills = nil
	for _, p := range w.temps {
		os.Remove(p)
	}
	w.temps = nil
}

func (w *Writer) usable() error {
	if w.err != nil {
		return fmt.Errorf("archive: writer failed earlier: %w", w.err)
	}
	if w.done {
		return errors.New("archive: writer already committed or aborted")
	}
	return nil
}

// write appends a chunk to spill k and returns its reference (offset 0:
// Commit assigns offsets).
func (w *Writer) write(k int, b []byte) (ChunkRef, error) {
	s, err := w.spill(k)
	if err != nil {
		return ChunkRef{}, err
	}
	if _, err := s.w.Write(b); err != nil {
		return ChunkRef{}, errorf("check free disk space", "archive: write temp file: %w", err)
	}
	s.size += int64(len(b))
	return ChunkRef{Length: int64(len(b)), SHA256: hexSum(b)}, nil
}

func (w *Writer) newEntry(info Info, rule string) (TensorEntry, int64, error) {
	t := TensorEntry{Name: info.Name, DType: info.DType, Shape: append([]int64{}, info.Shape...), Shard: info.Shard, Rule: rule}
	n, err := numElements(t.Shape)
	if err != nil {
		return t, 0, fmt.Errorf("archive: tensor %q: %w", info.Name, err)
	}
	if w.names[info.Name] {
		return t, 0, fmt.Errorf("archive: tensor %q added twice", info.Name)
	}
	if len(w.idx.Tensors) >= MaxTensors {
		return t, 0, fmt.Errorf("archive: more than %d tensors", MaxTensors)
	}
	return t, n, nil
}

// AddPassthrough stores a tensor losslessly (rule "passthrough"). raw is the
// tensor's bytes as checkpoint.Source.ReadRaw returns them.
func (w *Writer) AddPassthrough(info Info, raw []byte) error {
	return w.AddPassthroughRule(info, "passthrough", raw)
}

// AddPassthroughRule stores a tensor losslessly, recording the plan rule
// that chose passthrough (e.g. "passthrough: 1-D tensor").
func (w *Writer) AddPassthroughRule(info Info, rule string, raw []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	t, _, err := w.newEntry(info, rule)
	if err != nil {
		return w.fail(err)
	}
	t.Passthrough = true
	ref, err := w.write(0, raw)
	if err != nil {
		return w.fail(err)
	}
	t.Raw = &ref
	if err := checkEntry(&t); err != nil {
		return w.fail(fmt.Errorf("archive: tensor %q: %w", info.Name, err))
	}
	w.names[t.Name] = true
	w.idx.Tensors = append(w.idx.Tensors, t)
	return nil
}

// AddCoded stores every layer of res for a tensor, with the measured
// errors. rule is the plan rule that chose the codec.
func (w *Writer) AddCoded(info Info, rule string, res *encoder.Result) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	t, n, err := w.newEntry(info, rule)
	if err != nil {
		return w.fail(err)
	}
	if res == nil || len(res.Layers) == 0 || len(res.SqErr) != len(res.Layers) || len(res.Layers) > MaxLayers {
		return w.fail(fmt.Errorf("archive: tensor %q: encoder result needs 1 to %d layers, each with a measured error", info.Name, MaxLayers))
	}
	if math.IsNaN(res.Norm2) || math.IsInf(res.Norm2, 0) {
		return w.fail(fmt.Errorf("archive: tensor %q: ‖w‖² is %v", info.Name, res.Norm2))
	}
	t.Norm2 = res.Norm2
	for k, l := range res.Layers {
		if l == nil {
			return w.fail(fmt.Errorf("archive: tensor %q: layer %d is nil", info.Name, k))
		}
		if err := l.Check(); err != nil {
			return w.fail(fmt.Errorf("archive: tensor %q layer %d: %w", info.Name, k, err))
		}
		if int64(l.N) != n {
			return w.fail(fmt.Errorf("archive: tensor %q layer %d codes %d weights, the shape %v has %d", info.Name, k, l.N, info.Shape, n))
		}
		ref, err := w.write(k, l.Payload)
		if err != nil {
			return w.fail(err)
		}
		t.Layers = append(t.Layers, LayerEntry{Params: l.Params, ExpBias: l.ExpBias, N: n, Chunk: ref, SqErr: res.SqErr[k]})
	}
	if err := checkEntry(&t); err != nil {
		return w.fail(fmt.Errorf("archive: tensor %q: %w", info.Name, err))
	}
	w.names[t.Name] = true
	w.idx.Tensors = append(w.idx.Tensors, t)
	return nil
}

// Commit writes the archive: header, index and the spilled chunks in layout
// order (each re-hashed as it is copied), fsyncs, and renames the file into
// place. On any error nothing is left behind.
func (w *Writer) Commit() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	for _, s := range w.spills {
		if err := s.w.Flush(); err != nil {
			return w.fail(errorf("check free disk space", "archive: write temp file: %w", err))
		}
	}
	// Spill k holds the layer-k chunks in tensor order, which is exactly
	// the order layout visits them, so a running offset per spill finds
	// each chunk.
	pos := make([]int64, len(w.spills))
	src := func(s slot) (io.ReaderAt, int64) {
		k := max(s.layer, 0)
		off := pos[k]
		pos[k] += w.idx.ref(s).Length
		return w.spills[k].f, off
	}
	err := assemble(w.out, &w.idx, w.opt, &w.temps, src, nil)
	if err != nil {
		return w.fail(err)
	}
	w.done = true
	w.cleanup()
	return nil
}

// Abort removes every temp file. It is safe to call more than once and
// after Commit (then it does nothing), so callers can defer it.
func (w *Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.cleanup()
	return nil
}

// assemble lays out idx, writes header, index and chunks to a temp file
// beside out, fsyncs it and publishes it at out. src gives, per chunk in
// layout order, where to read its bytes; every chunk is re-hashed while
// copied and must match its recorded hash. check, if set, is called between
// chunks (context cancellation).
func assemble(out string, idx *Index, opt CreateOptions, temps *[]string, src func(slot) (io.ReaderAt, int64), check func() error) error {
	ib, fileLen, err := layout(idx)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	h := fixedHeader{version: Version, indexLen: uint64(len(ib)), fileLen: uint64(fileLen), indexHash: sha256.Sum256(ib)}
	f, err := tempBeside(out, "final", temps)
	if err != nil {
		return err
	}
	defer f.Close()
	// CreateTemp makes the file 0600; an archive is as shareable as the
	// checkpoint it came from.
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("archive: chmod %s: %w", f.Name(), err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	bw.Write(h.marshal())
	bw.Write(ib)
	buf := make([]byte, 1<<20)
	for _, s := range chunkOrder(idx.Tensors) {
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		r := idx.ref(s)
		ra, off := src(s)
		sum := sha256.New()
		sr := io.NewSectionReader(ra, off, r.Length)
		n, err := io.CopyBuffer(io.MultiWriter(bw, sum), sr, buf)
		if err == nil && n != r.Length {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("archive: copy tensor %q chunk %q: %w", idx.Tensors[s.t].Name, chunkName(s.layer), err)
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != r.SHA256 {
			return errorf("check the disk and retry", "archive: tensor %q chunk %q changed while being copied (SHA-256 %s, want %s)", idx.Tensors[s.t].Name, chunkName(s.layer), got, r.SHA256)
		}
	}
	if err := bw.Flush(); err != nil {
		return errorf("check free disk space", "archive: write %s: %w", f.Name(), err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != fileLen {
		return fmt.Errorf("archive: temp file %s has the wrong size (want %d bytes): %v", f.Name(), fileLen, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("archive: fsync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("archive: close %s: %w", f.Name(), err)
	}
	if err := publish(f.Name(), out, opt); err != nil {
		return err
	}
	// The temp name is gone now; drop it so cleanup cannot touch a file
	// someone else later creates under that name.
	for i, p := range *temps {
		if p == f.Name() {
			*temps = append((*temps)[:i], (*temps)[i+1:]...)
			break
		}
	}
	return nil
}

// publish moves the finished temp file to out. Without Overwrite it links
// (which fails if out exists, atomically) and falls back to check-and-rename
// on file systems without hard links.
func publish(tmp, out string, opt CreateOptions) error {
	if err := checkOutput(out, opt.Overwrite, opt.Inputs); err != nil {
		return err
	}
	if !opt.Overwrite {
		err := os.Link(tmp, out)
		if err == nil {
			os.Remove(tmp)
			syncDir(filepath.Dir(out))
			return nil
		}
		if errors.Is(err, fs.ErrExist) {
			return errorf("allow replacing it, or choose another path", "archive: output %s appeared while writing", out)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("archive: rename %s to %s: %w", tmp, out, err)
	}
	syncDir(filepath.Dir(out))
	return nil
}

// syncDir makes the rename durable; best effort (not every OS supports it).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
