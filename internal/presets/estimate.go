package presets

import (
	"context"
	"math"
	"math/rand"
	"time"

	"github.com/seedlm/seedlm/internal/encoder"
)

// Calibrate measures this machine's encode speed for the paper's 4-bit
// configuration, in weights per second with opt's workers: the input
// EstimateSeconds and Summarize want. It codes 16384 Gaussian weights
// (about 0.1–0.3 s on a 2-core AVX2 machine).
func Calibrate(ctx context.Context, opt encoder.Options) (float64, error) {
	rng := rand.New(rand.NewSource(1))
	w := make([]float32, 16384)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	// Warm the basis tables first: they are built once per process and
	// are not part of the per-weight cost.
	if _, err := encoder.EncodeLayer(ctx, "calibration", w[:64], encoder.Paper4Bit, opt); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := encoder.EncodeLayer(ctx, "calibration", w, encoder.Paper4Bit, opt); err != nil {
		return 0, err
	}
	return float64(len(w)) / max(time.Since(t0).Seconds(), 1e-9), nil
}

// relCost is the measured encode time per weight of (C, P), relative to the
// paper's C8 P3 at the same K (stories260K, K=16, AVX2 kernel; see
// docs/PRESETS.md). The exact search prunes seeds with a lower bound that
// gets weak as P/C grows, so cost climbs steeply with P: C8 P5 is ~27×,
// C24 P6 ~38×. Entries missing here are interpolated by relCostOf.
var relCost = map[[2]int]float64{
	{8, 1}: 0.79, {8, 2}: 0.65, {8, 3}: 1.0, {8, 4}: 3.6, {8, 5}: 27,
	{12, 1}: 0.47, {12, 2}: 0.53, {12, 3}: 0.70, {12, 4}: 1.18, {12, 5}: 8.0,
	{16, 1}: 0.47, {16, 2}: 0.53, {16, 3}: 0.69, {16, 4}: 0.89, {16, 5}: 4.5,
	{24, 1}: 0.58, {24, 2}: 0.57, {24, 3}: 0.70, {24, 4}: 0.79, {24, 5}: 2.1, {24, 6}: 38,
	{32, 1}: 0.6, {32, 2}: 0.70, {32, 3}: 0.62, {32, 4}: 0.70, {32, 5}: 1.5, {32, 6}: 36,
}

// relCostOf falls back, off the table, to the nearest C in the table and,
// for larger P, to a ×8 growth per extra latent dimension (the trend of the
// table's last columns): a deliberately pessimistic guess.
func relCostOf(c, p int) float64 {
	if v, ok := relCost[[2]int{c, p}]; ok {
		return v
	}
	bestC := 8
	for _, tc := range []int{8, 12, 16, 24, 32} {
		if abs(tc-c) < abs(bestC-c) {
			bestC = tc
		}
	}
	for q := p; q >= 1; q-- {
		if v, ok := relCost[[2]int{bestC, q}]; ok {
			return math.Ldexp(v, 3*(p-q)) // v·8^(p−q), exact
		}
	}
	return 1
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// seedCost is the search cost of K relative to K=16. The number of seeds is
// 2^K, but fixed per-block work (quantizing survivors, loading the block)
// does not shrink with K: measured, K=12 is 3–7× faster than K=16, not 16×,
// and K=20 ~10× slower. Model: 0.1 + 0.9·2^(K−16) for K ≤ 16, 2^(K−16)·0.65
// above (K=18 measured 2.5×, K=20 ~9–10×).
func seedCost(k int) float64 {
	if k <= 16 {
		return 0.1 + float64(0.9*math.Ldexp(1, k-16))
	}
	return 0.65 * math.Ldexp(1, k-16)
}

// EstimateSeconds estimates the encode time of a plan for a tensor of
// numElements weights, given the measured speed of the paper's 4-bit
// configuration (C8 P3 K16) in weights per second on the machine (all
// workers). Each layer costs numElements · seedCost(K) · relCost(C, P) /
// weightsPerSecAtK16. Passthrough costs 0. It is a planning aid (within
// about 2× on the grid it was fitted on), not a promise.
func EstimateSeconds(plan TensorPlan, numElements int64, weightsPerSecAtK16 float64) float64 {
	if plan.Passthrough || weightsPerSecAtK16 <= 0 {
		return 0
	}
	var s float64
	for _, p := range plan.Layers {
		s += LayerCost(p)
	}
	return float64(numElements) * s / weightsPerSecAtK16
}

// LayerCost is one layer's encode cost per weight relative to the paper's
// 4-bit configuration.
func LayerCost(p encoder.Params) float64 {
	return seedCost(p.SeedBits) * relCostOf(p.BlockSize, p.LatentDim)
}

// Summary totals a plan for --dry-run and reports.
type Summary struct {
	Tensors, Coded, Passthrough int
	Elements                    int64
	// Bits is the planned payload of the whole archive (index excluded).
	Bits int64
	// BPW is Bits/Elements, Ratio 32/BPW (against fp32).
	BPW, Ratio float64
	// PassthroughBits is the part of Bits stored losslessly.
	PassthroughBits int64
	// EstSeconds is Σ EstimateSeconds (0 without a speed).
	EstSeconds float64
	// EstRelErr is sqrt(Σ EstSqErr / Σ Norm2) over measured tensors (0 when
	// none was measured).
	EstRelErr float64
}

// Summarize totals plans; weightsPerSecAtK16 as in EstimateSeconds (0: no
// time estimate).
func Summarize(plans []TensorPlan, weightsPerSecAtK16 float64) Summary {
	var s Summary
	var se, n2 float64
	for _, p := range plans {
		s.Tensors++
		s.Elements += p.Elements
		s.Bits += p.Bits
		if p.Passthrough {
			s.Passthrough++
			s.PassthroughBits += p.Bits
		} else {
			s.Coded++
			s.EstSeconds += EstimateSeconds(p, p.Elements, weightsPerSecAtK16)
		}
		if p.Measured {
			se += p.EstSqErr
			n2 += p.Norm2
		}
	}
	if s.Elements > 0 {
		s.BPW = float64(s.Bits) / float64(s.Elements)
	}
	if s.BPW > 0 {
		s.Ratio = 32 / s.BPW
	}
	if n2 > 0 {
		s.EstRelErr = math.Sqrt(se / n2)
	}
	return s
}
