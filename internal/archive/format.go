package archive

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/seedlm/seedlm/internal/encoder"
)

// Container constants (docs/FORMAT.md, "Container").
const (
	// Magic opens every archive; the format version follows it.
	Magic = "SEEDLM"
	// Version is the format version this package writes; it reads every
	// version from MinVersion up to it (docs/FORMAT.md, "Versioning").
	// Version 2 adds the padded index (section 1.3), the source_index
	// header field and the part record (section 2.1).
	Version = 2
	// MinVersion is the oldest format version this package reads.
	MinVersion = 1
	// HeaderSize is the size of the fixed header before the index.
	HeaderSize = 64

	// Limits a reader enforces before trusting any size read from a file
	// (docs/FORMAT.md section 2.4). They are far above real checkpoints
	// (an index entry is ≈ 400 bytes plus ≈ 250 per extra layer: 600,000
	// one-layer tensors fit) and keep hostile files from making the reader
	// allocate or loop without bound.
	MaxIndexBytes    = 256 << 20 // index length (≈ 300 bytes per layer entry)
	MaxTensors       = 1 << 20
	MaxRank          = 64
	MaxLayers        = 16      // progressive layers per tensor
	MaxElements      = 1 << 40 // elements per tensor
	MaxTotalElements = 1 << 44 // elements in all tensors together
	maxNameBytes     = 4096
	maxDTypeBytes    = 64
	// MaxFiles and MaxFileBytes bound the sidecar files (Index.Files): a
	// model folder's configs and tokenizers are a handful of files, the
	// largest tokenizer.json some tens of MB.
	MaxFiles     = 1024
	MaxFileBytes = 1 << 30
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
		return nil, &NotArchiveError{Path: path, Reason: fmt.Sprintf("no %q magic at the start", Magic)}
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

// slot is one chunk's place in the layout: tensor t, layer (-1 for raw);
// or, with layer fileLayer, sidecar file t.
type slot struct{ t, layer int }

// fileLayer is the layer of a slot that holds a sidecar file's bytes.
const fileLayer = -2

// chunkOrder is the embedded-progressive layout: every sidecar file in
// order, then every tensor's base chunk (raw bytes or layer 0) in tensor
// order, then every layer-1 chunk in tensor order, then layer 2, … So any
// prefix that holds the base chunks decodes (the small files included),
// and each further byte only adds refinement. A duplicate tensor has no
// chunks. It assumes the entries passed checkEntry (a passthrough tensor
// has Raw, a coded one has Layers).
func (ix *Index) chunkOrder() []slot {
	ts := ix.Tensors
	out := make([]slot, 0, len(ix.Files)+len(ts))
	for i := range ix.Files {
		out = append(out, slot{i, fileLayer})
	}
	maxL := 0
	for i := range ts {
		switch {
		case ts[i].DuplicateOf != "":
		case ts[i].Passthrough:
			out = append(out, slot{i, -1})
		default:
			out = append(out, slot{i, 0})
			maxL = max(maxL, len(ts[i].Layers))
		}
	}
	for k := 1; k < maxL; k++ {
		for i := range ts {
			if !ts[i].Passthrough && ts[i].DuplicateOf == "" && k < len(ts[i].Layers) {
				out = append(out, slot{i, k})
			}
		}
	}
	return out
}

func (ix *Index) ref(s slot) *ChunkRef {
	switch {
	case s.layer == fileLayer:
		return &ix.Files[s.t].Chunk
	case s.layer < 0:
		return ix.Tensors[s.t].Raw
	}
	return &ix.Tensors[s.t].Layers[s.layer].Chunk
}

// describe names slot s in messages: `tensor "x" chunk "layer 1"` or
// `file "config.json"`.
func (ix *Index) describe(s slot) string {
	if s.layer == fileLayer {
		return fmt.Sprintf("file %q", ix.Files[s.t].Name)
	}
	return fmt.Sprintf("tensor %q chunk %q", ix.Tensors[s.t].Name, chunkName(s.layer))
}

// integrity is an *IntegrityError about slot s's chunk.
func (ix *Index) integrity(path string, s slot, reason string) *IntegrityError {
	e := &IntegrityError{Path: path, Chunk: chunkName(s.layer), Offset: ix.ref(s).Offset, Reason: reason}
	if s.layer == fileLayer {
		e.File = ix.Files[s.t].Name
	} else {
		e.Tensor = ix.Tensors[s.t].Name
	}
	return e
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

// Widest JSON forms of the index fields whose values are known only after
// encoding (docs/FORMAT.md section 1.3): a non-negative float64 as
// encoding/json writes it takes at most 24 characters
// ("0.0000012345678901234567"; "1.2345678901234567e-308" is 23), an
// exponent bias at most 4 ("-100").
const (
	maxFloatChars = 24
	maxBiasChars  = 4
)

// indexReserve is the index length writers reserve: the canonical encoding
// of ix with every norm2 and sq_err at its widest form and every exp_bias
// at its widest. It depends only on what a plan fixes before encoding
// (names, shapes, rules, codec parameters, chunk offsets and lengths), never
// on hashes, errors or biases, so a writer knows every chunk's offset before
// it encodes anything, and any writer (compress, merge, stream) that lays
// out the same index gets the same bytes.
func indexReserve(ix *Index) (int64, error) {
	sk := &Index{Header: ix.Header, Tensors: make([]TensorEntry, len(ix.Tensors)), Files: ix.Files}
	zero := strings.Repeat("0", 2*sha256.Size)
	var floats, biases int64
	if q := ix.Header.Quality; q != nil {
		// Measured after encoding: every figure at its widest, whether the
		// record is still pending or filled in.
		c := &Quality{Text: q.Text, Tokens: q.Tokens}
		for _, f := range c.figures() {
			*f = new(float64)
			floats++
		}
		sk.Header.Quality = c
	}
	for i := range ix.Tensors {
		t := ix.Tensors[i]
		if t.DuplicateOf != "" {
			// No chunks; norm2 is always 0.
		} else if t.Passthrough {
			if t.Raw != nil {
				r := *t.Raw
				r.SHA256 = zero
				t.Raw = &r
			}
		} else {
			floats++ // norm2
			ls := make([]LayerEntry, len(t.Layers))
			for k, l := range t.Layers {
				l.ExpBias, l.SqErr, l.Chunk.SHA256 = 0, 0, zero
				ls[k] = l
			}
			t.Layers = ls
			floats += int64(len(ls))
			biases += int64(len(ls))
		}
		t.Norm2 = 0
		sk.Tensors[i] = t
	}
	b, err := marshalIndex(sk)
	if err != nil {
		return 0, err
	}
	n := int64(len(b)) + floats*(maxFloatChars-1) + biases*(maxBiasChars-1)
	if n > MaxIndexBytes {
		return 0, fmt.Errorf("index would be up to %d bytes, over the %d-byte limit (too many tensors or too much metadata)", n, int64(MaxIndexBytes))
	}
	return n, nil
}

// planLayout gives every chunk its offset for an index region of
// indexReserve bytes and returns that length and the file length.
func planLayout(ix *Index) (reserve, fileLen int64, err error) {
	return fixLayout(ix, indexReserve)
}

// fixLayout gives every chunk its offset for an index region of
// regionLen(ix) bytes and returns that length and the file length. Offsets
// depend on the region's length and the length on the offsets' digits, so
// it iterates from a length of 0: a longer region only moves offsets up,
// which never shortens it (more digits at most), so the sequence rises to a
// fixed point in a few steps.
func fixLayout(ix *Index, regionLen func(*Index) (int64, error)) (n, fileLen int64, err error) {
	order := ix.chunkOrder()
	for iter := 0; iter < 64; iter++ {
		off := HeaderSize + n
		for _, s := range order {
			r := ix.ref(s)
			r.Offset = off
			off += r.Length
		}
		r, err := regionLen(ix)
		if err != nil {
			return 0, 0, err
		}
		if r == n {
			return n, off, nil
		}
		n = r
	}
	return 0, 0, fmt.Errorf("index layout did not converge (internal error)")
}

// layout assigns every chunk its offset (planLayout) and returns the
// encoded index, padded with spaces to its reserved length, and the file
// length.
func layout(ix *Index) ([]byte, int64, error) {
	reserve, fileLen, err := planLayout(ix)
	if err != nil {
		return nil, 0, err
	}
	b, err := encodeIndex(ix, reserve)
	return b, fileLen, err
}

// encodeIndex is the canonical index padded with spaces to reserve bytes.
func encodeIndex(ix *Index, reserve int64) ([]byte, error) {
	b, err := marshalIndex(ix)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > reserve {
		return nil, fmt.Errorf("index is %d bytes, more than the %d reserved for it (internal error)", len(b), reserve)
	}
	out := make([]byte, reserve)
	copy(out, b)
	for i := len(b); i < len(out); i++ {
		out[i] = ' '
	}
	return out, nil
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
	if t.Name == "__metadata__" {
		return fmt.Errorf("tensor name __metadata__ is reserved for safetensors metadata")
	}
	if t.DType == "" || len(t.DType) > maxDTypeBytes {
		return fmt.Errorf("dtype %q is empty or too long", t.DType)
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return err
	}
	if err := checkDType(t, n); err != nil {
		return err
	}
	if !finiteNonNeg(t.Norm2) {
		return fmt.Errorf("norm2 %v is not a finite non-negative number", t.Norm2)
	}
	if t.OmittedLayers < 0 || t.OmittedLayers > MaxLayers {
		return fmt.Errorf("omitted_layers %d out of range [0, %d]", t.OmittedLayers, MaxLayers)
	}
	if t.DuplicateOf != "" {
		// Its bytes are another tensor's (checkIndex checks which).
		if t.Raw != nil || len(t.Layers) != 0 || t.OmittedLayers != 0 || t.Norm2 != 0 {
			return fmt.Errorf("a duplicate (of %q) must have no raw chunk, no layers, no omitted layers and norm2 0", t.DuplicateOf)
		}
		return nil
	}
	if t.Passthrough {
		if t.Raw == nil || len(t.Layers) != 0 || t.OmittedLayers != 0 {
			return fmt.Errorf("passthrough tensor must have a raw chunk and no layers")
		}
		if err := checkRef(t.Raw); err != nil {
			return fmt.Errorf("raw chunk: %w", err)
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

// decodeIndex reads one index object from r, an entry at a time, so the
// memory it takes is that of the decoded entries plus one entry's text,
// not a copy of the whole index. Like json.Decoder with
// DisallowUnknownFields it rejects unknown fields; it also rejects repeated
// keys, more than MaxTensors entries (before decoding the next), and
// anything but whitespace after the object.
func decodeIndex(r io.Reader) (*Index, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	delim := func(want json.Delim) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); !ok || d != want {
			return fmt.Errorf("found %v where %q was expected", tok, string(want))
		}
		return nil
	}
	ix := new(Index)
	if err := delim('{'); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, fmt.Errorf("field %q appears twice", key)
		}
		seen[key] = true
		switch key {
		case "header":
			if err := dec.Decode(&ix.Header); err != nil {
				return nil, fmt.Errorf("header: %w", err)
			}
		case "tensors":
			if ix.Tensors, err = decodeArray[TensorEntry](dec, delim, MaxTensors, "tensors", "tensor"); err != nil {
				return nil, err
			}
		case "files":
			if ix.Files, err = decodeArray[FileEntry](dec, delim, MaxFiles, "files", "file"); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown field %q", key)
		}
	}
	if err := delim('}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the index")
	}
	return ix, nil
}

// decodeArray decodes the JSON array of T that dec is at, an element at a
// time, refusing more than max elements before decoding the next. plural
// and singular name the elements in errors.
func decodeArray[T any](dec *json.Decoder, delim func(json.Delim) error, max int, plural, singular string) ([]T, error) {
	if err := delim('['); err != nil {
		return nil, fmt.Errorf("%s: %w", plural, err)
	}
	out := []T{}
	for dec.More() {
		if len(out) >= max {
			return nil, fmt.Errorf("more than %d %s", max, plural)
		}
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s %d: %w", singular, len(out), err)
		}
		out = append(out, v)
	}
	if err := delim(']'); err != nil {
		return nil, err
	}
	return out, nil
}

// parseIndex decodes and validates the index read from r (the region after
// the header) of a file whose header says the complete file is fileLen
// bytes and the index indexLen bytes. The chunks must tile
// [HeaderSize+indexLen, fileLen) exactly in chunkOrder, so nothing overlaps,
// nothing hides in gaps and every byte is hash-covered.
func parseIndex(path string, r io.Reader, indexLen, fileLen int64, version uint16) (*Index, error) {
	bad := func(format string, a ...any) error {
		return &IntegrityError{Path: path, Chunk: "index", Offset: HeaderSize, Reason: fmt.Sprintf(format, a...)}
	}
	ix, err := decodeIndex(r)
	if err != nil {
		return nil, bad("index is not valid: %v", err)
	}
	if err := checkIndex(ix, version); err != nil {
		return nil, bad("%v", err)
	}
	off := HeaderSize + indexLen
	for _, s := range ix.chunkOrder() {
		r := ix.ref(s)
		if r.Offset != off {
			return nil, bad("%s starts at %d, the layout puts it at %d", ix.describe(s), r.Offset, off)
		}
		if r.Length > fileLen-off {
			return nil, bad("%s (%d bytes at %d) runs past the end of the file (%d bytes)", ix.describe(s), r.Length, off, fileLen)
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
