package encoder

import (
	"fmt"
	"math"

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
// the same bits decode to the same floats everywhere.
func (l *Layer) Decode(dst []float32, add bool) error {
	if err := l.Check(); err != nil {
		return err
	}
	if len(dst) < l.N {
		return fmt.Errorf("decode: destination holds %d weights, need %d", len(dst), l.N)
	}
	p := l.Params
	cyc, err := lfsr.CycleFor(p.SeedBits)
	if err != nil {
		return err
	}
	C, P := p.BlockSize, p.LatentDim
	h := int64(1) << (p.SeedBits - 1)
	var scales [1 << MaxExpBits]float64
	for s := 0; s < 1<<p.ExpBits; s++ {
		scales[s] = scaleFor(p.SeedBits, signExtend(uint64(s), uint(p.ExpBits))+l.ExpBias)
	}
	r := bitReader{buf: l.Payload}
	var q [MaxLatentDim]int64
	var blk [MaxBlockSize]float32
	nb := p.Blocks(l.N)
	for b := 0; b < nb; b++ {
		seed := uint32(r.read(uint(p.SeedBits)))
		if seed == 0 {
			return fmt.Errorf("block %d: seed 0 is not a valid LFSR seed (corrupt payload)", b)
		}
		scale := scales[r.read(uint(p.ExpBits))]
		for i := 0; i < P; i++ {
			q[i] = int64(signExtend(r.read(uint(p.CoeffBits)), uint(p.CoeffBits)))
		}
		pos := int(cyc.Pos[seed]) + 1
		v := cyc.State[pos : pos+C*P]
		for c := 0; c < C; c++ {
			var acc int64
			row := v[c*P : c*P+P]
			for i, x := range row {
				acc += (int64(x) - h) * q[i]
			}
			blk[c] = float32(float64(acc) * scale)
		}
		base := b * C
		n := min(C, l.N-base)
		if add {
			for c := 0; c < n; c++ {
				dst[base+c] += blk[c]
			}
		} else {
			copy(dst[base:base+n], blk[:n])
		}
	}
	return nil
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
