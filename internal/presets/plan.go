// Package presets turns user settings (a preset name, a compression level,
// codec flags, per-layer glob rules) into a per-tensor plan: store the tensor
// losslessly, or code it with these progressive layers.
package presets

import (
	"fmt"

	"github.com/seedlm/seedlm/internal/checkpoint"
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
}

// MinElements is the default size below which tensors are stored as-is:
// the codec's per-tensor overhead is not worth it there.
const MinElements = 1024

// Default is the plan compress uses with no preset, level or codec flag: the
// paper's 4-bit configuration, one layer, for every float tensor of rank ≥ 2
// with at least MinElements weights; everything else is stored losslessly.
func Default(t checkpoint.TensorInfo) TensorPlan {
	if reason := PassthroughReason(t, MinElements); reason != "" {
		return TensorPlan{Name: t.Name, Rule: "passthrough: " + reason, Passthrough: true}
	}
	return TensorPlan{Name: t.Name, Rule: "default", Layers: []encoder.Params{encoder.Paper4Bit}}
}

// PassthroughReason says why a tensor is never coded ("" when it can be).
func PassthroughReason(t checkpoint.TensorInfo, minElements int64) string {
	switch t.DType {
	case "F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2":
	default:
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
