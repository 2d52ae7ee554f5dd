package presets

import (
	"context"
	"fmt"
	"math"

	"github.com/seedlm/seedlm/internal/encoder"
)

// DefaultSampleWeights is how many weights of a tensor MeasureTensor codes
// per candidate when it samples (about 512 blocks at C=8). It is a trade-off:
// the sampling noise of a relative error over ~500 blocks is a few per cent,
// well under the differences between candidate settings, and a sampled
// measurement of one candidate costs about 4096 weights of encode time
// whatever the tensor's size.
const DefaultSampleWeights = 4096

// maxSegment caps the sampling segment length (the lcm of the candidates'
// block sizes); past it segments no longer hold whole blocks of every
// candidate, which only shifts block boundaries, so the estimate stays
// unbiased.
const maxSegment = 4096

// Measurement is the estimated cost and error of coding one tensor with one
// layer stack.
type Measurement struct {
	Layers []encoder.Params
	// Bits is the exact payload size of the full tensor with Layers:
	// Σ_layers 8·PayloadBytes(n) (index entries excluded).
	Bits int64
	// SqErr is the estimated ‖w − ŵ‖² of the full tensor: the sample's
	// relative squared error times the full tensor's ‖w‖². Exact (not an
	// estimate) when Sampled is false.
	SqErr float64
	// Sampled says whether SqErr comes from a sample of the tensor.
	Sampled bool
}

// StackBits is the exact payload size, in bits, of n weights coded with the
// layers of a stack (byte padding of each layer included).
func StackBits(layers []encoder.Params, n int64) int64 {
	var b int64
	for _, p := range layers {
		b += 8 * int64(p.PayloadBytes(int(n)))
	}
	return b
}

// Sampler picks the deterministic sample MeasureTensor codes. The zero value
// is the default; Phase ∈ [0, 1) shifts the strided segments (a second,
// disjoint-ish sample for an unbiased check of choices made on the first).
type Sampler struct {
	Weights int     // target sample size (0: DefaultSampleWeights)
	Phase   float64 // offset of the strided segments, as a fraction of the stride
}

// sample is a sample vector: the strided segments first (n1 weights, the
// only ones whose error is measured), then "anchor" segments that hold each
// candidate's largest-norm block, so the encoder's per-tensor exponent bias
// (chosen from the largest block) is the same on the sample as on the full
// tensor.
type sample struct {
	w  []float32
	n1 int
}

func lcm(a, b int) int {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

func (s Sampler) take(w []float32, stacks [][]encoder.Params) sample {
	want := s.Weights
	if want <= 0 {
		want = DefaultSampleWeights
	}
	seg := 1
	var cs []int
	seenC := map[int]bool{}
	for _, st := range stacks {
		for _, p := range st {
			if l := lcm(seg, p.BlockSize); l <= maxSegment {
				seg = l
			}
			if !seenC[p.BlockSize] {
				seenC[p.BlockSize] = true
				cs = append(cs, p.BlockSize)
			}
		}
	}
	nseg := len(w) / seg
	// Small tensors (or a sample that would cover most of one) are coded
	// whole: exact, and hardly more expensive.
	if len(w) <= 2*want || nseg <= want/seg+1 {
		return sample{w: w, n1: len(w)}
	}
	k := max(1, want/seg)
	stride := float64(nseg) / float64(k)
	picked := map[int]bool{}
	out := make([]float32, 0, (k+len(cs))*seg)
	for i := 0; i < k; i++ {
		si := int(math.Floor((float64(i) + s.Phase) * stride))
		si = min(max(si, 0), nseg-1)
		if picked[si] {
			continue
		}
		picked[si] = true
		out = append(out, w[si*seg:(si+1)*seg]...)
	}
	n1 := len(out)
	for _, c := range cs {
		// The anchor segment of block size c: the one holding the block of
		// largest norm (within the segmented prefix).
		best, bestN := -1, -1.0
		for b := 0; (b+1)*c <= nseg*seg; b++ {
			var n2 float64
			for _, x := range w[b*c : (b+1)*c] {
				n2 += float64(float64(x) * float64(x))
			}
			if n2 > bestN {
				best, bestN = b, n2
			}
		}
		if best < 0 {
			continue
		}
		si := best * c / seg
		if picked[si] {
			continue
		}
		picked[si] = true
		out = append(out, w[si*seg:(si+1)*seg]...)
	}
	return sample{w: out, n1: n1}
}

// FlushSubnormals returns w with float32 subnormals (0 < |x| < 2^−126)
// replaced by zero: w itself when it has none, else a copy.
//
// Why: real checkpoints hold blocks made entirely of subnormals (ppocrv4-rec
// conv2d_106.w_0 and conv2d_117.w_0: ~10 % of blocks at ~1e−40), and the
// encoder's search on those tensors runs at ~270 weights/s instead of
// ~100 K (subnormal arithmetic); flushed, ~3–7 K (what remains is the
// encoder's: blocks below the exponent window tie on every seed, so none is
// pruned). Their squared contribution is below 1e−76, so flushing changes no
// measured error.
func FlushSubnormals(w []float32) []float32 {
	const minNormal = 0x1p-126
	var out []float32
	for i, x := range w {
		if x != 0 && x > -minNormal && x < minNormal {
			if out == nil {
				out = append([]float32(nil), w...)
			}
			out[i] = 0
		}
	}
	if out == nil {
		return w
	}
	return out
}

// MeasureTensor estimates, for each candidate stack, the squared error of
// coding w with it: it codes a deterministic sample of w (evenly strided
// segments, see Sampler) with encoder.Encode and scales the sample's
// relative squared error by ‖w‖². name is used in errors only.
//
// Cost: about Sampler.Weights weights of encode time per candidate layer,
// independent of len(w) (tensors under twice that are coded whole).
func MeasureTensor(ctx context.Context, name string, w []float32, stacks [][]encoder.Params, smp Sampler, opt encoder.Options) ([]Measurement, error) {
	if err := encoder.CheckFinite(name, w); err != nil {
		return nil, err
	}
	var norm2 float64
	for _, x := range w {
		norm2 += float64(float64(x) * float64(x))
	}
	s := smp.take(FlushSubnormals(w), stacks)
	var sn2 float64
	for _, x := range s.w[:s.n1] {
		sn2 += float64(float64(x) * float64(x))
	}
	out := make([]Measurement, len(stacks))
	for i, st := range stacks {
		if len(st) == 0 {
			return nil, fmt.Errorf("tensor %q: candidate %d has no layers", name, i)
		}
		res, err := encoder.Encode(ctx, name, s.w, st, opt)
		if err != nil {
			return nil, err
		}
		m := Measurement{Layers: st, Bits: StackBits(st, int64(len(w))), Sampled: s.n1 < len(w)}
		if !m.Sampled {
			m.SqErr = res.SqErr[len(st)-1]
		} else {
			rec, err := encoder.DecodeLayers(res.Layers, len(s.w))
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
			var se float64
			for j, x := range s.w[:s.n1] {
				d := float64(x) - float64(rec[j])
				se += float64(d * d)
			}
			if sn2 > 0 {
				m.SqErr = se / sn2 * norm2
			} else {
				// An all-zero sample says nothing about the scale; the
				// absolute error per weight is the best guess.
				m.SqErr = se / float64(s.n1) * float64(len(w))
			}
		}
		out[i] = m
	}
	return out, nil
}
