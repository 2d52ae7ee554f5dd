package encoder

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// Kernel selects the pruning kernel.
type Kernel int

const (
	// KernelAuto uses the fastest kernel the CPU supports.
	KernelAuto Kernel = iota
	// KernelGeneric forces the portable pure-Go kernel.
	KernelGeneric
	// kernelLooped forces the looped assembly kernel where an unrolled one
	// exists (tests cover both).
	kernelLooped
)

// Options tune how a layer is encoded; none of them changes the format, and
// Workers and Kernel never change the output.
type Options struct {
	// Workers is the number of goroutines (0: GOMAXPROCS).
	Workers int
	// NoRefine turns off the quantizer's refinements (trying e±1 and ±1
	// coordinate steps on q). Off, each seed's code is plain rounding at
	// the range-filling exponent.
	NoRefine bool
	Kernel   Kernel
	// Progress, when set, is called from worker goroutines with the number
	// of blocks just finished.
	Progress func(blocks int)
}

func (o Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// CheckFinite returns an error naming the tensor and the first NaN or Inf.
func CheckFinite(name string, w []float32) error {
	for i, x := range w {
		if x != x || math.IsInf(float64(x), 0) {
			return fmt.Errorf("tensor %q: element %d is %v; SeedLM can only code finite weights", name, i, x)
		}
	}
	return nil
}

// ExpBias picks the per-tensor exponent bias: the window of 2^E exponents
// is placed so its top covers the block with the largest norm (plus one step
// of headroom). Without it, weights with σ ≈ 0.01 pin most blocks at the
// bottom of a fixed [−8, 7] window.
//
// For a block w, the least-squares coefficients in U units have norm about
// √(3/C)·‖w‖ (U's entries are roughly uniform on [−1, 1]), and the
// range-filling rule wants max|t|/2^e ≤ qmax+½.
func ExpBias(w []float32, p Params) int {
	C := p.BlockSize
	maxn := 0.0
	for b := 0; b*C < len(w); b++ {
		var s float64
		for _, x := range w[b*C : min(len(w), b*C+C)] {
			s += float64(float64(x) * float64(x))
		}
		maxn = math.Max(maxn, s)
	}
	if maxn == 0 {
		return 0
	}
	top := ceilLog2(math.Sqrt(maxn)*math.Sqrt(3/float64(C))/(float64(p.qmax())+0.5)) + 1
	return clampInt(top-p.emax(), -MaxExpBias, MaxExpBias)
}

// ceilLog2 is ⌈log2 y⌉ for y > 0, exactly (from Frexp, not math.Log2,
// whose last bit differs between amd64 and arm64 and could move the
// ceiling for y just above a power of two).
func ceilLog2(y float64) int {
	m, e := math.Frexp(y) // y = m·2^e, m ∈ [½, 1)
	if m == 0.5 {
		return e - 1
	}
	return e
}

// EncodeLayer codes w with p. name is used in errors only.
func EncodeLayer(ctx context.Context, name string, w []float32, p Params, opt Options) (*Layer, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	if err := CheckFinite(name, w); err != nil {
		return nil, err
	}
	bs, err := basisFor(p)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	bias := ExpBias(w, p)
	qz := newQuantizer(p, bs, bias, !opt.NoRefine)
	nb := p.Blocks(len(w))
	codes := make([]code, nb)

	// Workers take chunks of tiles from a shared counter; each block's code
	// depends only on its weights, so the split never changes the output.
	const chunkTiles = 4
	ntiles := (nb + lanes - 1) / lanes
	var next atomic.Int64
	var wg sync.WaitGroup
	nw := min(opt.workers(), max(1, (ntiles+chunkTiles-1)/chunkTiles))
	errs := make([]error, nw)
	for wi := 0; wi < nw; wi++ {
		wg.Add(1)
		go func(wi int) {
			defer wg.Done()
			s := newSearcher(qz, opt.Kernel)
			C := p.BlockSize
			buf := make([]float64, lanes*C)
			ws := make([][]float64, 0, lanes)
			for {
				if err := ctx.Err(); err != nil {
					errs[wi] = err
					return
				}
				t0 := int(next.Add(chunkTiles)) - chunkTiles
				if t0 >= ntiles {
					return
				}
				for ti := t0; ti < min(t0+chunkTiles, ntiles); ti++ {
					b0 := ti * lanes
					b1 := min(b0+lanes, nb)
					ws = ws[:0]
					for b := b0; b < b1; b++ {
						blk := buf[(b-b0)*C : (b-b0+1)*C]
						for c := range blk {
							blk[c] = 0
						}
						for c, x := range w[b*C : min(len(w), b*C+C)] {
							blk[c] = float64(x)
						}
						ws = append(ws, blk)
					}
					s.searchTile(ws, codes[b0:b1])
					if opt.Progress != nil {
						opt.Progress(b1 - b0)
					}
				}
			}
		}(wi)
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, e)
		}
	}
	return &Layer{Params: p, ExpBias: bias, N: len(w), Payload: pack(p, codes)}, nil
}

func pack(p Params, codes []code) []byte {
	bw := bitWriter{buf: make([]byte, 0, p.PayloadBytes(len(codes)*p.BlockSize))}
	for i := range codes {
		c := &codes[i]
		bw.write(uint64(c.seed), uint(p.SeedBits))
		bw.write(uint64(int64(c.e)), uint(p.ExpBits))
		for k := 0; k < p.LatentDim; k++ {
			bw.write(uint64(int64(c.q[k])), uint(p.CoeffBits))
		}
	}
	return bw.flush()
}

// Result is a tensor coded in progressive layers.
type Result struct {
	Layers []*Layer
	// Norm2 is ‖w‖² (float64 over the float32 input).
	Norm2 float64
	// SqErr[k] is ‖w − ŵ_{≤k}‖², measured on the float32 reconstruction
	// that decoding layers 0…k gives.
	SqErr []float64
}

// RelErr is ‖w − ŵ‖/‖w‖ after decoding layers 0…k (0 for a zero tensor
// coded exactly).
func (r *Result) RelErr(k int) float64 {
	if r.Norm2 == 0 {
		return math.Sqrt(r.SqErr[k])
	}
	return math.Sqrt(r.SqErr[k] / r.Norm2)
}

// Encode codes w in len(layers) progressive layers: layer 0 codes w, layer i
// codes what layers 0…i−1 left, float32(w − ŵ_{<i}).
func Encode(ctx context.Context, name string, w []float32, layers []Params, opt Options) (*Result, error) {
	if len(layers) == 0 {
		return nil, fmt.Errorf("tensor %q: no layers to encode", name)
	}
	if err := CheckFinite(name, w); err != nil {
		return nil, err
	}
	res := &Result{}
	for _, x := range w {
		res.Norm2 += float64(float64(x) * float64(x))
	}
	recon := make([]float32, len(w))
	target := w
	for i, p := range layers {
		l, err := EncodeLayer(ctx, name, target, p, opt)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if err := l.Decode(recon, i > 0); err != nil {
			return nil, fmt.Errorf("tensor %q layer %d: %w", name, i, err)
		}
		res.Layers = append(res.Layers, l)
		var se float64
		if i+1 < len(layers) {
			target = make([]float32, len(w))
		}
		for k, x := range w {
			d := float64(x) - float64(recon[k])
			se += float64(d * d)
			if i+1 < len(layers) {
				target[k] = float32(d)
			}
		}
		res.SqErr = append(res.SqErr, se)
	}
	return res, nil
}
