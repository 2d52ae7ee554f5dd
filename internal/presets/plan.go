// Package presets turns user settings (a preset name, a compression level,
// codec flags, per-layer glob rules, a size target) into a per-tensor plan:
// store the tensor losslessly, or code it with these progressive layers.
//
// # How the CLI uses it
//
//	file, err := presets.LoadConfig(path, "workers", "quiet", "dtype") // --config; CLI-only keys skipped
//	flags := presets.Config{                     // zero = flag not given
//		Preset:           *preset,             // --preset NAME
//		CompressionLevel: *level,              // --level 0.1..0.9
//		Codec:            presets.Codec{...},  // --block-size --latent-dim --seed-bits --coeff-bits --exponent-bits
//		Layers:           *layers,             // --layers N
//		TargetBPW:        *targetBPW,          // --target-bpw X
//		TargetRatio:      *targetRatio,        // --target-ratio R (32/R bits/weight)
//		MinElements:      *minElements,        // --min-elements (optional)
//	}
//	plans, warnings, err := presets.Plan(ctx, file, src, presets.Options{Flags: flags,
//		Encoder: encoder.Options{Workers: w}, Progress: fn})
//	wps, _ := presets.Calibrate(ctx, encoder.Options{Workers: w}) // C8P3K16 weights/s here
//	sum := presets.Summarize(plans, wps)  // --dry-run totals, est. encode seconds
//
// TensorPlan.Rule names what decided each tensor (for --dry-run and the
// archive index). `seedlm presets` prints Presets(): Name, Target, Settings(),
// Summary.
//
// # Precedence
//
// Highest first: codec flags > the winning layer_specific rule (the LAST
// matching rule in file order, as a whole) > level / target / codec keys
// from flags > the same from the config file > the preset's > the default
// (the paper's 4-bit configuration, encoder.Paper4Bit). A compression level
// replaces the layer stack and cancels a target set lower down; a target
// cancels a lower level; codec keys override single fields of every layer;
// layers resizes the stack (truncate, or repeat the last layer). Setting a
// level and a target in the same source is an error.
//
// # Modes
//
// Fixed (default, preset fast/balanced, a level): no tensor data is read.
// adaptive without a target: the variance heuristic (VarianceRates), which
// reads every coded tensor once. A target (target_bpw, target_ratio, preset
// quality/research): every coded tensor is read once and a sample of it
// (DefaultSampleWeights) is coded with every candidate (MeasureTensor);
// Allocate then minimizes the total squared error within the budget.
// Memory stays at one tensor at a time.
//
// docs/PRESETS.md has the level table, the presets, and the measured
// comparison of fixed settings, the variance heuristic and the measured
// allocation at equal size (scripts/alloccmp produces the numbers).
package presets

import (
	"fmt"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/encoder"
)

// TensorPlan is what compress does with one tensor.
type TensorPlan struct {
	Name string
	// Rule names what decided the plan, for --dry-run and inspect: e.g.
	// "default", "preset balanced", "layer_specific \"*.mlp.*\"",
	// "passthrough: 1-D tensor".
	Rule        string
	Passthrough bool
	// Layers are the codec settings of the base layer and each enhancement
	// layer (empty when Passthrough).
	Layers []encoder.Params
	// DuplicateOf names an earlier tensor with byte-identical contents
	// (tied weights), set before allocation from Options.DuplicateOf: the
	// archive stores that tensor once. Its plan mirrors that tensor's
	// (Layers, Passthrough), with Bits 0.
	DuplicateOf string `json:"duplicate_of,omitempty"`

	// The fields below are filled by Plan (zero from Default).

	// Elements is the tensor's weight count.
	Elements int64
	// Bits is the planned payload size: Σ_layers 8·PayloadBytes for coded
	// tensors, the raw bytes·8 for passthrough (index entries excluded).
	Bits int64
	// Norm2 (‖w‖²) and EstSqErr (the sampled estimate of ‖w − ŵ‖²) are set
	// when Measured: in target mode, where Plan codes samples.
	Norm2    float64
	EstSqErr float64
	Measured bool
}

// MinElements is the default size below which tensors are stored as-is:
// the codec's per-tensor overhead is not worth it there.
const MinElements = 1024

// Default is the plan compress uses with no preset, level or codec flag: the
// paper's 4-bit configuration, one layer, for every float tensor of rank ≥ 2
// with at least MinElements weights; everything else is stored losslessly.
func Default(t checkpoint.TensorInfo) TensorPlan {
	n := t.NumElements()
	if reason := PassthroughReason(t, MinElements); reason != "" {
		return TensorPlan{Name: t.Name, Rule: "passthrough: " + reason, Passthrough: true, Elements: n, Bits: rawBits(t)}
	}
	layers := []encoder.Params{encoder.Paper4Bit}
	return TensorPlan{Name: t.Name, Rule: "default", Layers: layers, Elements: n, Bits: StackBits(layers, n)}
}

// PassthroughReason says why a tensor is never coded ("" when it can be).
func PassthroughReason(t checkpoint.TensorInfo, minElements int64) string {
	if !dtype.Codable(t.DType) {
		return fmt.Sprintf("dtype %s is not a supported float type", t.DType)
	}
	if len(t.Shape) < 2 {
		return fmt.Sprintf("%d-D tensor (norms, biases)", len(t.Shape))
	}
	if n := t.NumElements(); n < minElements {
		return fmt.Sprintf("%d elements, below the %d-element threshold", n, minElements)
	}
	return ""
}
