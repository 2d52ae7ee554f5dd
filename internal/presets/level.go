package presets

import (
	"fmt"
	"math"

	"github.com/seedlm/seedlm/internal/encoder"
)

// Compression levels.
//
// A level L in [0.1, 0.9] names a layer stack; higher means smaller. The
// nine tenths are a table (levelTable) measured on ../shared/data (see
// docs/PRESETS.md); a level between two tenths takes the nearer one
// (math.Round(10·L)/10, so 0.25 → 0.3). Bands, against fp32:
//
//	0.1–0.3  ≈ 3–8×   the paper's 4-bit layer plus enhancement layers (0.3 is
//	                  the paper's 4-bit configuration alone: the default)
//	0.4–0.6  ≈ 9–14×  one layer, K=16, 3-bit coefficients, 3-bit exponent
//	0.7–0.9  ≈ 15–25× one layer, larger blocks
//
// Why B=3, E=3 below the paper's config: on stories260K the lowest-error
// setting at every rate under 4 bits per weight had a 3-bit coefficient and a
// 3-bit exponent (the per-tensor exponent bias makes a narrow window enough),
// spending the bits on latent dimensions instead; ppocrv4-rec agrees at all
// but one point (C16 P3 B4 E4, 2.0 bpw, ties C12 P2 B3 E3 at 2.08).
const (
	MinLevel = 0.1
	MaxLevel = 0.9
)

func mustStack(s string) []encoder.Params {
	st, err := ParseStack(s)
	if err != nil {
		panic(err)
	}
	return st
}

// levelTable[i] is the stack of level (i+1)/10.
var levelTable = [9][]encoder.Params{
	mustStack("C8P3K16B4E4 + C8P3K16B4E4 + C12P3K16B3E3"), // 0.1: 10.33 bpw, 3.1×
	mustStack("C8P3K16B4E4 + C12P3K16B3E3"),               // 0.2: 6.33 bpw, 5.1×
	mustStack("C8P3K16B4E4"),                              // 0.3: 4.00 bpw, 8.0× (paper)
	mustStack("C8P3K16B3E3"),                              // 0.4: 3.50 bpw, 9.1×
	mustStack("C12P4K16B3E3"),                             // 0.5: 2.58 bpw, 12.4×
	mustStack("C12P3K16B3E3"),                             // 0.6: 2.33 bpw, 13.7×
	mustStack("C12P2K16B3E3"),                             // 0.7: 2.08 bpw, 15.4×
	mustStack("C16P3K16B3E3"),                             // 0.8: 1.75 bpw, 18.3×
	mustStack("C24P4K16B3E3"),                             // 0.9: 1.29 bpw, 24.8×
}

// CheckLevel reports a level outside [MinLevel, MaxLevel] (NaN included).
func CheckLevel(level float64) error {
	if !(level >= MinLevel-1e-9 && level <= MaxLevel+1e-9) {
		return fmt.Errorf("compression level %g out of range [%g, %g] (higher means smaller)", level, MinLevel, MaxLevel)
	}
	return nil
}

func levelIndex(level float64) int {
	return min(8, max(0, int(math.Round(level*10))-1))
}

// LevelParams returns the layer stack of a compression level (a copy).
func LevelParams(level float64) ([]encoder.Params, error) {
	if err := CheckLevel(level); err != nil {
		return nil, err
	}
	return append([]encoder.Params(nil), levelTable[levelIndex(level)]...), nil
}

// LevelBPW is the nominal bits per weight of a level's stack.
func LevelBPW(level float64) (float64, error) {
	st, err := LevelParams(level)
	if err != nil {
		return 0, err
	}
	return StackBPW(st), nil
}

// Ladder is the single-layer settings the planner picks from when it needs a
// layer of a given size (progressive increments) and the default candidates
// of adaptive and target allocation: each is the lowest-error setting at its
// rate among C ∈ {8,12,16,24,32}, P ≤ 4, B ∈ {3,4}, E ∈ {3,4}, K=16 on the
// measured grid (docs/PRESETS.md), plus the paper's 4-bit configuration.
// Latent dims above 4 are left out on purpose: the pruned exact search loses
// most of its pruning there (C16 P8 encodes ~50× slower than C8 P3).
var Ladder = mustStack("C32P3K16B3E3 + C32P4K16B3E3 + C24P2K16B3E3 + C24P3K16B3E3 + C24P4K16B3E3 + " +
	"C16P3K16B3E3 + C16P4K16B3E3 + C12P2K16B3E3 + C12P3K16B3E3 + C12P4K16B3E3 + " +
	"C8P3K16B3E3 + C8P4K16B3E3 + C8P3K16B4E4 + C8P4K16B4E3")

// HighRate are the extra candidates of targets above 3.5 bits/weight (and
// of max_kl): stacks between the paper's 4 bits and its two-layer stacks,
// which the output objective spends on the most sensitive tensors (on
// stories260K at 4.5 bits/weight they cut the measured KL from 0.090 to
// 0.084; docs/QUALITY.md): 4.5, 5.33 and 6.5 bits/weight.
var HighRate = [][]encoder.Params{
	mustStack("C8P4K16B4E4"),
	mustStack("C6P3K16B4E4"),
	mustStack("C8P4K16B4E4 + C12P3K16B3E3"),
}

// NearestLadder returns the ladder setting whose rate is nearest bpw (ties
// to the cheaper).
func NearestLadder(bpw float64) encoder.Params {
	best := Ladder[0]
	for _, p := range Ladder[1:] {
		if math.Abs(p.BitsPerWeight()-bpw) < math.Abs(best.BitsPerWeight()-bpw)-1e-12 {
			best = p
		}
	}
	return best
}

// ProgressiveParams builds a progressive layer stack by quality.
//
// A quality q is the complement of a level: q = 1 − L, so quality 0.3 is
// level 0.7 (clamped into [0.1, 0.9]). ProgressiveParams(base, incs) builds
// 1+len(incs) layers: after layer k the cumulative quality is
// Q_k = base + incs[0] + … + incs[k−1], and the stack should be as large as
// level 1−Q_k's stack. So layer 0 gets LevelBPW(1−Q_0) bits per weight and
// layer k gets LevelBPW(1−Q_k) − LevelBPW(1−Q_{k−1}); each layer is the
// Ladder setting nearest its share. The guide's example, base 0.3 and
// increments [0.2, 0.3, 0.2], gives cumulative levels 0.7, 0.5, 0.2, 0.1
// (quality 1.0 clamps to level 0.1):
// C12P2K16B3E3 + C32P3K16B3E3 + C8P3K16B3E3 + C8P4K16B3E3 = 2.08 + 0.88 +
// 3.5 + 3.875 = 10.33 bits per weight, level 0.1's size.
func ProgressiveParams(baseQuality float64, increments []float64) ([]encoder.Params, error) {
	if !(baseQuality > 0 && baseQuality < 1) {
		return nil, fmt.Errorf("base_quality %g out of range (0, 1)", baseQuality)
	}
	q := baseQuality
	prev := 0.0
	var out []encoder.Params
	for k := 0; k <= len(increments); k++ {
		if k > 0 {
			inc := increments[k-1]
			if !(inc > 0 && inc < 1) {
				return nil, fmt.Errorf("quality_increments[%d] = %g out of range (0, 1)", k-1, inc)
			}
			q += inc
		}
		level := min(MaxLevel, max(MinLevel, 1-q))
		cum, _ := LevelBPW(level)
		share := cum - prev
		if share <= 0 {
			// Quality saturated (already at level 0.1): another layer still
			// costs bits, so give it the smallest ladder step rather than
			// silently dropping it.
			share = Ladder[0].BitsPerWeight()
		}
		p := NearestLadder(share)
		out = append(out, p)
		prev += p.BitsPerWeight()
	}
	return out, nil
}
