// Package encoder is the SeedLM block codec: every block of C weights is
// stored as a K-bit LFSR seed s, a shared exponent e and P quantized
// coefficients q, and decodes to ŵ = U(s)·q·2^e.
//
// The seed is the exact argmin, over all 2^K−1 seeds, of the squared error of
// what the decoder will produce (after quantization), ties going to the
// lowest seed. The fast search prunes with a proven lower bound and rescores
// every survivor with the same exact function the brute-force reference uses,
// so both pick the same seed.
package encoder

import (
	"fmt"

	"github.com/seedlm/seedlm/internal/lfsr"
)

// Params are the codec settings of one layer.
type Params struct {
	BlockSize int `json:"block_size" yaml:"block_size"`       // C: weights per block
	LatentDim int `json:"latent_dim" yaml:"latent_dim"`       // P: coefficients per block
	SeedBits  int `json:"seed_bits" yaml:"seed_bits"`         // K: LFSR width
	CoeffBits int `json:"coeff_bits" yaml:"coeff_bits"`       // B: bits per coefficient (two's complement)
	ExpBits   int `json:"exponent_bits" yaml:"exponent_bits"` // E: bits of the shared exponent (two's complement)
}

// The paper's configurations.
var (
	// Paper4Bit: C=8, P=3, K=16 → 32 bits per block, 4.000 bits per weight.
	Paper4Bit = Params{BlockSize: 8, LatentDim: 3, SeedBits: 16, CoeffBits: 4, ExpBits: 4}
	// Paper3Bit: C=12, P=4, K=16 → 36 bits per block, 3.000 bits per weight.
	Paper3Bit = Params{BlockSize: 12, LatentDim: 4, SeedBits: 16, CoeffBits: 4, ExpBits: 4}
)

// Limits on Params.
const (
	MinSeedBits  = 8
	MaxSeedBits  = lfsr.MaxBits
	MaxBlockSize = 256
	MaxLatentDim = 16
	MaxCoeffBits = 8
	MaxExpBits   = 8
	MaxExpBias   = 160 // |per-tensor exponent bias|: with E ≥ 1 the window reaches every float32 magnitude, 2^−149 to 2^128
)

// Validate reports the first setting out of range.
func (p Params) Validate() error {
	switch {
	case p.BlockSize < 1 || p.BlockSize > MaxBlockSize:
		return fmt.Errorf("block size C=%d out of range [1, %d]", p.BlockSize, MaxBlockSize)
	case p.LatentDim < 1 || p.LatentDim > MaxLatentDim:
		return fmt.Errorf("latent dim P=%d out of range [1, %d]", p.LatentDim, MaxLatentDim)
	case p.LatentDim > p.BlockSize:
		return fmt.Errorf("latent dim P=%d exceeds block size C=%d", p.LatentDim, p.BlockSize)
	case p.SeedBits < MinSeedBits || p.SeedBits > MaxSeedBits:
		return fmt.Errorf("seed bits K=%d out of range [%d, %d]", p.SeedBits, MinSeedBits, MaxSeedBits)
	case p.CoeffBits < 2 || p.CoeffBits > MaxCoeffBits:
		return fmt.Errorf("coefficient bits B=%d out of range [2, %d]", p.CoeffBits, MaxCoeffBits)
	case p.ExpBits < 1 || p.ExpBits > MaxExpBits:
		return fmt.Errorf("exponent bits E=%d out of range [1, %d]", p.ExpBits, MaxExpBits)
	case p.BlockSize*p.LatentDim+1 > lfsr.MaxExt:
		return fmt.Errorf("C·P=%d too large (at most %d)", p.BlockSize*p.LatentDim, lfsr.MaxExt-1)
	}
	return nil
}

// BlockBits is the stored size of one block: K + E + P·B.
func (p Params) BlockBits() int { return p.SeedBits + p.ExpBits + p.LatentDim*p.CoeffBits }

// BitsPerWeight is BlockBits/C, the nominal rate (padding and headers excluded).
func (p Params) BitsPerWeight() float64 { return float64(p.BlockBits()) / float64(p.BlockSize) }

// Blocks is the number of blocks that code n weights.
func (p Params) Blocks(n int) int { return (n + p.BlockSize - 1) / p.BlockSize }

// PayloadBytes is the size of the bit-packed payload for n weights.
func (p Params) PayloadBytes(n int) int { return (p.Blocks(n)*p.BlockBits() + 7) / 8 }

// String is a compact form, e.g. "C8 P3 K16 B4 E4".
func (p Params) String() string {
	return fmt.Sprintf("C%d P%d K%d B%d E%d", p.BlockSize, p.LatentDim, p.SeedBits, p.CoeffBits, p.ExpBits)
}

func (p Params) qmin() int { return -(1 << (p.CoeffBits - 1)) }
func (p Params) qmax() int { return 1<<(p.CoeffBits-1) - 1 }
func (p Params) emin() int { return -(1 << (p.ExpBits - 1)) }
func (p Params) emax() int { return 1<<(p.ExpBits-1) - 1 }
