package encoder

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/seedlm/seedlm/internal/lfsr"
)

// Layer is one coded pass over a tensor: the blocks of a base layer code the
// weights, those of an enhancement layer code the residual the layers before
// it left.
type Layer struct {
	Params Params
	// ExpBias is the per-tensor exponent bias: a block's exponent is its
	// stored E-bit value plus ExpBias.
	ExpBias int
	// N is the number of weights coded (the tail block is zero-padded).
	N int
	// Payload holds the bit-packed blocks (see bits.go for the bit order).
	Payload []byte
}

// Check validates a layer read from untrusted storage.
func (l *Layer) Check() error {
	if err := l.Params.Validate(); err != nil {
		return err
	}
	if l.N < 0 {
		return fmt.Errorf("negative weight count %d", l.N)
	}
	if l.ExpBias < -MaxExpBias || l.ExpBias > MaxExpBias {
		return fmt.Errorf("exponent bias %d out of range [%d, %d]", l.ExpBias, -MaxExpBias, MaxExpBias)
	}
	if want := l.Params.PayloadBytes(l.N); len(l.Payload) != want {
		return fmt.Errorf("payload is %d bytes, want %d for %d weights at %s", len(l.Payload), want, l.N, l.Params)
	}
	return nil
}

// scaleFor returns 2^e / (2^{K−1} − 1) as float64. The division is correctly
// rounded, so every platform gets the same value.
func scaleFor(k, e int) float64 {
	return math.Ldexp(1, e) / float64(int64(1)<<(k-1)-1)
}

// Decode writes the layer's reconstruction into dst (len(dst) ≥ N). When add is
// true it adds to dst instead (progressive decoding). Each weight is
// float32(float64(Σ_p (V_cp − 2^{K−1})·q_p) · 2^e/(2^{K−1}−1)): the sum is an
// exact integer and there is one rounding to float64 and one to float32, so
// the same bits decode to the same floats everywhere. Large layers are
// decoded by GOMAXPROCS goroutines.
func (l *Layer) Decode(dst []float32, add bool) error {
	return l.DecodeParallel(dst, add, 0)
}

// parallelDecodeMin is the layer size below which decoding stays on one
// goroutine (spawning costs more than it saves).
const parallelDecodeMin = 1 << 16

// DecodeParallel is Decode with an explicit worker count (0: GOMAXPROCS).
// The result does not depend on workers.
func (l *Layer) DecodeParallel(dst []float32, add bool, workers int) error {
	if err := l.Check(); err != nil {
		return err
	}
	if len(dst) < l.N {
		return fmt.Errorf("decode: destination holds %d weights, need %d", len(dst), l.N)
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	nb := l.Params.Blocks(l.N)
	if l.N < parallelDecodeMin || workers == 1 {
		return l.decodeRange(dst, add, 0, nb)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	per := (nb + workers - 1) / workers
	for i := 0; i < workers; i++ {
		b0, b1 := i*per, min((i+1)*per, nb)
		if b0 >= b1 {
			break
		}
		wg.Add(1)
		go func(i, b0, b1 int) {
			defer wg.Done()
			errs[i] = l.decodeRange(dst, add, b0, b1)
		}(i, b0, b1)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// fieldReader extracts blocks' stored fields from a payload.
type fieldReader struct {
	payload            []byte
	bb                 int
	kb, eb, cb         uint
	kmask, emask, cmsk uint64
	P                  int
	scales             [1 << MaxExpBits]float64
}

func newFieldReader(l *Layer) *fieldReader {
	p := l.Params
	f := &fieldReader{payload: l.Payload, bb: p.BlockBits(), P: p.LatentDim,
		kb: uint(p.SeedBits), eb: uint(p.ExpBits), cb: uint(p.CoeffBits)}
	f.kmask, f.emask, f.cmsk = 1<<f.kb-1, 1<<f.eb-1, 1<<f.cb-1
	for s := 0; s < 1<<p.ExpBits; s++ {
		f.scales[s] = scaleFor(p.SeedBits, signExtend(uint64(s), uint(p.ExpBits))+l.ExpBias)
	}
	return f
}

// block returns block b's seed and scale and writes its coefficients to q.
func (f *fieldReader) block(b int, q *[MaxLatentDim]int32) (seed uint32, scale float64, err error) {
	bit := b * f.bb
	if f.bb <= 57 {
		// Blocks of ≤ 57 bits (the common case) come out of one unaligned
		// 64-bit load; the last few bytes of the payload are padded.
		var x uint64
		if i := bit / 8; i+8 <= len(f.payload) {
			x = binary.LittleEndian.Uint64(f.payload[i:])
		} else {
			var word [8]byte
			copy(word[:], f.payload[i:])
			x = binary.LittleEndian.Uint64(word[:])
		}
		x >>= bit % 8
		seed = uint32(x & f.kmask)
		x >>= f.kb
		scale = f.scales[x&f.emask]
		x >>= f.eb
		sh := 64 - f.cb
		for i := 0; i < f.P; i++ {
			q[i] = int32(int64((x&f.cmsk)<<sh) >> sh)
			x >>= f.cb
		}
	} else {
		r := bitReader{buf: f.payload}
		r.seek(bit)
		seed = uint32(r.read(f.kb))
		scale = f.scales[r.read(f.eb)]
		for i := 0; i < f.P; i++ {
			q[i] = int32(signExtend(r.read(f.cb), f.cb))
		}
	}
	if seed == 0 {
		return 0, 0, fmt.Errorf("block %d: seed 0 is not a valid LFSR seed (corrupt payload)", b)
	}
	return seed, scale, nil
}

// decodeRange decodes blocks [b0, b1).
func (l *Layer) decodeRange(dst []float32, add bool, b0, b1 int) error {
	p := l.Params
	C := p.BlockSize
	f := newFieldReader(l)
	// The SIMD path takes whole blocks; a partial tail block goes the
	// portable way.
	full := b1
	if b1*C > l.N {
		full = b1 - 1
	}
	if b0 < full && simdDecodable(p) {
		if err := l.decodeSIMD(f, dst, add, b0, full); err != nil {
			return err
		}
		b0 = full
	}
	if b0 >= b1 {
		return nil
	}
	ct, err := centeredFor(p.SeedBits)
	if err != nil {
		return err
	}
	P := p.LatentDim
	var q [MaxLatentDim]int32
	var blk [MaxBlockSize]float32
	for b := b0; b < b1; b++ {
		seed, scale, err := f.block(b, &q)
		if err != nil {
			return err
		}
		pos := int(ct.pos[seed]) + 1
		v := ct.f[pos : pos+C*P]
		base := b * C
		n := min(C, l.N-base)
		out := dst[base : base+n]
		if add {
			out = blk[:n]
		}
		// Float64 products and sums of these integers are exact (|Σ| <
		// 2^53), so this equals the integer formula bit for bit; the
		// products are still rounded explicitly (float64(…)), so that no
		// fused multiply-add appears anywhere in the package's compiled
		// code (TestCrossArch checks the arm64 build for them).
		if P == 3 { // the paper's 4-bit configuration: unrolled
			q0, q1, q2 := float64(q[0]), float64(q[1]), float64(q[2])
			for c := range out {
				row := v[c*3 : c*3+3]
				out[c] = float32((float64(row[0]*q0) + float64(row[1]*q1) + float64(row[2]*q2)) * scale)
			}
		} else {
			var qf [MaxLatentDim]float64
			for i := 0; i < P; i++ {
				qf[i] = float64(q[i])
			}
			for c := range out {
				row := v[c*P : c*P+P]
				var acc float64
				for i, x := range row {
					acc += float64(x * qf[i])
				}
				out[c] = float32(acc * scale)
			}
		}
		if add {
			d := dst[base : base+n]
			for c := range d {
				d[c] += out[c]
			}
		}
	}
	return nil
}

// centered is a cycle as signed integers V − 2^{K−1}, the form decode uses.
type centered struct {
	f   []float64 // exact integers
	pos []int32
}

var (
	centeredMu    sync.Mutex
	centeredCache = map[int]*centered{}
)

func centeredFor(k int) (*centered, error) {
	centeredMu.Lock()
	defer centeredMu.Unlock()
	if c, ok := centeredCache[k]; ok {
		return c, nil
	}
	cyc, err := lfsr.CycleFor(k)
	if err != nil {
		return nil, err
	}
	h := int64(1) << (k - 1)
	c := &centered{f: make([]float64, len(cyc.State)), pos: cyc.Pos}
	for i, s := range cyc.State {
		c.f[i] = float64(int64(s) - h)
	}
	centeredCache[k] = c
	return c, nil
}

// DecodeLayers reconstructs n weights from the first len(layers) layers of a
// tensor, summed in layer order.
func DecodeLayers(layers []*Layer, n int) ([]float32, error) {
	out := make([]float32, n)
	for i, l := range layers {
		if l.N != n {
			return nil, fmt.Errorf("layer %d codes %d weights, want %d", i, l.N, n)
		}
		if err := l.Decode(out, i > 0); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return out, nil
}
