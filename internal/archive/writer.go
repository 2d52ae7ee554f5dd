package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/tempfile"
)

// CreateOptions control how an archive is written.
type CreateOptions struct {
	// Overwrite lets Commit replace an existing file at the output path
	// (the CLI's --force). Without it Create and Commit refuse.
	Overwrite bool
	// Inputs are paths the output must never replace, even with Overwrite
	// (the checkpoint being compressed, all its shards).
	Inputs []string
	// Plan declares every tensor the archive will hold, in index order,
	// before any is added. Every chunk's length follows from it (coded:
	// Params.PayloadBytes; passthrough: the dtype's size × elements) and
	// the index gets a reserved length (docs/FORMAT.md section 1.3), so the
	// whole layout is known up front: CreateWith checks that the file
	// system has room for the archive, and every Add writes its chunks
	// straight into the final temp file at their offsets. One pass, one
	// archive-sized file on disk. Without a Plan, chunks go to spill files
	// in add order and Commit copies them into the final file, which needs
	// twice the space.
	Plan []PlannedTensor
	// Quality, for Merge, fills the merged header's pending quality record
	// (the parts' Header.Quality): the figures measured on the parts
	// together. Merge refuses parts with a pending record without it.
	Quality *Quality
	// Files are sidecar files stored byte for byte (Index.Files, in name
	// order whatever the order here); only for a header with
	// SourceFolder.
	Files []FileData
}

// FileData is a sidecar file to store: a plain file name and its bytes.
type FileData struct {
	Name string
	Data []byte
}

// PlannedTensor declares one tensor of a planned archive.
type PlannedTensor struct {
	Info Info
	Rule string
	// Layers is a coded tensor's codec, base layer first; empty for a
	// tensor stored exactly (passthrough).
	Layers []encoder.Params
	// DuplicateOf names an earlier planned tensor whose bytes this one
	// shares (added with AddDuplicate); Layers is then ignored.
	DuplicateOf string
}

// Writer assembles an archive; nothing appears at the output path before
// Commit succeeds.
//
// With CreateOptions.Plan (what compress uses) the layout is fixed at
// Create and each Add writes its chunks in place in one temp file beside
// the output; Commit writes header and index at its start, fsyncs and
// renames it. A tensor added differently from its plan (stored exactly
// instead of coded, another rule or codec) is allowed: its chunks go to a
// spill file, and Commit lays the archive out again and copies every chunk
// into a new final file (as without a plan). Without a plan every chunk
// goes to the spill file as it is added, and Commit copies them in layout
// order. Memory stays bounded by one tensor either way.
//
// Any error is final: the Writer removes its temp files and every later call
// returns the error. A Writer is safe for concurrent use; without a plan,
// tensors are laid out in the order their Add calls complete.
type Writer struct {
	mu    sync.Mutex
	out   string
	opt   CreateOptions
	idx   Index
	names map[string]bool
	locs  [][]chunkLoc     // per entry: where its chunks' bytes are (raw, or one per layer)
	temps []*tempfile.File // every temp file created, removed by cleanup
	err   error            // sticky
	done  bool
	files []FileData // sidecar files, in name order (idx.Files)

	spill     *tempfile.File
	spillW    *bufio.Writer
	spillSize int64

	// Planned writing.
	planned  bool
	pos      map[string]int // tensor name → index entry
	added    []bool
	deviated bool // some tensor was added differently from its plan
	final    *tempfile.File
	reserve  int64 // index bytes
	fileLen  int64
}

// chunkLoc is where a chunk's bytes are before Commit.
type chunkLoc struct {
	f   *tempfile.File
	off int64
}

// Create starts an archive at out with default options.
func Create(out string, h Header) (*Writer, error) { return CreateWith(out, h, CreateOptions{}) }

// CreateWith starts an archive at out. It fails early, before any encoding
// work, if out exists (without Overwrite), is an input, or its folder is not
// writable; with a Plan also if the plan is invalid or the file system has
// no room for the archive.
func CreateWith(out string, h Header, opt CreateOptions) (*Writer, error) {
	if err := checkOutput(out, opt.Overwrite, opt.Inputs); err != nil {
		return nil, err
	}
	w := &Writer{out: out, opt: opt, idx: Index{Header: cloneHeader(h)}, names: map[string]bool{}}
	w.files = append([]FileData(nil), opt.Files...)
	slices.SortFunc(w.files, func(a, b FileData) int { return strings.Compare(a.Name, b.Name) })
	for _, f := range w.files {
		w.idx.Files = append(w.idx.Files, FileEntry{Name: f.Name, Chunk: ChunkRef{Length: int64(len(f.Data)), SHA256: hexSum(f.Data)}})
	}
	if opt.Plan != nil {
		if err := w.startPlanned(); err != nil {
			w.cleanup()
			return nil, err
		}
	}
	return w, nil
}

// zeroHash stands in for a chunk's hash until its bytes are written.
var zeroHash = strings.Repeat("0", 2*sha256.Size)

// startPlanned lays out the planned index and creates the final temp file.
func (w *Writer) startPlanned() error {
	w.planned = true
	w.pos = make(map[string]int, len(w.opt.Plan))
	for _, p := range w.opt.Plan {
		t, n, err := w.newEntry(p.Info, p.Rule)
		if err != nil {
			return err
		}
		if p.DuplicateOf != "" {
			t.DuplicateOf = p.DuplicateOf
			if j, ok := w.pos[p.DuplicateOf]; ok {
				t.Passthrough = w.idx.Tensors[j].Passthrough
			}
		} else if len(p.Layers) == 0 {
			size, err := dtype.ByteLen(t.DType, t.Shape)
			if err != nil {
				return fmt.Errorf("archive: tensor %q: %w", t.Name, err)
			}
			t.Passthrough = true
			t.Raw = &ChunkRef{Length: size, SHA256: zeroHash}
		} else {
			for k, lp := range p.Layers {
				if err := lp.Validate(); err != nil {
					return fmt.Errorf("archive: tensor %q layer %d: %w", t.Name, k, err)
				}
				t.Layers = append(t.Layers, LayerEntry{Params: lp, N: n, Chunk: ChunkRef{Length: payloadBytes(lp, n), SHA256: zeroHash}})
			}
		}
		w.names[t.Name] = true
		w.pos[t.Name] = len(w.idx.Tensors)
		w.idx.Tensors = append(w.idx.Tensors, t)
	}
	w.added = make([]bool, len(w.idx.Tensors))
	w.locs = make([][]chunkLoc, len(w.idx.Tensors))
	// A whole archive's pending quality record is filled before Commit
	// (SetQuality): check the index as it will be then.
	check := w.idx
	if q := check.Header.Quality; q.Pending() && check.Header.Part == nil {
		c := &Quality{Text: q.Text, Tokens: q.Tokens}
		for _, f := range c.figures() {
			*f = new(float64)
		}
		check.Header.Quality = c
	}
	if err := checkIndex(&check, Version); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	var err error
	if w.reserve, w.fileLen, err = planLayout(&w.idx); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if err := checkFreeSpace(w.out, w.fileLen); err != nil {
		return err
	}
	if w.final, err = w.temp(); err != nil {
		return err
	}
	for i, f := range w.files {
		if _, err := w.final.WriteAt(f.Data, w.idx.Files[i].Chunk.Offset); err != nil {
			return errorf("check free disk space", "archive: write %s: %w", w.final.Name(), err)
		}
	}
	return nil
}

// checkFreeSpace refuses to start writing need bytes beside out when the
// file system reports less free space.
func checkFreeSpace(out string, need int64) error {
	dir := filepath.Dir(out)
	free, ok := tempfile.FreeBytes(dir)
	if !ok || free >= need {
		return nil
	}
	return errorf("free some space or write the archive to another file system", "archive: not enough free space for %s: the archive needs %d bytes, %s has %d bytes free", out, need, dir, free)
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
	if h.Quality != nil {
		q := *h.Quality
		h.Quality = &q
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

// checkOutput refuses outputs that exist (unless overwrite), are folders,
// links or other special files, or are one of the inputs.
func checkOutput(out string, overwrite bool, inputs []string) error {
	if out == "" {
		return errors.New("archive: empty output path")
	}
	fi, err := os.Lstat(out)
	switch {
	case err == nil && fi.IsDir():
		return errorf("name a file, e.g. "+filepath.Join(out, "model.seedlm"), "archive: output %s is a folder", out)
	case err == nil && !fi.Mode().IsRegular():
		// Renaming over a link, device or pipe would replace it, not write
		// through it: never, whatever Overwrite says.
		return errorf("choose a regular file path", "archive: output %s is not a regular file (%s); refusing to replace it", out, fi.Mode().Type())
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

// temp creates a temp file beside the output and registers it for
// cleanup.
func (w *Writer) temp() (*tempfile.File, error) {
	f, err := createTemp(w.out)
	if err != nil {
		return nil, err
	}
	w.temps = append(w.temps, f)
	return f, nil
}

// createTemp creates a temp file beside out (mode 0644: an archive is as
// shareable as the checkpoint it came from).
func createTemp(out string) (*tempfile.File, error) {
	f, err := tempfile.Create(out)
	if err != nil {
		return nil, errorf("check that the folder is writable and has free space", "archive: create temp file beside %s: %w", out, err)
	}
	return f, nil
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
	w.spill, w.spillW, w.final = nil, nil, nil
	for _, f := range w.temps {
		f.Close()
		os.Remove(f.Name())
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

// appendSpill writes a chunk at the end of the spill file.
func (w *Writer) appendSpill(b []byte) (chunkLoc, error) {
	if w.spill == nil {
		f, err := w.temp()
		if err != nil {
			return chunkLoc{}, err
		}
		w.spill, w.spillW = f, bufio.NewWriterSize(f, 1<<20)
	}
	loc := chunkLoc{w.spill, w.spillSize}
	if _, err := w.spillW.Write(b); err != nil {
		return loc, errorf("check free disk space", "archive: write temp file: %w", err)
	}
	w.spillSize += int64(len(b))
	return loc, nil
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
	t, _, err := w.begin(info, rule)
	if err != nil {
		return err
	}
	t.Passthrough = true
	t.Raw = &ChunkRef{Length: int64(len(raw)), SHA256: hexSum(raw)}
	return w.add(&t, [][]byte{raw})
}

// AddCoded stores every layer of res for a tensor, with the measured
// errors. rule is the plan rule that chose the codec.
func (w *Writer) AddCoded(info Info, rule string, res *encoder.Result) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, n, err := w.begin(info, rule)
	if err != nil {
		return err
	}
	if res == nil || len(res.Layers) == 0 || len(res.SqErr) != len(res.Layers) || len(res.Layers) > MaxLayers {
		return w.fail(fmt.Errorf("archive: tensor %q: encoder result needs 1 to %d layers, each with a measured error", info.Name, MaxLayers))
	}
	if math.IsNaN(res.Norm2) || math.IsInf(res.Norm2, 0) {
		return w.fail(fmt.Errorf("archive: tensor %q: ‖w‖² is %v", info.Name, res.Norm2))
	}
	t.Norm2 = res.Norm2
	payloads := make([][]byte, len(res.Layers))
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
		payloads[k] = l.Payload
		t.Layers = append(t.Layers, LayerEntry{Params: l.Params, ExpBias: l.ExpBias, N: n, SqErr: res.SqErr[k],
			Chunk: ChunkRef{Length: int64(len(l.Payload)), SHA256: hexSum(l.Payload)}})
	}
	return w.add(&t, payloads)
}

// AddDuplicate records a tensor whose bytes are those of the earlier
// tensor `of` (tied weights): stored once, decoded under both names. rule
// is the plan's rule for it.
func (w *Writer) AddDuplicate(info Info, rule, of string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, _, err := w.begin(info, rule)
	if err != nil {
		return err
	}
	j := -1
	for i := range w.idx.Tensors {
		if w.idx.Tensors[i].Name == of {
			j = i
			break
		}
	}
	if j < 0 || (w.planned && !w.added[j]) {
		return w.fail(fmt.Errorf("archive: tensor %q is a duplicate of %q, which was not added before it", info.Name, of))
	}
	t.DuplicateOf = of
	t.Passthrough = w.idx.Tensors[j].Passthrough
	return w.add(&t, nil)
}

// syncDuplicates gives every duplicate its original's Passthrough (an
// original the run stored exactly after all changes it).
func (w *Writer) syncDuplicates() {
	pos := map[string]int{}
	for i := range w.idx.Tensors {
		t := &w.idx.Tensors[i]
		if t.DuplicateOf != "" {
			if j, ok := pos[t.DuplicateOf]; ok && t.Passthrough != w.idx.Tensors[j].Passthrough {
				t.Passthrough = w.idx.Tensors[j].Passthrough
				w.deviated = true
			}
		}
		pos[t.Name] = i
	}
}

// begin checks that the writer is still usable and starts the entry of a
// tensor being added; an entry it refuses fails the writer.
func (w *Writer) begin(info Info, rule string) (TensorEntry, int64, error) {
	if err := w.usable(); err != nil {
		return TensorEntry{}, 0, err
	}
	t, n, err := w.entryFor(info, rule)
	if err != nil {
		return t, 0, w.fail(err)
	}
	return t, n, nil
}

// entryFor starts the entry of a tensor being added: a new one, or (with a
// plan) one that must have the planned name, dtype, shape and shard.
func (w *Writer) entryFor(info Info, rule string) (TensorEntry, int64, error) {
	if !w.planned {
		return w.newEntry(info, rule)
	}
	i, ok := w.pos[info.Name]
	if !ok {
		return TensorEntry{}, 0, fmt.Errorf("archive: tensor %q is not in the plan", info.Name)
	}
	if w.added[i] {
		return TensorEntry{}, 0, fmt.Errorf("archive: tensor %q added twice", info.Name)
	}
	p := &w.idx.Tensors[i]
	if p.DType != info.DType || !slices.Equal(p.Shape, info.Shape) || p.Shard != info.Shard {
		return TensorEntry{}, 0, fmt.Errorf("archive: tensor %q is %s %v (shard %q), its plan says %s %v (shard %q)",
			info.Name, info.DType, info.Shape, info.Shard, p.DType, p.Shape, p.Shard)
	}
	t := TensorEntry{Name: p.Name, DType: p.DType, Shape: p.Shape, Shard: p.Shard, Rule: rule}
	return t, t.NumElements(), nil
}

// add checks a complete entry and writes its chunks: in place if it
// matches its plan, else to the spill file.
func (w *Writer) add(t *TensorEntry, payloads [][]byte) error {
	if err := checkEntry(t); err != nil {
		return w.fail(fmt.Errorf("archive: tensor %q: %w", t.Name, err))
	}
	refs := []*ChunkRef{t.Raw}
	if t.DuplicateOf != "" {
		refs = nil
	} else if !t.Passthrough {
		refs = refs[:0]
		for k := range t.Layers {
			refs = append(refs, &t.Layers[k].Chunk)
		}
	}
	locs := make([]chunkLoc, len(refs))
	i := len(w.idx.Tensors)
	inPlace := false
	if w.planned {
		i = w.pos[t.Name]
		inPlace = sameLayout(t, &w.idx.Tensors[i])
		w.deviated = w.deviated || !inPlace
	}
	for k, r := range refs {
		var err error
		if inPlace {
			old := w.idx.Tensors[i].Raw
			if !t.Passthrough {
				old = &w.idx.Tensors[i].Layers[k].Chunk
			}
			r.Offset = old.Offset
			locs[k] = chunkLoc{w.final, r.Offset}
			if _, err = w.final.WriteAt(payloads[k], r.Offset); err != nil {
				err = errorf("check free disk space", "archive: write %s: %w", w.final.Name(), err)
			}
		} else {
			locs[k], err = w.appendSpill(payloads[k])
		}
		if err != nil {
			return w.fail(err)
		}
	}
	if w.planned {
		w.idx.Tensors[i] = *t
		w.locs[i] = locs
		w.added[i] = true
		return nil
	}
	w.names[t.Name] = true
	w.idx.Tensors = append(w.idx.Tensors, *t)
	w.locs = append(w.locs, locs)
	return nil
}

// sameLayout reports whether an added entry takes exactly the index text
// and chunk lengths its plan reserved (values the reserve allows for, such
// as errors and hashes, may differ).
func sameLayout(t, p *TensorEntry) bool {
	if t.Passthrough != p.Passthrough || t.Rule != p.Rule || len(t.Layers) != len(p.Layers) || t.DuplicateOf != p.DuplicateOf {
		return false
	}
	if t.DuplicateOf != "" {
		return true
	}
	if t.Passthrough {
		return t.Raw.Length == p.Raw.Length
	}
	for k := range t.Layers {
		if t.Layers[k].Params != p.Layers[k].Params || t.Layers[k].Chunk.Length != p.Layers[k].Chunk.Length {
			return false
		}
	}
	return true
}

// SetQuality fills the header's quality record before Commit: q must have
// the Text and Tokens the header was created with (its room in the index
// was reserved then), or be nil to drop the record (an evaluation that
// could not be made).
func (w *Writer) SetQuality(q *Quality) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	h := w.idx.Header.Quality
	switch {
	case q == nil:
		w.idx.Header.Quality = nil
		return nil
	case h == nil:
		return w.fail(fmt.Errorf("archive: a quality record set on a header created without one (internal error)"))
	case q.Text != h.Text || q.Tokens != h.Tokens:
		return w.fail(fmt.Errorf("archive: the quality record's text or tokens differ from the header's (internal error)"))
	}
	c := *q
	w.idx.Header.Quality = &c
	return nil
}

// Commit finishes the archive, fsyncs it and renames it into place. On any
// error nothing is left behind.
func (w *Writer) Commit() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	var err error
	w.syncDuplicates()
	if w.planned && !w.deviated {
		err = w.commitPlanned()
	} else {
		err = w.commitCopy()
	}
	if err != nil {
		return w.fail(err)
	}
	if w.final != nil && !w.deviated {
		// Its name is the output's now: cleanup must not remove it.
		w.temps = slices.DeleteFunc(w.temps, func(f *tempfile.File) bool { return f == w.final })
	}
	w.done = true
	w.cleanup()
	return nil
}

// notAdded names a planned tensor that was never added.
func (w *Writer) notAdded() error {
	for i, ok := range w.added {
		if !ok {
			return fmt.Errorf("archive: tensor %q is in the plan but was never added", w.idx.Tensors[i].Name)
		}
	}
	return nil
}

// commitPlanned writes header and index in front of the chunks.
func (w *Writer) commitPlanned() error {
	if err := w.notAdded(); err != nil {
		return err
	}
	if err := checkIndex(&w.idx, Version); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	ib, err := encodeIndex(&w.idx, w.reserve)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	h := fixedHeader{version: Version, indexLen: uint64(len(ib)), fileLen: uint64(w.fileLen), indexHash: sha256.Sum256(ib)}
	f := w.final
	if _, err := f.WriteAt(append(h.marshal(), ib...), 0); err != nil {
		return errorf("check free disk space", "archive: write %s: %w", f.Name(), err)
	}
	// Empty trailing chunks write nothing: the length comes from the layout.
	if err := f.Truncate(w.fileLen); err != nil {
		return fmt.Errorf("archive: write %s: %w", f.Name(), err)
	}
	return finish(f, w.out, w.fileLen, w.opt)
}

// commitCopy lays the archive out and copies every chunk from where it was
// put (spill file, or in place in a plan that had to change).
func (w *Writer) commitCopy() error {
	if w.planned {
		if err := w.notAdded(); err != nil {
			return err
		}
	}
	if w.spillW != nil {
		if err := w.spillW.Flush(); err != nil {
			return errorf("check free disk space", "archive: write temp file: %w", err)
		}
	}
	src := func(s slot) (io.ReaderAt, int64) {
		if s.layer == fileLayer {
			return bytes.NewReader(w.files[s.t].Data), 0
		}
		l := w.locs[s.t][max(s.layer, 0)]
		return l.f, l.off
	}
	return assemble(w.out, &w.idx, w.opt, src, nil)
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
// chunks (context cancellation). The temp file is removed on any error.
func assemble(out string, idx *Index, opt CreateOptions, src func(slot) (io.ReaderAt, int64), check func() error) (err error) {
	if err := checkIndex(idx, Version); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	ib, fileLen, err := layout(idx)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if err := checkFreeSpace(out, fileLen); err != nil {
		return err
	}
	h := fixedHeader{version: Version, indexLen: uint64(len(ib)), fileLen: uint64(fileLen), indexHash: sha256.Sum256(ib)}
	f, err := createTemp(out)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	bw.Write(h.marshal())
	bw.Write(ib)
	buf := make([]byte, 1<<20)
	for _, s := range idx.chunkOrder() {
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
			return fmt.Errorf("archive: copy %s: %w", idx.describe(s), err)
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != r.SHA256 {
			return errorf("check the disk and retry", "archive: %s changed while being copied (SHA-256 %s, want %s)", idx.describe(s), got, r.SHA256)
		}
	}
	if err := bw.Flush(); err != nil {
		return errorf("check free disk space", "archive: write %s: %w", f.Name(), err)
	}
	return finish(f, out, fileLen, opt)
}

// finish checks the temp file's size, fsyncs and closes it, and publishes
// it at out. The caller removes the temp file if it fails.
func finish(f *tempfile.File, out string, fileLen int64, opt CreateOptions) error {
	if fi, err := f.Stat(); err != nil || fi.Size() != fileLen {
		return fmt.Errorf("archive: temp file %s has the wrong size (want %d bytes): %v", f.Name(), fileLen, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("archive: fsync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("archive: close %s: %w", f.Name(), err)
	}
	return publish(f.Name(), out, opt)
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
