package presets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/seedlm/seedlm/internal/encoder"
)

// Adaptive turns on per-tensor choice of settings among Candidates.
//
// Without a target size (Config.TargetBPW = 0) the choice is the guide's
// variance heuristic: tensors are ranked by their weights' second moment
// (mean of w², which is what a tensor's squared coding error scales with)
// and split, in order of rank and in proportion to their weight counts,
// into len(Candidates) equal shares; the highest-variance share gets the
// candidate with the smallest blocks (highest rate).
//
// With a target size, Method picks how the budget is spent: "measured"
// (the default) codes a sample of every tensor with every candidate and
// minimizes total squared error (see Allocate); "variance" spends it
// greedily in variance order (AllocateByVariance) — kept as the baseline the
// measured allocation is compared against.
type Adaptive struct {
	// Candidates are partial settings; unset fields come from the stack the
	// tensor would otherwise get (its base layer). Empty: Ladder (within a
	// factor of 2 of the target when there is one).
	Candidates []Codec `yaml:"candidates,omitempty"`
	// Method is "measured" or "variance" ("" = "measured").
	Method string `yaml:"method,omitempty"`
	// SampleWeights per tensor and candidate (0: DefaultSampleWeights).
	SampleWeights int `yaml:"sample_weights,omitempty"`
}

// Rule is one entry of layer_specific.
type Rule struct {
	// Pattern is a glob over the full tensor name (see Match).
	Pattern string `yaml:"-"`
	// Line is the rule's line in the YAML file (0 when built in code).
	Line int `yaml:"-"`
	// CompressionLevel (0: unset) replaces the tensor's layer stack with the
	// level's stack.
	CompressionLevel float64 `yaml:"compression_level,omitempty"`
	Codec            `yaml:",inline"`
	// Layers (0: unset) sets the number of progressive layers (see
	// withLayers).
	Layers int `yaml:"layers,omitempty"`
	// Passthrough stores matching tensors losslessly.
	Passthrough bool `yaml:"passthrough,omitempty"`
}

// Name is how plans and warnings cite the rule.
func (r Rule) Name() string {
	if r.Line > 0 {
		return fmt.Sprintf("layer_specific %q (line %d)", r.Pattern, r.Line)
	}
	return fmt.Sprintf("layer_specific %q", r.Pattern)
}

// Config is everything a user can set in configs/compression.yaml; the
// built-in presets are Configs too. Zero values mean "not set".
type Config struct {
	// Preset names a built-in preset the rest of the file refines.
	Preset string `yaml:"preset,omitempty"`
	// CompressionLevel in [0.1, 0.9]; higher is smaller (LevelParams).
	CompressionLevel float64 `yaml:"compression_level,omitempty"`
	// Codec settings override the matching field of every layer.
	Codec `yaml:",inline"`
	// Layers is the number of progressive layers (see withLayers).
	Layers int `yaml:"layers,omitempty"`
	// BaseQuality and QualityIncrements build the stack by quality
	// (ProgressiveParams): the guide's base_quality=0.3,
	// quality_increments=[0.2, 0.3, 0.2] is 4 layers.
	BaseQuality       float64   `yaml:"base_quality,omitempty"`
	QualityIncrements []float64 `yaml:"quality_increments,omitempty"`
	// MinElements: tensors with fewer weights are stored losslessly
	// (0: MinElements).
	MinElements int64 `yaml:"min_elements,omitempty"`
	// TargetBPW is the whole archive's size target in bits per weight
	// (payload of every tensor, passthrough included, over all elements).
	TargetBPW float64 `yaml:"target_bpw,omitempty"`
	// TargetRatio is the same target as a ratio to fp32 (TargetBPW =
	// 32/TargetRatio); set at most one of the two.
	TargetRatio float64 `yaml:"target_ratio,omitempty"`
	// TargetScope is what a size target counts: "file" (the default: the
	// whole archive, index and exactly stored tensors included) or "coded"
	// (the coded tensors' payload over their weights, the figure compress
	// prints as "bits/weight in coded tensors").
	TargetScope string `yaml:"target_scope,omitempty"`
	// Objective is what a target allocation minimizes (see Objectives):
	// "output", "relative", "weights", or "" / "auto" (output for a model
	// the forward pass supports, relative for any other).
	Objective string `yaml:"objective,omitempty"`
	// MaxKL asks for the smallest archive whose measured KL(original ‖
	// decoded) is at most MaxKL nats (compress searches the allocation
	// budget; Llama-family models only). A size target of its own kind: it
	// and a bits-per-weight target cannot both be set in one source.
	MaxKL float64 `yaml:"max_kl,omitempty"`
	// Adaptive, when set, chooses settings per tensor.
	Adaptive *Adaptive `yaml:"adaptive,omitempty"`
	// LayerSpecific rules in file order; the LAST matching rule wins.
	LayerSpecific []Rule `yaml:"-"`
}

// FileKeys are the top-level keys ParseConfig reads, in the order
// configs/compression.yaml documents them (a CLI that checks keys itself
// should accept these).
var FileKeys = fileKeys

var fileKeys = []string{"preset", "compression_level", "block_size", "latent_dim", "seed_bits", "coeff_bits",
	"exponent_bits", "layers", "base_quality", "quality_increments", "min_elements", "target_bpw", "target_ratio",
	"target_scope", "objective", "max_kl", "adaptive", "layer_specific"}

// ruleKeys are the keys a layer_specific rule may hold.
var ruleKeys = []string{"compression_level", "block_size", "latent_dim", "seed_bits", "coeff_bits", "exponent_bits",
	"layers", "passthrough"}

// LoadConfig reads a YAML config file (see configs/compression.yaml).
// foreign are top-level keys the caller handles itself (the CLI's run
// settings: "workers", "quiet", "dtype"); they are skipped, not errors.
func LoadConfig(path string, foreign ...string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(b, foreign...)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes and validates a YAML config. Unknown keys anywhere are
// errors that name the key and its line (keys listed in foreign are
// skipped); so are explicit zeros and values out of range. A null or empty
// value (`preset: ""`) means "not set".
func ParseConfig(data []byte, foreign ...string) (Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, nil // an empty file sets nothing
		}
		return Config{}, err
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = *root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return Config{}, nil
	}
	if root.Kind != yaml.MappingNode {
		return Config{}, fmt.Errorf("line %d: the config must be a mapping of keys to values", root.Line)
	}
	var c Config
	skip := map[string]bool{}
	for _, f := range foreign {
		skip[f] = true
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if skip[k.Value] {
			continue
		}
		var err error
		switch k.Value {
		case "preset":
			if !unset(v) {
				err = v.Decode(&c.Preset)
			}
		case "compression_level":
			err = decodePositive(v, k.Value, &c.CompressionLevel)
		case "block_size", "latent_dim", "seed_bits", "coeff_bits", "exponent_bits": // CodecKeys
			err = decodeCodecKey(v, k.Value, &c.Codec)
		case "layers":
			err = decodePositiveInt(v, k.Value, &c.Layers)
		case "base_quality":
			err = decodePositive(v, k.Value, &c.BaseQuality)
		case "quality_increments":
			if !unset(v) {
				err = v.Decode(&c.QualityIncrements)
			}
		case "min_elements":
			var n int
			err = decodePositiveInt(v, k.Value, &n)
			c.MinElements = int64(n)
		case "target_bpw":
			err = decodePositive(v, k.Value, &c.TargetBPW)
		case "target_ratio":
			err = decodePositive(v, k.Value, &c.TargetRatio)
		case "target_scope":
			if !unset(v) {
				err = v.Decode(&c.TargetScope)
			}
		case "objective":
			if !unset(v) {
				err = v.Decode(&c.Objective)
			}
		case "max_kl":
			err = decodePositive(v, k.Value, &c.MaxKL)
		case "adaptive":
			if !unset(v) {
				c.Adaptive, err = decodeAdaptive(v)
			}
		case "layer_specific":
			c.LayerSpecific, err = decodeRules(v)
		default:
			return Config{}, fmt.Errorf("line %d: unknown key %q (known: %s)", k.Line, k.Value, strings.Join(fileKeys, ", "))
		}
		if err != nil {
			return Config{}, fmt.Errorf("line %d: %s: %w", k.Line, k.Value, err)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// unset says whether a value means "not set": null, "~" or an empty string
// (configs/compression.yaml writes `preset: ""` for "none").
func unset(v *yaml.Node) bool {
	return v.Kind == yaml.ScalarNode && (v.Tag == "!!null" || (v.Tag == "!!str" && v.Value == ""))
}

func decodePositive(v *yaml.Node, key string, dst *float64) error {
	if unset(v) {
		return nil
	}
	var x float64
	if err := v.Decode(&x); err != nil {
		return err
	}
	if !(x > 0) || math.IsInf(x, 0) {
		return fmt.Errorf("%g is not a positive number", x)
	}
	*dst = x
	return nil
}

func decodePositiveInt(v *yaml.Node, key string, dst *int) error {
	if unset(v) {
		return nil
	}
	// Decoding 12.5 into an int would truncate it: read a number, then
	// insist on a whole one, as the command line does.
	var f float64
	if err := v.Decode(&f); err != nil {
		var x int
		return v.Decode(&x) // the decoder's own message ("cannot unmarshal !!str ...")
	}
	if f != math.Trunc(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%s is not an integer", v.Value)
	}
	if f <= 0 || f > 1<<53 {
		return fmt.Errorf("%s is not a positive integer", v.Value)
	}
	*dst = int(f)
	return nil
}

func decodeCodecKey(v *yaml.Node, key string, c *Codec) error {
	var x int
	if err := decodePositiveInt(v, key, &x); err != nil || x == 0 {
		return err
	}
	c.Set(key, x)
	return nil
}

func decodeAdaptive(v *yaml.Node) (*Adaptive, error) {
	a := &Adaptive{}
	if v.Kind == yaml.ScalarNode {
		// "adaptive: true" turns it on with the defaults.
		var on bool
		if err := v.Decode(&on); err != nil {
			return nil, fmt.Errorf("want true/false or a mapping: %w", err)
		}
		if !on {
			return nil, nil
		}
		return a, nil
	}
	if v.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want true/false or a mapping", v.Line)
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		var err error
		switch k.Value {
		case "candidates":
			if val.Kind != yaml.SequenceNode {
				return nil, fmt.Errorf("line %d: candidates: want a list", val.Line)
			}
			for j, cn := range val.Content {
				if cn.Kind != yaml.MappingNode {
					return nil, fmt.Errorf("line %d: candidates[%d]: want a mapping", cn.Line, j)
				}
				var cd Codec
				for m := 0; m+1 < len(cn.Content); m += 2 {
					ck := cn.Content[m]
					if !isCodecKey(ck.Value) {
						return nil, fmt.Errorf("line %d: candidates[%d]: unknown key %q (known: %s)", ck.Line, j, ck.Value, strings.Join(CodecKeys(), ", "))
					}
					if err := decodeCodecKey(cn.Content[m+1], ck.Value, &cd); err != nil {
						return nil, fmt.Errorf("line %d: candidates[%d].%s: %w", ck.Line, j, ck.Value, err)
					}
				}
				if cd.IsZero() {
					return nil, fmt.Errorf("line %d: candidates[%d] sets nothing", cn.Line, j)
				}
				a.Candidates = append(a.Candidates, cd)
			}
		case "method":
			err = val.Decode(&a.Method)
		case "sample_weights":
			err = decodePositiveInt(val, k.Value, &a.SampleWeights)
		default:
			return nil, fmt.Errorf("line %d: unknown key %q (known: candidates, method, sample_weights)", k.Line, k.Value)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", k.Line, k.Value, err)
		}
	}
	return a, nil
}

// decodeRules reads layer_specific as a mapping (the guide's form) or a list
// of single-key mappings, keeping file order either way: yaml.v3 would lose
// it decoding into a Go map.
func decodeRules(v *yaml.Node) ([]Rule, error) {
	var pairs []*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		pairs = v.Content
	case yaml.SequenceNode:
		for _, it := range v.Content {
			if it.Kind != yaml.MappingNode || len(it.Content) != 2 {
				return nil, fmt.Errorf("line %d: each list item must be one \"pattern\": {settings} pair", it.Line)
			}
			pairs = append(pairs, it.Content...)
		}
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return nil, nil
		}
		fallthrough
	default:
		return nil, fmt.Errorf("line %d: want a mapping of glob patterns to settings", v.Line)
	}
	var rules []Rule
	for i := 0; i+1 < len(pairs); i += 2 {
		k, body := pairs[i], pairs[i+1]
		r := Rule{Pattern: k.Value, Line: k.Line}
		if r.Pattern == "" {
			return nil, fmt.Errorf("line %d: empty pattern", k.Line)
		}
		if err := checkPattern(r.Pattern); err != nil {
			return nil, fmt.Errorf("line %d: pattern %q: %w", k.Line, r.Pattern, err)
		}
		if body.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("line %d: rule %q: want a mapping of settings", body.Line, r.Pattern)
		}
		for j := 0; j+1 < len(body.Content); j += 2 {
			rk, rv := body.Content[j], body.Content[j+1]
			var err error
			switch rk.Value {
			case "compression_level":
				err = decodePositive(rv, rk.Value, &r.CompressionLevel)
			case "block_size", "latent_dim", "seed_bits", "coeff_bits", "exponent_bits": // CodecKeys
				err = decodeCodecKey(rv, rk.Value, &r.Codec)
			case "layers":
				err = decodePositiveInt(rv, rk.Value, &r.Layers)
			case "passthrough":
				err = rv.Decode(&r.Passthrough)
			default:
				return nil, fmt.Errorf("line %d: rule %q: unknown key %q (known: %s)", rk.Line, r.Pattern, rk.Value, strings.Join(ruleKeys, ", "))
			}
			if err != nil {
				return nil, fmt.Errorf("line %d: rule %q: %s: %w", rk.Line, r.Pattern, rk.Value, err)
			}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// Validate checks ranges and combinations that make no sense. Errors name
// the key (and the rule).
func (c Config) Validate() error {
	if c.Preset != "" {
		if _, ok := builtins[c.Preset]; !ok {
			return fmt.Errorf("preset: unknown preset %q (known: %s)", c.Preset, strings.Join(Names(), ", "))
		}
	}
	if c.CompressionLevel != 0 {
		if err := CheckLevel(c.CompressionLevel); err != nil {
			return fmt.Errorf("compression_level: %w", err)
		}
	}
	if err := checkCodec(c.Codec); err != nil {
		return err
	}
	if err := checkLayers(c.Layers); err != nil {
		return err
	}
	if c.BaseQuality != 0 || len(c.QualityIncrements) > 0 {
		if c.BaseQuality == 0 {
			return fmt.Errorf("quality_increments: needs base_quality")
		}
		if len(c.QualityIncrements)+1 > MaxLayers {
			return fmt.Errorf("quality_increments: %d increments make %d layers, at most %d", len(c.QualityIncrements), len(c.QualityIncrements)+1, MaxLayers)
		}
		if _, err := ProgressiveParams(c.BaseQuality, c.QualityIncrements); err != nil {
			return err
		}
	}
	if c.MinElements < 0 {
		return fmt.Errorf("min_elements: %d is negative", c.MinElements)
	}
	if c.TargetBPW != 0 && c.TargetRatio != 0 {
		return fmt.Errorf("target_bpw and target_ratio are the same target: set one")
	}
	if c.TargetBPW != 0 && !(c.TargetBPW > 0 && c.TargetBPW <= MaxTargetBPW) {
		return fmt.Errorf("target_bpw: %g is out of range (0, %g] bits per weight", c.TargetBPW, float64(MaxTargetBPW))
	}
	if c.TargetRatio != 0 && !(c.TargetRatio >= 32.0/MaxTargetBPW && !math.IsInf(c.TargetRatio, 0)) {
		return fmt.Errorf("target_ratio: %g is out of range [%g, ∞) (a ratio to fp32; %g is %g bits per weight)", c.TargetRatio, 32.0/MaxTargetBPW, 32.0/MaxTargetBPW, float64(MaxTargetBPW))
	}
	switch c.TargetScope {
	case "", ScopeFile, ScopeCoded:
	default:
		return fmt.Errorf("target_scope: unknown scope %q (known: %s, %s)", c.TargetScope, ScopeFile, ScopeCoded)
	}
	if c.Objective != "" && !slices.Contains(Objectives(), c.Objective) {
		return fmt.Errorf("objective: unknown objective %q (known: %s)", c.Objective, strings.Join(Objectives(), ", "))
	}
	if c.MaxKL != 0 && !(c.MaxKL > 0 && c.MaxKL <= MaxMaxKL) {
		return fmt.Errorf("max_kl: %g is out of range (0, %g] nats", c.MaxKL, float64(MaxMaxKL))
	}
	if c.MaxKL != 0 && c.targetBPW() != 0 {
		return fmt.Errorf("max_kl and a size target (target_bpw, target_ratio) both set: max_kl chooses the size; set one")
	}
	if a := c.Adaptive; a != nil {
		switch a.Method {
		case "", "measured", "variance":
		default:
			return fmt.Errorf("adaptive.method: unknown method %q (known: measured, variance)", a.Method)
		}
		for i, cd := range a.Candidates {
			if err := checkCodec(cd); err != nil {
				return fmt.Errorf("adaptive.candidates[%d]: %w", i, err)
			}
		}
	}
	seen := map[string]int{}
	for _, r := range c.LayerSpecific {
		if prev, dup := seen[r.Pattern]; dup {
			return fmt.Errorf("%s: the same pattern is already a rule (line %d); merge them", r.Name(), prev)
		}
		seen[r.Pattern] = r.Line
		if r.CompressionLevel != 0 {
			if err := CheckLevel(r.CompressionLevel); err != nil {
				return fmt.Errorf("%s: compression_level: %w", r.Name(), err)
			}
		}
		if err := checkCodec(r.Codec); err != nil {
			return fmt.Errorf("%s: %w", r.Name(), err)
		}
		if err := checkLayers(r.Layers); err != nil {
			return fmt.Errorf("%s: %w", r.Name(), err)
		}
		if r.Passthrough && (r.CompressionLevel != 0 || !r.Codec.IsZero() || r.Layers != 0) {
			return fmt.Errorf("%s: passthrough: true stores the tensor as-is; it cannot also set codec keys", r.Name())
		}
		if err := checkPattern(r.Pattern); err != nil {
			return fmt.Errorf("%s: %w", r.Name(), err)
		}
	}
	return nil
}

// Target scopes (Config.TargetScope).
const (
	ScopeFile  = "file"
	ScopeCoded = "coded"
)

// Objectives (Config.Objective) of a target allocation, which minimizes
// Σ_t weight_t · ‖w_t − ŵ_t‖² over the tensors it decides:
//
//   - "output": weight_t = S_t / ‖w_t‖², S_t the tensor's measured
//     sensitivity (KL per unit relative squared error): the predicted
//     KL(original ‖ decoded). Needs a model the forward pass supports.
//   - "relative": weight_t = n_t / ‖w_t‖² (n_t its weight count): each
//     weight's error in units of its own tensor's mean square, so no
//     tensor is starved for having small weights. The proxy for every
//     other model.
//   - "weights": weight_t = 1: the total squared weight error, which
//     starves small-norm tensors (seedlm's objective before the output
//     objective).
//   - "auto" (or unset): output when the model is supported, else
//     relative.
func Objectives() []string { return []string{"auto", "output", "relative", "weights"} }

// MaxMaxKL bounds max_kl: beyond a few nats a model predicts noise.
const MaxMaxKL = 100

// MaxLayers is the most progressive layers a tensor may have: the archive
// format's limit (archive.MaxLayers; a test in internal/compress keeps the
// two equal).
const MaxLayers = 16

// MaxTargetBPW bounds a size target: 64 bits per weight stores every dtype
// seedlm reads exactly (F64 is the widest), so a larger target means nothing
// more, and far larger ones (1e308) would overflow the budget arithmetic.
const MaxTargetBPW = 64

func checkLayers(n int) error {
	if n < 0 || n > MaxLayers {
		return fmt.Errorf("layers: %d is out of range [1, %d]", n, MaxLayers)
	}
	return nil
}

// checkCodec validates the set fields alone against the encoder's limits
// (combinations such as P ≤ C are checked on the final Params).
func checkCodec(c Codec) error {
	p := c.Apply(encoder.Paper4Bit)
	if c.BlockSize != 0 && c.LatentDim == 0 && p.LatentDim > p.BlockSize {
		p.LatentDim = p.BlockSize // C alone below 3 is fine if P is set elsewhere
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%s: %w", c.String(), err)
	}
	return nil
}

// targetBPW is the configured target in bits per weight (0: none).
func (c Config) targetBPW() float64 {
	if c.TargetRatio > 0 {
		return 32 / c.TargetRatio
	}
	return c.TargetBPW
}
