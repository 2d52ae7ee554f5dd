package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/encoder"
)

// Container constants (docs/FORMAT.md, "Container").
const (
	// Magic opens every archive; the format version follows it.
	Magic = "SEEDLM"
	// Version is the format version this package writes; it reads every
	// version from MinVersion up to it (docs/FORMAT.md, "Versioning").
	Version = 2
	// MinVersion is the oldest format version this package reads.
	MinVersion = 1
	// HeaderSize is the size of the fixed header before the index.
	HeaderSize = 64

	// Limits a reader enforces before trusting any size read from a file.
	// They are far above any real checkpoint and keep hostile files from
	// making the reader allocate or loop without bound.
	MaxIndexBytes = 256 << 20 // index length (≈ 300 bytes per layer entry)
	MaxTensors    = 1 << 22
	MaxRank       = 64
	MaxLayers     = 16      // progressive layers per tensor
	MaxElements   = 1 << 40 // elements per tensor
	maxNameBytes  = 4096
	maxDTypeBytes = 64
)

// fixedHeader is the decoded 64-byte header.
type fixedHeader struct {
	version   uint16
	indexLen  uint64
	fileLen   uint64
	indexHash [32]byte
}

func (h *fixedHeader) marshal() []byte {
	b := make([]byte, HeaderSize)
	copy(b, Magic)
	binary.LittleEndian.PutUint16(b[6:], h.version)
	binary.LittleEndian.PutUint64(b[8:], h.indexLen)
	binary.LittleEndian.PutUint64(b[16:], h.fileLen)
	copy(b[24:56], h.indexHash[:])
	// b[56:64] stays zero (reserved).
	return b
}

// parseHeader checks everything the header alone can prove; size is the
// file's length on disk.
func parseHeader(path string, b []byte, size int64) (*fixedHeader, error) {
	bad := func(off int64, kind error, hint, format string, a ...any) error {
		return &IntegrityError{Path: path, Chunk: "header", Offset: off, Reason: fmt.Sprintf(format, a...), Advice: hint, Err: kind}
	}
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return nil, bad(0, ErrNotArchive, "check that the file is a .seedlm archive (made by seedlm compress)", "no %q magic at the start", Magic)
	}
	if len(b) < HeaderSize {
		return nil, bad(0, ErrTruncated, hintTruncated, "file is %d bytes, shorter than the %d-byte header", size, HeaderSize)
	}
	h := &fixedHeader{
		version:  binary.LittleEndian.Uint16(b[6:]),
		indexLen: binary.LittleEndian.Uint64(b[8:]),
		fileLen:  binary.LittleEndian.Uint64(b[16:]),
	}
	copy(h.indexHash[:], b[24:56])
	if h.version < MinVersion || h.version > Version {
		return nil, bad(6, ErrVersion, "upgrade seedlm if the archive is newer than this build, else re-download it",
			"format version %d, this build reads versions %d to %d", h.version, MinVersion, Version)
	}
	for i := 56; i < HeaderSize; i++ {
		if b[i] != 0 {
			return nil, bad(int64(i), nil, "", "reserved header byte %d is %#x, want 0", i, b[i])
		}
	}
	if h.indexLen < 2 || h.indexLen > MaxIndexBytes {
		return nil, bad(8, nil, "", "index length %d out of range [2, %d]", h.indexLen, MaxIndexBytes)
	}
	if h.fileLen < HeaderSize+h.indexLen || h.fileLen > math.MaxInt64 {
		return nil, bad(16, nil, "", "file length %d is less than header and index (%d bytes)", h.fileLen, HeaderSize+h.indexLen)
	}
	return h, nil
}

// slot is one chunk's place in the layout: tensor t, layer (-1 for raw).
type slot struct{ t, layer int }

// chunkOrder is the embedded-progressive layout: every tensor's base chunk
// (raw bytes or layer 0) in tensor order, then every layer-1 chunk in tensor
// order, then layer 2, … So any prefix that holds the base chunks decodes,
// and each further byte only adds refinement. It assumes the entries passed
// checkStructure (a passthrough tensor has Raw, a coded one has Layers).
func chunkOrder(ts []TensorEntry) []slot {
	out := make([]slot, 0, len(ts))
	maxL := 0
	for i := range ts {
		if ts[i].Passthrough {
			out = append(out, slot{i, -1})
		} else {
			out = append(out, slot{i, 0})
			maxL = max(maxL, len(ts[i].Layers))
		}
	}
	for k := 1; k < maxL; k++ {
		for i := range ts {
			if !ts[i].Passthrough && k < len(ts[i].Layers) {
				out = append(out, slot{i, k})
			}
		}
	}
	return out
}

func (ix *Index) ref(s slot) *ChunkRef {
	if s.layer < 0 {
		return ix.Tensors[s.t].Raw
	}
	return &ix.Tensors[s.t].Layers[s.layer].Chunk
}

// marshalIndex is the canonical index encoding: encoding/json of Index, no
// indentation, struct fields in declaration order, map keys sorted, floats
// in Go's shortest round-trip form. Deterministic for the same Index.
func marshalIndex(ix *Index) ([]byte, error) {
	if ix.Tensors == nil {
		ix.Tensors = []TensorEntry{} // [] not null
	}
	for i := range ix.Tensors {
		if ix.Tensors[i].Shape == nil {
			// A rank-0 tensor must encode as [], not null.
			ix.Tensors[i].Shape = []int64{}
		}
	}
	b, err := json.Marshal(ix)
	if err != nil {
		return nil, fmt.Errorf("encode index: %w", err)
	}
	if len(b) > MaxIndexBytes {
		return nil, fmt.Errorf("index is %d bytes, over the %d-byte limit (too many tensors or too much metadata)", len(b), MaxIndexBytes)
	}
	return b, nil
}

// layout assigns every chunk its offset and returns the encoded index and
// the file length. Offsets depend on the index length and the index length
// on the offsets' digits, so it iterates from an index length of 0: each
// step can only lengthen the index (larger offsets have at least as many
// digits), so the sequence rises to a fixed point in a few steps.
func layout(ix *Index) ([]byte, int64, error) {
	order := chunkOrder(ix.Tensors)
	var n int64
	for iter := 0; iter < 64; iter++ {
		off := HeaderSize + n
		for _, s := range order {
			r := ix.ref(s)
			r.Offset = off
			off += r.Length
		}
		b, err := marshalIndex(ix)
		if err != nil {
			return nil, 0, err
		}
		if int64(len(b)) == n {
			return b, off, nil
		}
		n = int64(len(b))
	}
	return nil, 0, fmt.Errorf("index layout did not converge (internal error)")
}

// numElements is the product of shape with overflow and range checks.
func numElements(shape []int64) (int64, error) {
	if len(shape) > MaxRank {
		return 0, fmt.Errorf("rank %d exceeds %d", len(shape), MaxRank)
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > MaxElements/d {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, int64(MaxElements))
		}
		n *= d
	}
	return n, nil
}

// payloadBytes mirrors encoder.Params.PayloadBytes in int64 for an n that
// may come from a hostile index (n ≤ MaxElements, so nothing overflows).
func payloadBytes(p encoder.Params, n int64) int64 {
	blocks := (n + int64(p.BlockSize) - 1) / int64(p.BlockSize)
	return (blocks*int64(p.BlockBits()) + 7) / 8
}

func checkHashString(s string) error {
	if len(s) != 2*sha256.Size {
		return fmt.Errorf("sha256 %q is not %d hex digits", s, 2*sha256.Size)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("sha256 %q is not lowercase hex", s)
		}
	}
	return nil
}

func finiteNonNeg(x float64) bool { return x >= 0 && !math.IsInf(x, 0) && !math.IsNaN(x) }

// checkEntry validates one tensor entry on its own (no offsets): names,
// shape, codec parameters, sizes, hashes and error figures.
func checkEntry(t *TensorEntry) error {
	if t.Name == "" || len(t.Name) > maxNameBytes || !utf8.ValidString(t.Name) {
		return fmt.Errorf("tensor name %q is empty, too long or not UTF-8", t.Name)
	}
	if t.DType == "" || len(t.DType) > maxDTypeBytes {
		return fmt.Errorf("dtype %q is empty or too long", t.DType)
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return err
	}
	if !finiteNonNeg(t.Norm2) {
		return fmt.Errorf("norm2 %v is not a finite non-negative number", t.Norm2)
	}
	if t.OmittedLayers < 0 || t.OmittedLayers > MaxLayers {
		return fmt.Errorf("omitted_layers %d out of range [0, %d]", t.OmittedLayers, MaxLayers)
	}
	if t.Passthrough {
		if t.Raw == nil || len(t.Layers) != 0 || t.OmittedLayers != 0 {
			return fmt.Errorf("passthrough tensor must have a raw chunk and no layers")
		}
		if err := checkRef(t.Raw); err != nil {
			return fmt.Errorf("raw chunk: %w", err)
		}
		// Raw chunks of a dtype of whole-byte elements must be exactly
		// elements × size bytes; others are stored as given.
		if sz, ok := dtype.Size(t.DType); ok && t.Raw.Length != n*int64(sz) {
			return fmt.Errorf("raw chunk is %d bytes, want %d (%d elements of %s)", t.Raw.Length, n*int64(sz), n, t.DType)
		}
		return nil
	}
	if t.Raw != nil {
		return fmt.Errorf("coded tensor has a raw chunk")
	}
	if len(t.Layers) == 0 || len(t.Layers) > MaxLayers || len(t.Layers)+t.OmittedLayers > MaxLayers {
		return fmt.Errorf("coded tensor has %d layers (+%d omitted), want 1 to %d", len(t.Layers), t.OmittedLayers, MaxLayers)
	}
	for k := range t.Layers {
		l := &t.Layers[k]
		if err := l.Params.Validate(); err != nil {
			return fmt.Errorf("layer %d: %w", k, err)
		}
		if l.ExpBias < -encoder.MaxExpBias || l.ExpBias > encoder.MaxExpBias {
			return fmt.Errorf("layer %d: exponent bias %d out of range [%d, %d]", k, l.ExpBias, -encoder.MaxExpBias, encoder.MaxExpBias)
		}
		if l.N != n {
			return fmt.Errorf("layer %d codes %d weights, the shape has %d", k, l.N, n)
		}
		if err := checkRef(&l.Chunk); err != nil {
			return fmt.Errorf("layer %d chunk: %w", k, err)
		}
		if want := payloadBytes(l.Params, n); l.Chunk.Length != want {
			return fmt.Errorf("layer %d chunk is %d bytes, want %d for %d weights at %s", k, l.Chunk.Length, want, n, l.Params)
		}
		if !finiteNonNeg(l.SqErr) {
			return fmt.Errorf("layer %d: sq_err %v is not a finite non-negative number", k, l.SqErr)
		}
	}
	return nil
}

func checkRef(r *ChunkRef) error {
	if r.Offset < 0 || r.Length < 0 {
		return fmt.Errorf("negative offset %d or length %d", r.Offset, r.Length)
	}
	return checkHashString(r.SHA256)
}

// parseIndex decodes and validates an index read from a file whose header
// says the complete file is fileLen bytes and the index indexLen bytes. The
// chunks must tile [HeaderSize+indexLen, fileLen) exactly in chunkOrder, so
// nothing overlaps, nothing hides in gaps and every byte is hash-covered.
func parseIndex(path string, raw []byte, fileLen int64, version uint16) (*Index, error) {
	bad := func(format string, a ...any) error {
		return &IntegrityError{Path: path, Chunk: "index", Offset: HeaderSize, Reason: fmt.Sprintf(format, a...)}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	ix := new(Index)
	if err := dec.Decode(ix); err != nil {
		return nil, bad("index is not valid: %v", err)
	}
	if dec.More() {
		return nil, bad("trailing data after the index")
	}
	if len(ix.Tensors) > MaxTensors {
		return nil, bad("%d tensors, more than %d", len(ix.Tensors), MaxTensors)
	}
	if err := checkHeader(&ix.Header, version, len(ix.Tensors)); err != nil {
		return nil, bad("header: %v", err)
	}
	names := make(map[string]bool, len(ix.Tensors))
	for i := range ix.Tensors {
		t := &ix.Tensors[i]
		if err := checkEntry(t); err != nil {
			return nil, bad("tensor %d (%q): %v", i, t.Name, err)
		}
		if names[t.Name] {
			return nil, bad("tensor name %q appears twice", t.Name)
		}
		names[t.Name] = true
	}
	off := HeaderSize + int64(len(raw))
	for _, s := range chunkOrder(ix.Tensors) {
		r := ix.ref(s)
		if r.Offset != off {
			return nil, bad("tensor %q chunk %q starts at %d, the layout puts it at %d",
				ix.Tensors[s.t].Name, chunkName(s.layer), r.Offset, off)
		}
		if r.Length > fileLen-off {
			return nil, bad("tensor %q chunk %q (%d bytes at %d) runs past the end of the file (%d bytes)",
				ix.Tensors[s.t].Name, chunkName(s.layer), r.Length, off, fileLen)
		}
		off += r.Length
	}
	if off != fileLen {
		return nil, bad("chunks end at %d, the header says the file is %d bytes", off, fileLen)
	}
	return ix, nil
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkHeader validates the header fields that have rules of their own and
// brings a version-1 header up to date: version 1 recorded a sharded
// source's index name as Settings["source_index"], version 2 in SourceIndex.
func checkHeader(h *Header, version uint16, tensors int) error {
	if version == 1 {
		if h.SourceIndex != "" || h.Part != nil {
			return fmt.Errorf("source_index and part are version-2 fields, the archive says version 1")
		}
		if name, ok := h.Settings["source_index"]; ok {
			h.SourceIndex = name
			delete(h.Settings, "source_index")
			if len(h.Settings) == 0 {
				h.Settings = nil
			}
		}
	}
	if h.SourceIndex != "" && (len(h.SourceIndex) > maxNameBytes || !utf8.ValidString(h.SourceIndex)) {
		return fmt.Errorf("source_index %q is too long or not UTF-8", h.SourceIndex)
	}
	if p := h.Part; p != nil {
		if err := p.check(tensors); err != nil {
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
