package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/seedlm/seedlm/internal/encoder"
)

// DecodeStep is the most weights DecodeTensorTo hands to its callback at a
// time, and ReadPassthroughTo's slices are DecodeStep*4 bytes: memory for
// decoding stays a few times this, whatever the tensor's size (a hostile
// index may declare 2^40 weights in a few megabytes of payload).
const DecodeStep = 1 << 20

// DecodeTensor reconstructs a coded tensor as float32 (row-major, the
// source's shape) from its first `layers` layers, summed in layer order;
// 0 means every layer the file holds. In a partial file a request beyond
// the complete layers is clamped to them (see AvailableLayers); asking for
// more layers than the archive has is an error. Every chunk read is
// hash-checked; on a mismatch nothing is returned. It holds the whole
// tensor in memory: DecodeTensorTo does not.
func (a *Archive) DecodeTensor(name string, layers int) ([]float32, error) {
	i, layers, err := a.codedArgs(name, layers)
	if err != nil {
		return nil, err
	}
	n := a.idx.Tensors[i].Layers[0].N // checked: equals the shape's element count, ≤ MaxElements
	if int64(int(n)) != n {
		return nil, fmt.Errorf("archive: tensor %q has %d weights, too many for this platform", name, n)
	}
	out := make([]float32, n)
	err = a.decode(i, layers, func(e0 int64, n int) []float32 { return out[e0 : e0+int64(n)] }, nil)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DecodeTensorTo decodes a coded tensor like DecodeTensor, but hands the
// weights to emit in order, in slices of at most DecodeStep, so memory
// stays bounded whatever the tensor's size. emit must not keep the slice.
// Chunk hashes are checked as the bytes are read and compared after the
// last slice: if the file changed since it was verified, the error comes
// after emit has seen the bad weights, so a caller writing them must
// discard its output on error (decompress writes to a temp file).
func (a *Archive) DecodeTensorTo(name string, layers int, emit func(w []float32) error) error {
	i, layers, err := a.codedArgs(name, layers)
	if err != nil {
		return err
	}
	buf := make([]float32, min(a.idx.Tensors[i].Layers[0].N, DecodeStep))
	return a.decode(i, layers, func(_ int64, n int) []float32 { return buf[:n] }, emit)
}

// codedArgs checks a decode request and returns the index of the entry
// holding the tensor's chunks, with layers clamped to the complete ones.
func (a *Archive) codedArgs(name string, layers int) (int, int, error) {
	i, ok := a.byName[name]
	if !ok {
		return 0, 0, fmt.Errorf("archive: no tensor %q in %s", name, a.path)
	}
	if o := a.idx.Tensors[i].DuplicateOf; o != "" {
		i = a.byName[o] // validated: an earlier tensor
	}
	t := &a.idx.Tensors[i]
	if t.Passthrough {
		return 0, 0, errorf("use ReadPassthrough", "archive: tensor %q is stored losslessly", name)
	}
	if layers < 0 || layers > len(t.Layers) {
		return 0, 0, errorf(fmt.Sprintf("ask for 1 to %d, or 0 for all", len(t.Layers)), "archive: tensor %q has %d layers, %d requested", name, len(t.Layers), layers)
	}
	if layers == 0 || layers > a.avail[i] {
		layers = a.avail[i]
	}
	return i, layers, nil
}

// decode runs over the tensor in steps of DecodeStep weights: for each,
// every layer's blocks covering the step are read, decoded into scratch and
// summed into dst(e0, n) in layer order (float32 adds, exactly as
// encoder.Layer.Decode with add does), then emit (if set) is called.
func (a *Archive) decode(i, layers int, dst func(e0 int64, n int) []float32, emit func([]float32) error) error {
	t := &a.idx.Tensors[i]
	n := t.Layers[0].N
	lrs := make([]*layerReader, layers)
	maxC := 1
	for k := range lrs {
		le := &t.Layers[k]
		lrs[k] = &layerReader{a: a, s: slot{i, k}, le: le, hash: sha256.New()}
		maxC = max(maxC, le.Params.BlockSize)
	}
	// A step's blocks, rounded out to groups of 8 (whose payload starts on
	// a byte boundary), cover at most 16 blocks more than the step.
	scratch := make([]float32, min(n, DecodeStep)+16*int64(maxC))
	for e0 := int64(0); e0 < n; e0 += DecodeStep {
		e1 := min(n, e0+DecodeStep)
		out := dst(e0, int(e1-e0))
		for k, lr := range lrs {
			if err := lr.decode(e0, e1, out, k > 0, scratch); err != nil {
				return err
			}
		}
		if emit != nil {
			if err := emit(out); err != nil {
				return err
			}
		}
	}
	for _, lr := range lrs {
		if err := lr.finish(); err != nil {
			return err
		}
	}
	return nil
}

// layerReader reads one layer's chunk front to back in overlapping
// pieces, hashing each byte once.
type layerReader struct {
	a      *Archive
	s      slot        // the layer's chunk
	le     *LayerEntry // its index entry
	hash   hash.Hash
	hashed int64 // the chunk's first `hashed` bytes went into hash
	buf    []byte
}

func (lr *layerReader) integrity(reason string, kind error, hint string) error {
	e := lr.a.idx.integrity(lr.a.path, lr.s, reason)
	e.Err, e.Advice = kind, hint
	return e
}

// read returns chunk bytes [y0, y1), hashing those not hashed yet. Reads
// go front to back: y0 never passes what was hashed.
func (lr *layerReader) read(y0, y1 int64) ([]byte, error) {
	if int64(cap(lr.buf)) < y1-y0 {
		lr.buf = make([]byte, y1-y0)
	}
	b := lr.buf[:y1-y0]
	if err := readFull(lr.a.f, b, lr.le.Chunk.Offset+y0); err != nil {
		return nil, lr.a.readError(lr.s, err)
	}
	if y1 > lr.hashed {
		lr.hash.Write(b[lr.hashed-y0:])
		lr.hashed = y1
	}
	return b, nil
}

// decode adds (or, for layer 0, writes) weights [e0, e1) of this layer to
// out.
func (lr *layerReader) decode(e0, e1 int64, out []float32, add bool, scratch []float32) error {
	p, n := lr.le.Params, lr.le.N
	C := int64(p.BlockSize)
	nb := (n + C - 1) / C
	b0 := e0 / C &^ 7
	b1 := min(nb, ((e1+C-1)/C+7)&^7)
	y0, y1 := b0*int64(p.BlockBits())/8, lr.le.Chunk.Length
	if b1 < nb {
		y1 = b1 * int64(p.BlockBits()) / 8
	}
	payload, err := lr.read(y0, y1)
	if err != nil {
		return err
	}
	subN := min(n, b1*C) - b0*C
	l := encoder.Layer{Params: p, ExpBias: lr.le.ExpBias, N: int(subN), Payload: payload}
	w := scratch[:subN]
	if err := l.Decode(w, false); err != nil {
		// A decode failure on bytes that do not match their hash is the
		// hash's failure: say so, not "cannot decode".
		if herr := lr.finish(); herr != nil {
			return herr
		}
		return lr.integrity("cannot decode: "+err.Error(), nil, "")
	}
	w = w[e0-b0*C : e1-b0*C]
	if !add {
		copy(out, w)
		return nil
	}
	for i, x := range w {
		out[i] += x
	}
	return nil
}

// finish hashes the rest of the chunk (if decoding stopped early) and
// compares.
func (lr *layerReader) finish() error {
	if rest := lr.le.Chunk.Length - lr.hashed; rest > 0 {
		sr := io.NewSectionReader(lr.a.f, lr.le.Chunk.Offset+lr.hashed, rest)
		got, err := io.CopyBuffer(lr.hash, sr, make([]byte, 64<<10))
		if err == nil && got != rest {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return lr.integrity(shrank, ErrTruncated, hintTruncated)
		}
		lr.hashed = lr.le.Chunk.Length
	}
	if hex.EncodeToString(lr.hash.Sum(nil)) != lr.le.Chunk.SHA256 {
		return lr.integrity("SHA-256 mismatch", nil, "")
	}
	return nil
}

// ReadPassthroughTo hands a passthrough tensor's bytes to emit in order, in
// slices of at most 4*DecodeStep bytes (a multiple of every element size),
// so memory stays bounded. Like DecodeTensorTo it compares the hash after
// the last slice.
func (a *Archive) ReadPassthroughTo(name string, emit func(b []byte) error) error {
	t, ok := a.stored(name)
	if !ok {
		return fmt.Errorf("archive: no tensor %q in %s", name, a.path)
	}
	if !t.Passthrough {
		return errorf("use DecodeTensorTo", "archive: tensor %q is coded, not passthrough", name)
	}
	s, r := slot{a.byName[t.Name], -1}, t.Raw
	h := sha256.New()
	buf := make([]byte, min(r.Length, 4*DecodeStep))
	for off := int64(0); off < r.Length; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), r.Length-off)]
		if err := readFull(a.f, b, r.Offset+off); err != nil {
			return a.readError(s, err)
		}
		h.Write(b)
		if err := emit(b); err != nil {
			return err
		}
	}
	if hex.EncodeToString(h.Sum(nil)) != r.SHA256 {
		return a.idx.integrity(a.path, s, "SHA-256 mismatch")
	}
	return nil
}
