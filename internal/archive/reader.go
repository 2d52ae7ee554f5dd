package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// OpenOptions control how Open treats the file.
type OpenOptions struct {
	// AllowPartial accepts a file cut short after its base layers (an
	// interrupted download of a progressive archive): chunks past the end
	// are reported by Missing and decoding uses only complete layers.
	// Without it a short file is an *IntegrityError.
	AllowPartial bool
}

// Archive is an opened archive. Its methods are safe for concurrent use.
type Archive struct {
	f       io.ReaderAt
	closer  io.Closer // nil for OpenReader
	path    string
	size    int64 // bytes on disk
	hdr     *fixedHeader
	idx     *Index
	byName  map[string]int
	avail   []int // per tensor: complete leading layers (1 for a complete passthrough)
	missing []ChunkID
}

// Open reads and validates the header and index. Every size is checked
// against the limits and the file before it is used, and the index hash
// before the index is parsed; chunk hashes are checked by Verify and by the
// reads that use them.
func Open(path string, opt OpenOptions) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("archive: %w", err)
	}
	a, err := OpenReader(f, fi.Size(), path, opt)
	if err != nil {
		f.Close()
		return nil, err
	}
	a.closer = f
	return a, nil
}

// OpenReader is Open for an archive held by any io.ReaderAt of the given
// size (e.g. a download in progress); name is used in errors. Close does
// not close r.
func OpenReader(f io.ReaderAt, size int64, name string, opt OpenOptions) (*Archive, error) {
	path := name
	if size < 0 {
		return nil, fmt.Errorf("archive: %s: negative size %d", name, size)
	}
	hb := make([]byte, min(size, HeaderSize))
	if err := readFull(f, hb, 0); err != nil {
		return nil, fmt.Errorf("archive: read %s: %w", path, err)
	}
	h, err := parseHeader(path, hb, size)
	if err != nil {
		return nil, err
	}
	indexEnd := int64(HeaderSize + h.indexLen)
	fileLen := int64(h.fileLen)
	switch {
	case size < indexEnd:
		return nil, &IntegrityError{Path: path, Chunk: "index", Offset: HeaderSize, Advice: hintTruncated, Err: ErrTruncated,
			Reason: fmt.Sprintf("file is %d bytes but its index ends at byte %d (even a partial download needs the whole index)", size, indexEnd)}
	case size > fileLen:
		return nil, &IntegrityError{Path: path, Chunk: "header", Offset: 16,
			Reason: fmt.Sprintf("file is %d bytes, the header says %d (trailing data or a corrupt header)", size, fileLen)}
	}
	// A short file with a complete index is judged after the index is
	// validated, so the error can name the first chunk the cut hits.
	//
	// The index is read twice, in small pieces: once to check its hash
	// before anything parses it, once to parse it (hashed again, in case
	// the file changed in between). Memory is that of the parsed entries,
	// never a copy of the index text.
	if sum, err := sectionSum(f, HeaderSize, int64(h.indexLen)); err != nil {
		return nil, fmt.Errorf("archive: read index of %s: %w", path, err)
	} else if sum != h.indexHash {
		return nil, &IntegrityError{Path: path, Chunk: "index", Offset: HeaderSize, Reason: "SHA-256 mismatch (index or header corrupt)"}
	}
	sum := sha256.New()
	sr := io.TeeReader(io.NewSectionReader(f, HeaderSize, int64(h.indexLen)), sum)
	idx, err := parseIndex(path, bufio.NewReaderSize(sr, 64<<10), int64(h.indexLen), fileLen, h.version)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(sum, sr); err != nil { // what the parser did not need
		return nil, fmt.Errorf("archive: read index of %s: %w", path, err)
	}
	if [32]byte(sum.Sum(nil)) != h.indexHash {
		return nil, &IntegrityError{Path: path, Chunk: "index", Offset: HeaderSize, Reason: "the index changed while it was read"}
	}
	a := &Archive{f: f, path: path, size: size, hdr: h, idx: idx, byName: make(map[string]int, len(idx.Tensors)), avail: make([]int, len(idx.Tensors))}
	for i := range idx.Tensors {
		a.byName[idx.Tensors[i].Name] = i
	}
	// Chunks are in layout order, so the complete ones are a prefix of it:
	// a tensor's complete layers are always its leading ones.
	for _, s := range idx.chunkOrder() {
		r := idx.ref(s)
		if r.Offset+r.Length <= size {
			if s.layer != fileLayer {
				a.avail[s.t]++
			}
			continue
		}
		e := idx.integrity(path, s, "")
		e.Advice, e.Err = hintTruncated, ErrTruncated
		if !opt.AllowPartial {
			e.Reason = fmt.Sprintf("truncated: the file is %d bytes, the archive %d; this is the first incomplete chunk (%d of its %d bytes present)", size, fileLen, max(0, size-r.Offset), r.Length)
			return nil, e
		}
		if s.layer <= 0 {
			e.Reason = fmt.Sprintf("partial file is %d bytes; the base layers end at byte %d, so at least %d bytes are needed to decode", size, a.BaseBytes(), a.BaseBytes())
			return nil, e
		}
		a.missing = append(a.missing, ChunkID{Tensor: idx.Tensors[s.t].Name, Layer: s.layer, Offset: r.Offset, Length: r.Length, Have: max(0, size-r.Offset)})
	}
	// A duplicate has what its original has.
	for i := range idx.Tensors {
		if o := idx.Tensors[i].DuplicateOf; o != "" {
			a.avail[i] = a.avail[a.byName[o]]
		}
	}
	if size < fileLen && len(a.missing) == 0 {
		// Unreachable: the chunks tile the file up to fileLen.
		return nil, &IntegrityError{Path: path, Chunk: "header", Offset: 16, Advice: hintTruncated, Err: ErrTruncated,
			Reason: fmt.Sprintf("file is %d bytes, the header says %d", size, fileLen)}
	}
	return a, nil
}

// sectionSum is the SHA-256 of n bytes of r at off, read in small pieces;
// a short read is io.ErrUnexpectedEOF.
func sectionSum(r io.ReaderAt, off, n int64) ([32]byte, error) {
	var out [32]byte
	h := sha256.New()
	got, err := io.CopyBuffer(h, io.NewSectionReader(r, off, n), make([]byte, 64<<10))
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return out, err
	}
	copy(out[:], h.Sum(nil))
	return out, nil
}

// readFull fills b from off. io.ReaderAt may report io.EOF along with a
// full read at the end of the input; that is success. A short read is
// io.ErrUnexpectedEOF.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close releases the file (not the reader given to OpenReader).
func (a *Archive) Close() error {
	if a.closer == nil {
		return nil
	}
	return a.closer.Close()
}

// Path is the file the archive was opened from.
func (a *Archive) Path() string { return a.path }

// Size is the file's length on disk (less than FullSize for a partial file).
func (a *Archive) Size() int64 { return a.size }

// FullSize is the length of the complete archive, from its header.
func (a *Archive) FullSize() int64 { return int64(a.hdr.fileLen) }

// IndexBytes is the length of the encoded index; header and index together
// (HeaderSize + IndexBytes) are the archive's overhead beyond its chunks.
func (a *Archive) IndexBytes() int64 { return int64(a.hdr.indexLen) }

// BaseBytes is the smallest prefix of the file that decodes: header, index
// and every base chunk (passthrough and layer 0).
func (a *Archive) BaseBytes() int64 {
	end := HeaderSize + a.IndexBytes()
	for _, s := range a.idx.chunkOrder() {
		if s.layer > 0 {
			break // the enhancement phases follow the base phase
		}
		r := a.idx.ref(s)
		end = max(end, r.Offset+r.Length)
	}
	return end
}

// Index is the archive's table of contents. Callers must not modify it.
func (a *Archive) Index() *Index { return a.idx }

// Entry returns a tensor's index entry (for a duplicate, its own entry,
// which names the original in DuplicateOf).
func (a *Archive) Entry(name string) (*TensorEntry, bool) {
	i, ok := a.byName[name]
	if !ok {
		return nil, false
	}
	return &a.idx.Tensors[i], true
}

// stored returns the entry holding a tensor's chunks: its own, or for a
// duplicate the original's.
func (a *Archive) stored(name string) (*TensorEntry, bool) {
	t, ok := a.Entry(name)
	if ok && t.DuplicateOf != "" {
		return a.Entry(t.DuplicateOf)
	}
	return t, ok
}

// Missing lists the chunks a partial file lacks or holds only in part, in
// file order (nil for a complete file).
func (a *Archive) Missing() []ChunkID { return append([]ChunkID(nil), a.missing...) }

// AvailableLayers is how many leading layers of a coded tensor the file
// holds completely (1 for a passthrough tensor, 0 for an unknown name).
func (a *Archive) AvailableLayers(name string) int {
	i, ok := a.byName[name]
	if !ok {
		return 0
	}
	return a.avail[i]
}

// readChunk reads slot s's chunk whole and checks its hash.
func (a *Archive) readChunk(s slot) ([]byte, error) {
	r := a.idx.ref(s)
	b := make([]byte, r.Length)
	if err := readFull(a.f, b, r.Offset); err != nil {
		return nil, a.readError(s, err)
	}
	if hexSum(b) != r.SHA256 {
		return nil, a.idx.integrity(a.path, s, "SHA-256 mismatch")
	}
	return b, nil
}

// shrank is the reason given when the file ends inside a chunk that Open
// found complete.
const shrank = "file ends inside the chunk (it shrank after it was opened?)"

// readError is the error for a failed read of slot s's chunk: the file
// ending inside it is an *IntegrityError (ErrTruncated).
func (a *Archive) readError(s slot, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		e := a.idx.integrity(a.path, s, shrank)
		e.Advice, e.Err = hintTruncated, ErrTruncated
		return e
	}
	return fmt.Errorf("archive: read %s: %w", a.idx.describe(s), err)
}

// ReadPassthrough returns a passthrough tensor's bytes, byte-exact, after
// checking their hash.
func (a *Archive) ReadPassthrough(name string) ([]byte, error) {
	t, ok := a.stored(name)
	if !ok {
		return nil, fmt.Errorf("archive: no tensor %q in %s", name, a.path)
	}
	if !t.Passthrough {
		return nil, errorf("use DecodeTensor", "archive: tensor %q is coded, not passthrough", name)
	}
	return a.readChunk(slot{a.byName[t.Name], -1})
}

// Verify checks the header, the index and every chunk the file holds
// against their hashes and the layout. It returns the first failure as an
// *IntegrityError (or ctx's error). For a partial file the missing chunks
// are not errors; see Missing.
func (a *Archive) Verify(ctx context.Context) error {
	// Re-read header and index: the file may have changed since Open.
	hb := make([]byte, HeaderSize)
	err := readFull(a.f, hb, 0)
	var sum [32]byte
	if err == nil {
		sum, err = sectionSum(a.f, HeaderSize, a.IndexBytes())
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return &IntegrityError{Path: a.path, Chunk: "index", Offset: HeaderSize, Advice: hintTruncated, Err: ErrTruncated, Reason: "file ends inside the index"}
		}
		return fmt.Errorf("archive: read %s: %w", a.path, err)
	}
	if !bytes.Equal(hb, a.hdr.marshal()) {
		return &IntegrityError{Path: a.path, Chunk: "header", Offset: 0, Reason: "header changed since the archive was opened"}
	}
	if sum != a.hdr.indexHash {
		return &IntegrityError{Path: a.path, Chunk: "index", Offset: HeaderSize, Reason: "SHA-256 mismatch"}
	}
	var one [1]byte
	if n, _ := a.f.ReadAt(one[:], a.size); n > 0 {
		return &IntegrityError{Path: a.path, Chunk: "header", Offset: 16, Advice: "the file is being written; verify it once that is done",
			Reason: fmt.Sprintf("file grew past %d bytes since it was opened", a.size)}
	}
	buf := make([]byte, 64<<10)
	for _, s := range a.idx.chunkOrder() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r := a.idx.ref(s); r.Offset+r.Length > a.size {
			break // partial file: the rest is reported by Missing
		}
		if err := a.verifyChunk(s, buf); err != nil {
			return err
		}
	}
	return nil
}

// verifyChunk hashes one complete chunk and compares.
func (a *Archive) verifyChunk(s slot, buf []byte) error {
	r := a.idx.ref(s)
	sum := sha256.New()
	sr := io.NewSectionReader(a.f, r.Offset, r.Length)
	n, err := io.CopyBuffer(sum, sr, buf)
	if err == nil && n != r.Length {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			e := a.idx.integrity(a.path, s, "file ends inside the chunk")
			e.Advice, e.Err = hintTruncated, ErrTruncated
			return e
		}
		return fmt.Errorf("archive: read %s: %w", a.idx.describe(s), err)
	}
	if hex.EncodeToString(sum.Sum(nil)) != r.SHA256 {
		return a.idx.integrity(a.path, s, "SHA-256 mismatch")
	}
	return nil
}

// Files lists the sidecar files the archive holds (a model folder's
// config.json, tokenizer files, ...), in name order.
func (a *Archive) Files() []FileEntry { return a.idx.Files }

// ReadFile returns a sidecar file's bytes after checking their hash.
func (a *Archive) ReadFile(name string) ([]byte, error) {
	for i := range a.idx.Files {
		if a.idx.Files[i].Name == name {
			return a.readChunk(slot{i, fileLayer})
		}
	}
	return nil, fmt.Errorf("archive: no file %q in %s", name, a.path)
}
