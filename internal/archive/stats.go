package archive

import (
	"math"
	"strconv"
)

// Error figures come from the index: SqErr and Norm2 were measured by the
// encoder on the float32 weights against exactly what the decoder produces.
//
// Layer numbering follows encoder.Result: k is a layer index, and "after
// layer k" means after decoding layers 0…k. k = -1 means no layer decoded
// (ŵ = 0, so the error is ‖w‖²). A k past the last stored layer is clamped
// to it. Passthrough tensors are lossless: their errors are 0.

// SqErrAt is ‖w − ŵ‖² after layer k.
func (t *TensorEntry) SqErrAt(k int) float64 {
	if t.Passthrough {
		return 0
	}
	if k < 0 || len(t.Layers) == 0 {
		return t.Norm2
	}
	return t.Layers[min(k, len(t.Layers)-1)].SqErr
}

// RelErr is ‖w − ŵ‖/‖w‖ after layer k (the absolute error √SqErr for an
// all-zero tensor, as encoder.Result.RelErr does).
func (t *TensorEntry) RelErr(k int) float64 {
	return relErr(t.SqErrAt(k), t.Norm2)
}

func relErr(sq, norm2 float64) float64 {
	if norm2 == 0 {
		return math.Sqrt(sq)
	}
	return math.Sqrt(sq / norm2)
}

// NumElements is the product of Shape (0 if the shape is invalid, which an
// opened archive never has).
func (t *TensorEntry) NumElements() int64 {
	n, err := numElements(t.Shape)
	if err != nil {
		return 0
	}
	return n
}

// Bytes is the size of the tensor's chunks in this file: its raw bytes, or
// every stored layer's payload (0 for a duplicate). Header and index are not apportioned to
// tensors; Totals reports them separately as OverheadBytes.
func (t *TensorEntry) Bytes() int64 { return t.BytesUpTo(len(t.Layers) - 1) }

// BytesUpTo is the size of the chunks of layers 0…k (the raw chunk for a
// passthrough tensor).
func (t *TensorEntry) BytesUpTo(k int) int64 {
	if t.Passthrough {
		if t.Raw == nil {
			return 0
		}
		return t.Raw.Length
	}
	var n int64
	for i := 0; i <= k && i < len(t.Layers); i++ {
		n += t.Layers[i].Chunk.Length
	}
	return n
}

// BitsPerWeight is 8·Bytes/elements, measured from the stored bytes
// (padding of the last byte included), 0 for an empty tensor.
func (t *TensorEntry) BitsPerWeight() float64 {
	n := t.NumElements()
	if n == 0 {
		return 0
	}
	return 8 * float64(t.Bytes()) / float64(n)
}

// Totals are archive-wide figures.
type Totals struct {
	// Duplicates are tensors stored once under another name (tied
	// weights): counted in Tensors and Weights, not in Coded or
	// Passthrough, and they take no bytes.
	Tensors, Coded, Passthrough, Duplicates int
	// Weights counts every tensor's elements; CodedWeights only the coded
	// tensors'.
	Weights, CodedWeights int64
	// CodedBytes and RawBytes are the chunk bytes of coded and passthrough
	// tensors (only the layers counted); OverheadBytes is header + index
	// (0 from Index.Totals, which does not know the encoded index size);
	// FileBytes is their sum.
	CodedBytes, RawBytes, OverheadBytes, FileBytes int64
	// SqErr and Norm2 sum over coded tensors; RelErr = √(SqErr/Norm2) is
	// the archive's relative RMS weight error (passthrough tensors are
	// exact and excluded, as in the notes' comparison tables).
	SqErr, Norm2, RelErr float64
}

// CodedBitsPerWeight is 8·CodedBytes/CodedWeights: the rate of the coded
// tensors from real bytes.
func (t Totals) CodedBitsPerWeight() float64 {
	if t.CodedWeights == 0 {
		return 0
	}
	return 8 * float64(t.CodedBytes) / float64(t.CodedWeights)
}

// FileBitsPerWeight is 8·FileBytes/Weights: everything on disk, header,
// index and passthrough tensors included.
func (t Totals) FileBitsPerWeight() float64 {
	if t.Weights == 0 {
		return 0
	}
	return 8 * float64(t.FileBytes) / float64(t.Weights)
}

// totals counts layers(i) layers of tensor i. Error sums use pairSum over
// all tensors in index order (0 for passthrough), the one summation order
// used everywhere (Stream's selection and report too), so the same archive
// always gives the same float64 totals.
func totals(ts []TensorEntry, layers func(i int) int) Totals {
	var s Totals
	sq := make([]float64, len(ts))
	n2 := make([]float64, len(ts))
	for i := range ts {
		t := &ts[i]
		n := t.NumElements()
		s.Tensors++
		s.Weights += n
		if t.DuplicateOf != "" {
			s.Duplicates++
			continue
		}
		if t.Passthrough {
			s.Passthrough++
			s.RawBytes += t.Bytes()
			continue
		}
		k := layers(i) - 1
		s.Coded++
		s.CodedWeights += n
		s.CodedBytes += t.BytesUpTo(k)
		sq[i] = t.SqErrAt(k)
		n2[i] = t.Norm2
	}
	s.SqErr, s.Norm2 = pairSum(sq), pairSum(n2)
	s.RelErr = relErr(s.SqErr, s.Norm2)
	s.FileBytes = s.CodedBytes + s.RawBytes
	return s
}

// pairSum adds v pairwise (halves split at len/2). It is deterministic, more
// accurate than a running sum, and sumTree reproduces it bit for bit under
// point updates.
func pairSum(v []float64) float64 {
	switch len(v) {
	case 0:
		return 0
	case 1:
		return v[0]
	}
	m := len(v) / 2
	return pairSum(v[:m]) + pairSum(v[m:])
}

// sumTree maintains pairSum(v) under updates of single values in O(log n):
// each node holds the sum of the same range pairSum would add there.
type sumTree struct {
	n    int
	node []float64
}

func newSumTree(v []float64) *sumTree {
	t := &sumTree{n: len(v), node: make([]float64, 4*max(1, len(v)))}
	if len(v) > 0 {
		t.build(0, 0, len(v), v)
	}
	return t
}

func (t *sumTree) build(i, lo, hi int, v []float64) float64 {
	if hi-lo == 1 {
		t.node[i] = v[lo]
	} else {
		m := lo + (hi-lo)/2
		t.node[i] = t.build(2*i+1, lo, m, v) + t.build(2*i+2, m, hi, v)
	}
	return t.node[i]
}

func (t *sumTree) set(pos int, x float64) { t.update(0, 0, t.n, pos, x) }

func (t *sumTree) update(i, lo, hi, pos int, x float64) {
	if hi-lo == 1 {
		t.node[i] = x
		return
	}
	m := lo + (hi-lo)/2
	if pos < m {
		t.update(2*i+1, lo, m, pos, x)
	} else {
		t.update(2*i+2, m, hi, pos, x)
	}
	t.node[i] = t.node[2*i+1] + t.node[2*i+2]
}

func (t *sumTree) sum() float64 {
	if t.n == 0 {
		return 0
	}
	return t.node[0]
}

// SNRdB is 10·log10(‖w‖²/‖w−ŵ‖²), nil when the error is 0 (exact): the one
// definition every command prints.
func SNRdB(norm2, sqErr float64) *float64 {
	if sqErr <= 0 || norm2 <= 0 {
		return nil
	}
	v := 10 * math.Log10(norm2/sqErr)
	return &v
}

// SNRdB is the archive-wide signal-to-noise ratio of the coded tensors,
// from the same sums as RelErr (nil when exact).
func (t Totals) SNRdB() *float64 { return SNRdB(t.Norm2, t.SqErr) }

// TotalsWith sums over the tensors with layers(i) layers of tensor i (at
// least 1 for a coded tensor): the figures after a given number of layers
// (inspect's per-layer rows, a partial file's complete layers). Totals is
// TotalsWith every layer.
func (ix *Index) TotalsWith(layers func(i int) int) Totals { return totals(ix.Tensors, layers) }

// Totals sums over every tensor with all its listed layers.
func (ix *Index) Totals() Totals {
	return totals(ix.Tensors, func(i int) int { return len(ix.Tensors[i].Layers) })
}

// Totals sums over the layers this file holds completely (all of them
// unless the file is partial), with header and index as OverheadBytes.
func (a *Archive) Totals() Totals {
	s := totals(a.idx.Tensors, func(i int) int { return a.avail[i] })
	s.OverheadBytes = HeaderSize + a.IndexBytes()
	s.FileBytes += s.OverheadBytes
	return s
}

// StatDigits is the number of significant decimal digits writers keep of
// the error figures an index records (norm2, sq_err; docs/FORMAT.md
// section 2.9).
const StatDigits = 9

// RoundStat is the canonical rounding of a recorded error figure: the
// float64 nearest to x written with StatDigits significant digits
// (strconv's correctly rounded conversions, integer arithmetic: the same
// on every machine). seedlm compress applies it to what it records, and
// stream and merge copy the figures as they are, so a last-bit
// difference in a figure, should one ever arise between machines, stays
// out of the archive's bytes in all but about one case in 10^7; it also
// shortens the index. It is monotone (x ≤ y ⇒ RoundStat(x) ≤
// RoundStat(y)) and idempotent. 0, NaN and ±Inf are kept.
func RoundStat(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	v, err := strconv.ParseFloat(strconv.FormatFloat(x, 'g', StatDigits, 64), 64)
	if err != nil {
		return x // unreachable: the largest float64 rounds down
	}
	return v
}
