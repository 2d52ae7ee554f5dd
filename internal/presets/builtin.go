package presets

import (
	"fmt"
	"sort"
	"strings"

	"github.com/seedlm/seedlm/internal/encoder"
)

// Preset is a named, built-in Config.
type Preset struct {
	Name string
	// Target is the guide's promise, e.g. "≈8× vs fp32 (4.0 bits/weight)".
	Target string
	// Summary says what the preset does, for `seedlm presets`.
	Summary string
	Config  Config
}

func codecs(s string) []Codec {
	var out []Codec
	for _, p := range mustStack(s) {
		out = append(out, CodecOf(p))
	}
	return out
}

// The presets were chosen by measurement on ../shared/data (docs/PRESETS.md
// and docs/BENCHMARKS.md have the numbers). The target presets (balanced,
// quality, research) count the whole archive, index and passthrough tensors
// included, so they land on the guide's ratio unless the model is too small
// for it (then they take the smallest plan and warn); fast is fixed
// settings, 4.2–4.6 bits/weight over the whole file on the shared models.
var builtins = map[string]Preset{
	"fast": {
		Name:   "fast",
		Target: "≈8× vs fp32 (≈4.0 bits/weight)",
		Summary: "K=12 seeds: the seed search is 1/16 of K=16's, ~3-4× faster in practice; a 4th latent " +
			"dimension buys back the quality, so it matches the paper's 4-bit error at 3.875 bits/weight",
		Config: Config{Codec: CodecOf(mustStack("C8P4K12B4E3")[0])},
	},
	"balanced": {
		Name:   "balanced",
		Target: "≈15× vs fp32 (≈2.1 bits/weight)",
		Summary: "target allocation at 2.1 bits/weight over K=16 candidates (1.3–4.0 bits/weight): a short " +
			"measuring pass, then each tensor gets the settings that cut the most squared error per bit",
		Config: Config{TargetBPW: 2.1, Adaptive: &Adaptive{
			Method: "measured",
			Candidates: codecs("C8P3K16B4E4 + C8P3K16B3E3 + C12P4K16B3E3 + C12P3K16B3E3 + C12P2K16B3E3 + " +
				"C16P4K16B3E3 + C16P3K16B3E3 + C24P4K16B3E3"),
		}},
	},
	"quality": {
		Name:   "quality",
		Target: "≈25× vs fp32 (≈1.28 bits/weight)",
		Summary: "target allocation at 1.28 bits/weight: codes a sample of every tensor with every candidate " +
			"(K=16 ladder plus K=18 settings, 4× the search) and spends bits where they cut the most squared error",
		Config: Config{TargetBPW: 1.28, Adaptive: &Adaptive{
			Method: "measured",
			Candidates: codecs("C32P3K16B3E3 + C32P4K16B3E3 + C24P2K16B3E3 + C24P3K16B3E3 + C24P4K16B3E3 + " +
				"C16P3K16B3E3 + C16P4K16B3E3 + C12P2K16B3E3 + C12P3K16B3E3 + C12P4K16B3E3 + C8P3K16B3E3 + " +
				"C32P4K18B3E3 + C24P3K18B3E3 + C24P4K18B3E3 + C16P3K18B3E3 + C16P4K18B3E3"),
		}},
	},
	"research": {
		Name:   "research",
		Target: "≈30× vs fp32 (≈1.07 bits/weight)",
		Summary: "experimental: target allocation at 1.067 bits/weight over K=16 and K=20 candidates (K=20 " +
			"searches 16× the seeds; slow) including 1-coefficient blocks",
		Config: Config{TargetBPW: 32.0 / 30, Adaptive: &Adaptive{
			Method: "measured",
			Candidates: codecs("C32P1K16B3E3 + C32P2K16B3E3 + C32P3K16B3E3 + C32P4K16B3E3 + C24P2K16B3E3 + " +
				"C24P3K16B3E3 + C24P4K16B3E3 + C16P3K16B3E3 + C16P4K16B3E3 + C12P2K16B3E3 + C12P3K16B3E3 + " +
				"C32P3K20B3E3 + C32P4K20B3E3 + C24P2K20B3E3 + C24P3K20B3E3 + C24P4K20B3E3 + C16P3K20B3E3"),
		}},
	},
}

// Names lists the built-in presets from largest to smallest output.
func Names() []string {
	return []string{"fast", "balanced", "quality", "research"}
}

// Builtin returns a preset's Config.
func Builtin(name string) (Config, error) {
	p, ok := builtins[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown preset %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	c := p.Config
	if c.Adaptive != nil {
		a := *c.Adaptive
		a.Candidates = append([]Codec(nil), a.Candidates...)
		c.Adaptive = &a
	}
	return c, nil
}

// Presets returns every built-in preset, in Names order, for `seedlm presets`.
func Presets() []Preset {
	var out []Preset
	for _, n := range Names() {
		p := builtins[n]
		p.Config, _ = Builtin(n)
		out = append(out, p)
	}
	return out
}

// Settings describes a preset's settings in one line, e.g.
// "C8 P4 K12 B4 E3 (3.875 bits/weight)" or "target 1.28 bits/weight over 16
// candidates (K 16–18, 1.0–3.5 bits/weight)".
func (p Preset) Settings() string {
	c := p.Config
	if t := c.targetBPW(); t > 0 {
		st := candidateStacks(c.Adaptive, []encoder.Params{encoder.Paper4Bit}, t)
		ks := map[int]bool{}
		lo, hi := 1e9, 0.0
		for _, s := range st {
			ks[s[0].SeedBits] = true
			lo, hi = min(lo, StackBPW(s)), max(hi, StackBPW(s))
		}
		var kl []string
		for k := range ks {
			kl = append(kl, fmt.Sprint(k))
		}
		sort.Strings(kl)
		return fmt.Sprintf("target %.3g bits/weight, %s allocation over %d candidates (K %s; %.2f–%.2f bits/weight)",
			t, methodName(c.Adaptive), len(st), strings.Join(kl, ","), lo, hi)
	}
	st, _ := baseStack(c)
	return fmt.Sprintf("%s (%.3f bits/weight)", FormatStack(st), StackBPW(st))
}

func methodName(a *Adaptive) string {
	if a == nil || a.Method == "" {
		return "measured"
	}
	return a.Method
}

// PresetSpec is a preset's settings as data (`seedlm presets --json`): a
// fixed codec stack, or a size target with the allocation's candidates.
type PresetSpec struct {
	Name string `json:"name"`
	// Target is the guide's promise, Summary what the preset does (prose).
	Target  string `json:"target"`
	Summary string `json:"summary"`
	// Fixed settings: the layer stack and its bits per weight.
	Layers        []encoder.Params `json:"layers,omitempty"`
	BitsPerWeight float64          `json:"bits_per_weight,omitempty"`
	// A size target: bits per weight over the whole archive, the
	// allocation method and the candidate stacks it chooses from.
	TargetBitsPerWeight float64         `json:"target_bits_per_weight,omitempty"`
	Method              string          `json:"method,omitempty"`
	Candidates          []CandidateSpec `json:"candidates,omitempty"`
}

// CandidateSpec is one candidate stack of a target preset.
type CandidateSpec struct {
	Layers        []encoder.Params `json:"layers"`
	BitsPerWeight float64          `json:"bits_per_weight"`
}

// Spec is the preset's settings as data.
func (p Preset) Spec() PresetSpec {
	s := PresetSpec{Name: p.Name, Target: p.Target, Summary: p.Summary}
	c := p.Config
	if t := c.targetBPW(); t > 0 {
		s.TargetBitsPerWeight, s.Method = t, methodName(c.Adaptive)
		for _, st := range candidateStacks(c.Adaptive, []encoder.Params{encoder.Paper4Bit}, t) {
			s.Candidates = append(s.Candidates, CandidateSpec{Layers: st, BitsPerWeight: StackBPW(st)})
		}
		return s
	}
	st, _ := baseStack(c)
	s.Layers, s.BitsPerWeight = st, StackBPW(st)
	return s
}
