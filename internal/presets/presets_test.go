package presets

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pat, name string
		want      bool
	}{
		{"*.attention.*", "layers.0.attention.wq.weight", true},
		{"*.attention.*", "model.layers.0.self_attn.q_proj.weight", false},
		{"*.self_attn.*", "model.layers.0.self_attn.q_proj.weight", true},
		{"*.mlp.*", "model.layers.0.mlp.gate_proj.weight", true},
		{"*.mlp.*", "mlp.gate_proj.weight", false}, // needs a dot before mlp
		{"*mlp*", "mlp.gate_proj.weight", true},
		{"*.weight", "model.norm.weight", true},
		{"*.weight", "model.norm.bias", false},
		{"model.layers.1?.*", "model.layers.12.mlp.up_proj.weight", true},
		{"model.layers.1?.*", "model.layers.1.mlp.up_proj.weight", false},
		{"lm_head.weight", "lm_head.weight", true},
		{"lm_head.weight", "lm_head.weight2", false},
		{"*", "", true},
		{"a*b*c", "aXXbYYbZZc", true},
		{"a*b*c", "aXXbYYbZZ", false},
		{"**.q_proj.*", "x.q_proj.weight", true},
	}
	for _, tt := range tests {
		if got := Match(tt.pat, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pat, tt.name, got, tt.want)
		}
	}
}

func TestParseParams(t *testing.T) {
	tests := []struct {
		in      string
		want    encoder.Params
		wantErr string
	}{
		{"C8 P3 K16 B4 E4", encoder.Paper4Bit, ""},
		{"c12p4", encoder.Paper3Bit, ""},
		{"C12P2K16B3E3", encoder.Params{BlockSize: 12, LatentDim: 2, SeedBits: 16, CoeffBits: 3, ExpBits: 3}, ""},
		{"C8 X3", encoder.Params{}, "unknown letter"},
		{"C8 C9", encoder.Params{}, "twice"},
		{"K30", encoder.Params{}, "seed bits"},
		{"", encoder.Params{}, "empty"},
		{"CP3", encoder.Params{}, "expected a number"},
	}
	for _, tt := range tests {
		got, err := ParseParams(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseParams(%q) error = %v, want it to mention %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseParams(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	st := mustStack("C8P3K16B4E4 + C12P3K16B3E3")
	back, err := ParseStack(FormatStack(st))
	if err != nil || FormatStack(back) != FormatStack(st) {
		t.Errorf("FormatStack/ParseStack round trip: %v, %v", back, err)
	}
}

// The guide's example must parse as written, keep file order and refuse
// what it should.
func TestParseConfig(t *testing.T) {
	guide := `
layer_specific:
  "*.attention.*":
    compression_level: 0.4  # Preserve attention quality
    block_size: 16
    latent_dim: 8

  "*.mlp.*":
    compression_level: 0.7  # Higher compression for MLP
    block_size: 8
    latent_dim: 4
`
	c, err := ParseConfig([]byte(guide))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.LayerSpecific) != 2 || c.LayerSpecific[0].Pattern != "*.attention.*" || c.LayerSpecific[1].Pattern != "*.mlp.*" {
		t.Fatalf("rules = %+v, want attention then mlp", c.LayerSpecific)
	}
	r := c.LayerSpecific[1]
	if r.CompressionLevel != 0.7 || r.BlockSize != 8 || r.LatentDim != 4 || r.Line != 8 {
		t.Errorf("mlp rule = %+v", r)
	}

	tests := []struct {
		name, yaml, wantErr string
	}{
		{"unknown top key", "compresion_level: 0.5\n", `line 1: unknown key "compresion_level"`},
		{"unknown rule key", "layer_specific:\n  \"*.mlp.*\":\n    blocksize: 8\n", `line 3: rule "*.mlp.*": unknown key "blocksize"`},
		{"explicit zero", "block_size: 0\n", "line 1: block_size: 0 is not a positive integer"},
		{"level range", "compression_level: 1.5\n", "compression_level: compression level 1.5 out of range"},
		{"rule level range", "layer_specific:\n  \"*\": {compression_level: 0.05}\n", `layer_specific "*" (line 2): compression_level`},
		{"bad seed bits", "seed_bits: 40\n", "seed bits K=40"},
		{"unknown preset", "preset: turbo\n", `unknown preset "turbo"`},
		{"target twice", "target_bpw: 2\ntarget_ratio: 16\n", "set one"},
		{"passthrough with codec", "layer_specific:\n  \"*\": {passthrough: true, block_size: 8}\n", "cannot also set codec keys"},
		{"duplicate rule", "layer_specific:\n  - \"*\": {layers: 2}\n  - \"*\": {layers: 3}\n", "already a rule (line 2)"},
		{"bracket", "layer_specific:\n  \"x[0]\": {layers: 2}\n", "character classes"},
		{"unknown adaptive key", "adaptive:\n  cands: []\n", `unknown key "cands"`},
		{"unknown method", "adaptive: {method: magic}\n", `unknown method "magic"`},
		{"increments without base", "quality_increments: [0.2]\n", "needs base_quality"},
		{"not a mapping", "- a\n- b\n", "must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}

	// The list form keeps order too, and adaptive: true turns it on.
	c, err = ParseConfig([]byte("adaptive: true\nlayer_specific:\n  - \"b*\": {layers: 2}\n  - \"a*\": {passthrough: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Adaptive == nil || len(c.LayerSpecific) != 2 || c.LayerSpecific[0].Pattern != "b*" || !c.LayerSpecific[1].Passthrough {
		t.Errorf("list form: %+v", c)
	}
	if c, err := ParseConfig(nil); err != nil || c.Preset != "" {
		t.Errorf("empty config: %+v, %v", c, err)
	}
}

func TestShippedConfigParses(t *testing.T) {
	// workers, quiet and dtype are the CLI's run settings.
	c, err := LoadConfig("../../configs/compression.yaml", "workers", "quiet", "dtype")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile("../../configs/compression.yaml")
	for _, k := range FileKeys {
		if !strings.Contains(string(raw), "\n"+k+":") && !strings.Contains(string(raw), "\n# "+k+":") {
			t.Errorf("configs/compression.yaml does not document %q", k)
		}
	}
	// The shipped file documents the defaults: loading it must not change
	// the default plan.
	if c.Preset != "" || c.CompressionLevel != 0 || !c.Codec.IsZero() || c.targetBPW() != 0 || c.Adaptive != nil || len(c.LayerSpecific) != 0 {
		t.Errorf("configs/compression.yaml sets something: %+v", c)
	}
	if c.MinElements != 0 && c.MinElements != MinElements {
		t.Errorf("min_elements %d, default is %d", c.MinElements, MinElements)
	}
}

func TestLevels(t *testing.T) {
	prev := math.Inf(1)
	for i := 1; i <= 9; i++ {
		l := float64(i) / 10
		st, err := LevelParams(l)
		if err != nil {
			t.Fatal(err)
		}
		b := StackBPW(st)
		if b >= prev {
			t.Errorf("level %g: %.3f bits/weight, not below level %g's %.3f", l, b, l-0.1, prev)
		}
		prev = b
		ratio := 32 / b
		// The guide's bands, with a little slack at the seams.
		lo, hi := 3.0, 8.0
		switch {
		case i >= 7:
			lo, hi = 15, 25
		case i >= 4:
			lo, hi = 8, 15
		}
		if ratio < lo*0.95 || ratio > hi*1.05 {
			t.Errorf("level %g: %.1f× vs fp32, outside the guide's %g–%g× band", l, ratio, lo, hi)
		}
		for _, p := range st {
			if err := p.Validate(); err != nil {
				t.Errorf("level %g: %v", l, err)
			}
		}
	}
	if st, _ := LevelParams(0.3); len(st) != 1 || st[0] != encoder.Paper4Bit {
		t.Errorf("level 0.3 = %v, want the paper's 4-bit config", st)
	}
	if st, _ := LevelParams(0.1); st[0] != encoder.Paper4Bit || len(st) < 2 {
		t.Errorf("level 0.1 = %v, want enhancement layers on the paper's 4-bit base", st)
	}
	a, _ := LevelParams(0.54)
	b, _ := LevelParams(0.5)
	if FormatStack(a) != FormatStack(b) {
		t.Errorf("0.54 should round to 0.5")
	}
	for _, bad := range []float64{0, 0.05, 0.95, 1, math.NaN()} {
		if _, err := LevelParams(bad); err == nil {
			t.Errorf("level %g accepted", bad)
		}
	}
	// Callers get a copy.
	a[0].BlockSize = 99
	if c, _ := LevelParams(0.5); c[0].BlockSize == 99 {
		t.Error("LevelParams returned the table itself")
	}
}

func TestProgressiveParams(t *testing.T) {
	st, err := ProgressiveParams(0.3, []float64{0.2, 0.3, 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := FormatStack(st), "C12 P2 K16 B3 E3 + C32 P3 K16 B3 E3 + C8 P3 K16 B3 E3 + C8 P4 K16 B3 E3"; got != want {
		t.Fatalf("guide example: %s, want %s (as documented)", got, want)
	}
	// Cumulative size tracks the levels 0.7, 0.5, 0.2, 0.1.
	cum := 0.0
	for k, lvl := range []float64{0.7, 0.5, 0.2, 0.1} {
		cum += st[k].BitsPerWeight()
		want, _ := LevelBPW(lvl)
		if math.Abs(cum-want) > 0.8 {
			t.Errorf("after layer %d: %.3f bits/weight, level %g is %.3f", k, cum, lvl, want)
		}
	}
	for _, bad := range []struct {
		b   float64
		inc []float64
	}{{0, nil}, {1.2, nil}, {0.3, []float64{0}}, {0.3, []float64{-0.1}}} {
		if _, err := ProgressiveParams(bad.b, bad.inc); err == nil {
			t.Errorf("ProgressiveParams(%g, %v) accepted", bad.b, bad.inc)
		}
	}
}

func TestPresets(t *testing.T) {
	want := map[string][2]float64{ // nominal bits/weight bounds of the coded tensors
		"fast":     {3.5, 4.1},
		"balanced": {1.9, 2.3},
		"quality":  {1.2, 1.35},
		"research": {1.0, 1.12},
	}
	for _, p := range Presets() {
		if err := p.Config.Validate(); err != nil {
			t.Errorf("preset %s: %v", p.Name, err)
		}
		if p.Settings() == "" || p.Summary == "" || p.Target == "" {
			t.Errorf("preset %s: empty description", p.Name)
		}
		b := p.Config.targetBPW()
		if b == 0 {
			st, err := baseStack(p.Config)
			if err != nil {
				t.Fatal(err)
			}
			b = StackBPW(st)
		}
		if w := want[p.Name]; b < w[0] || b > w[1] {
			t.Errorf("preset %s: %.3f bits/weight, want %g–%g", p.Name, b, w[0], w[1])
		}
	}
	fast, _ := Builtin("fast")
	if fast.SeedBits >= encoder.Paper4Bit.SeedBits {
		t.Errorf("fast must search fewer seeds than the paper: K=%d", fast.SeedBits)
	}
	if _, err := Builtin("turbo"); err == nil || !strings.Contains(err.Error(), "fast, balanced") {
		t.Errorf("unknown preset error = %v", err)
	}
	// Builtin returns copies.
	q, _ := Builtin("quality")
	q.Adaptive.Candidates[0].BlockSize = 99
	if q2, _ := Builtin("quality"); q2.Adaptive.Candidates[0].BlockSize == 99 {
		t.Error("Builtin shares the preset's candidate slice")
	}
}

// memSource is an in-memory Source.
type memSource struct {
	infos []checkpoint.TensorInfo
	data  map[string][]float32
	reads int
}

func (m *memSource) Tensors() []checkpoint.TensorInfo { return m.infos }
func (m *memSource) ReadFloat32(name string) ([]float32, error) {
	m.reads++
	w, ok := m.data[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	return w, nil
}

func (m *memSource) add(name, dtype string, shape []int64, scale float64, rng *rand.Rand) {
	ti := checkpoint.TensorInfo{Name: name, DType: dtype, Shape: shape}
	m.infos = append(m.infos, ti)
	if m.data == nil {
		m.data = map[string][]float32{}
	}
	w := make([]float32, ti.NumElements())
	for i := range w {
		w[i] = float32(rng.NormFloat64() * scale)
	}
	m.data[name] = w
}

func llamaLike() *memSource {
	rng := rand.New(rand.NewSource(1))
	m := &memSource{}
	m.add("model.embed_tokens.weight", "F32", []int64{64, 32}, 1, rng)
	m.add("model.layers.0.self_attn.q_proj.weight", "F32", []int64{32, 32}, 0.1, rng)
	m.add("model.layers.0.mlp.gate_proj.weight", "BF16", []int64{48, 32}, 0.05, rng)
	m.add("model.layers.0.mlp.up_proj.weight", "F32", []int64{48, 32}, 0.05, rng)
	m.add("model.layers.0.input_layernorm.weight", "F32", []int64{32}, 1, rng)
	m.add("model.layers.0.mlp.tiny.weight", "F32", []int64{8, 8}, 1, rng)
	m.add("position_ids", "I64", []int64{64, 32}, 0, rng)
	return m
}

func planMap(t *testing.T, plans []TensorPlan) map[string]TensorPlan {
	t.Helper()
	out := map[string]TensorPlan{}
	for _, p := range plans {
		out[p.Name] = p
	}
	return out
}

func TestPlanPrecedence(t *testing.T) {
	src := llamaLike()
	ctx := context.Background()
	fileRules := `
compression_level: 0.5
layer_specific:
  "*.mlp.*": {compression_level: 0.7}
  "*.self_attn.*": {block_size: 16}
  "*.gate_proj.*": {latent_dim: 2, layers: 2}
  "*.nothing.*": {layers: 3}
  "*.q_proj.*": {passthrough: true}
`
	cfg, err := ParseConfig([]byte(fileRules))
	if err != nil {
		t.Fatal(err)
	}
	level5, _ := LevelParams(0.5)
	tests := []struct {
		name   string
		cfg    Config
		flags  Config
		tensor string
		want   string // FormatStack, or "passthrough"
		rule   string // substring of Rule
	}{
		{"default", Config{}, Config{}, "model.embed_tokens.weight", "C8 P3 K16 B4 E4", "default"},
		{"1-D passthrough", Config{}, Config{}, "model.layers.0.input_layernorm.weight", "passthrough", "1-D"},
		{"small passthrough", Config{}, Config{}, "model.layers.0.mlp.tiny.weight", "passthrough", "below the 1024"},
		{"int passthrough", Config{}, Config{}, "position_ids", "passthrough", "dtype I64"},
		{"min_elements lowers the bar", Config{MinElements: 10}, Config{}, "model.layers.0.mlp.tiny.weight", "C8 P3 K16 B4 E4", "default"},
		{"preset", Config{Preset: "fast"}, Config{}, "model.embed_tokens.weight", "C8 P4 K12 B4 E3", "preset fast"},
		{"flag preset beats file preset", Config{Preset: "balanced"}, Config{Preset: "fast"}, "model.embed_tokens.weight", "C8 P4 K12 B4 E3", "preset fast"},
		{"level beats preset", Config{Preset: "fast", CompressionLevel: 0.5}, Config{}, "model.embed_tokens.weight", FormatStack(level5), "config: compression_level 0.5"},
		{"flag level beats a target preset", Config{}, Config{Preset: "quality", CompressionLevel: 0.5}, "model.embed_tokens.weight", FormatStack(level5), "flags: compression_level 0.5"},
		{"flag level beats file level", cfg, Config{CompressionLevel: 0.9}, "model.embed_tokens.weight", "C24 P4 K16 B3 E3", "flags: compression_level 0.9"},
		{"rule level beats flag level", cfg, Config{CompressionLevel: 0.9}, "model.layers.0.mlp.up_proj.weight", "C12 P2 K16 B3 E3", `"*.mlp.*" (line 4)`},
		{"rule keys refine the global stack", cfg, Config{CompressionLevel: 0.9}, "model.layers.0.mlp.gate_proj.weight", "C24 P2 K16 B3 E3 + C24 P2 K16 B3 E3", `"*.gate_proj.*"`},
		{"last matching rule wins", cfg, Config{}, "model.layers.0.mlp.gate_proj.weight", "C12 P2 K16 B3 E3 + C12 P2 K16 B3 E3", `"*.gate_proj.*"`},
		{"rule passthrough", cfg, Config{}, "model.layers.0.self_attn.q_proj.weight", "passthrough", `"*.q_proj.*"`},
		{"flag codec beats rule", cfg, Config{Codec: Codec{SeedBits: 12}}, "model.layers.0.mlp.gate_proj.weight", "C12 P2 K12 B3 E3 + C12 P2 K12 B3 E3", "flags: seed_bits=12"},
		{"flag layers repeat the last layer", Config{}, Config{Layers: 3}, "model.embed_tokens.weight", "C8 P3 K16 B4 E4 + C8 P3 K16 B4 E4 + C8 P3 K16 B4 E4", "default"},
		{"layers truncate", Config{CompressionLevel: 0.1}, Config{Layers: 1}, "model.embed_tokens.weight", "C8 P3 K16 B4 E4", "compression_level 0.1"},
		{"quality stack", Config{BaseQuality: 0.3, QualityIncrements: []float64{0.2}}, Config{}, "model.embed_tokens.weight", "C12 P2 K16 B3 E3 + C32 P3 K16 B3 E3", "base_quality 0.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plans, _, err := Plan(ctx, tt.cfg, src, Options{Flags: tt.flags})
			if err != nil {
				t.Fatal(err)
			}
			p := planMap(t, plans)[tt.tensor]
			got := FormatStack(p.Layers)
			if p.Passthrough {
				got = "passthrough"
			}
			if got != tt.want || !strings.Contains(p.Rule, tt.rule) {
				t.Errorf("%s: got %q (rule %q), want %q (rule containing %q)", tt.tensor, got, p.Rule, tt.want, tt.rule)
			}
			if !p.Passthrough && p.Bits != StackBits(p.Layers, p.Elements) {
				t.Errorf("bits %d, want %d", p.Bits, StackBits(p.Layers, p.Elements))
			}
		})
	}
	if src.reads != 0 {
		t.Errorf("fixed plans read %d tensors; they need none", src.reads)
	}

	_, warns, err := Plan(ctx, cfg, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 2 || !strings.Contains(warns[0], `"*.self_attn.*" (line 5) matches 1 tensor(s) but a later rule wins`) {
		t.Errorf("warnings = %q", warns)
	}
	joined := strings.Join(warns, "\n")
	if !strings.Contains(joined, `"*.nothing.*" (line 7) matches no tensor`) {
		t.Errorf("no warning for the rule that matches nothing: %q", joined)
	}
	// "*.mlp.*" matches gate_proj and tiny; gate_proj goes to the later
	// rule, tiny to "*.mlp.*": it wins once, so no shadow warning.
	if strings.Contains(joined, `"*.mlp.*"`) {
		t.Errorf("spurious warning: %q", joined)
	}
	shadow, _ := ParseConfig([]byte("layer_specific:\n  \"*.q_proj.*\": {layers: 2}\n  \"*attn*\": {layers: 3}\n"))
	_, warns, _ = Plan(ctx, shadow, src, Options{})
	if len(warns) != 1 || !strings.Contains(warns[0], "a later rule wins for all of them") {
		t.Errorf("shadowed rule warnings = %q", warns)
	}

	// Errors name the tensor and the rule.
	bad, _ := ParseConfig([]byte("layer_specific:\n  \"*.mlp.*\": {block_size: 2}\n"))
	if _, _, err := Plan(ctx, bad, src, Options{}); err == nil || !strings.Contains(err.Error(), "gate_proj") || !strings.Contains(err.Error(), `"*.mlp.*"`) {
		t.Errorf("invalid rule result: %v", err)
	}
	if _, _, err := Plan(ctx, Config{CompressionLevel: 0.5, TargetBPW: 2}, src, Options{}); err == nil || !strings.Contains(err.Error(), "set one") {
		t.Errorf("level+target in one source: %v", err)
	}
}

// A sampled measurement must track the full encode's error; a small tensor
// is measured exactly.
func TestMeasureTensor(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(2))
	p := encoder.Params{BlockSize: 8, LatentDim: 3, SeedBits: 10, CoeffBits: 4, ExpBits: 4}
	q := encoder.Params{BlockSize: 16, LatentDim: 3, SeedBits: 10, CoeffBits: 3, ExpBits: 3}
	stacks := [][]encoder.Params{{p}, {q}, {q, q}}

	small := make([]float32, 1000)
	for i := range small {
		small[i] = float32(rng.NormFloat64())
	}
	ms, err := MeasureTensor(ctx, "small", small, stacks, Sampler{Weights: 4096}, encoder.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range stacks {
		res, err := encoder.Encode(ctx, "small", small, st, encoder.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if ms[i].Sampled || ms[i].SqErr != res.SqErr[len(st)-1] || ms[i].Bits != StackBits(st, 1000) {
			t.Errorf("stack %d: %+v, want exact %g", i, ms[i], res.SqErr[len(st)-1])
		}
	}

	// Rows of different scale, as in real weights: the estimate must not
	// be fooled by them.
	big := make([]float32, 96*512)
	for r := 0; r < 96; r++ {
		s := math.Exp(rng.NormFloat64())
		for c := 0; c < 512; c++ {
			big[r*512+c] = float32(rng.NormFloat64() * s * 0.02)
		}
	}
	ms, err = MeasureTensor(ctx, "big", big, stacks, Sampler{Weights: 4096}, encoder.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range stacks {
		res, err := encoder.Encode(ctx, "big", big, st, encoder.Options{})
		if err != nil {
			t.Fatal(err)
		}
		full := res.SqErr[len(st)-1]
		if !ms[i].Sampled || math.Abs(ms[i].SqErr/full-1) > 0.2 {
			t.Errorf("stack %s: sampled estimate %g vs full %g (%.0f%% off)", FormatStack(st), ms[i].SqErr, full, 100*(ms[i].SqErr/full-1))
		}
	}
	if _, err := MeasureTensor(ctx, "nan", []float32{0, float32(math.NaN())}, stacks, Sampler{}, encoder.Options{}); err == nil || !strings.Contains(err.Error(), `"nan"`) {
		t.Errorf("NaN tensor: %v", err)
	}
}

func TestSamplerAnchorsLargestBlock(t *testing.T) {
	w := make([]float32, 100000)
	for i := range w {
		w[i] = 0.01
	}
	w[77777] = 5 // the block that sets the exponent bias
	s := Sampler{Weights: 1024}.take(w, [][]encoder.Params{{encoder.Paper4Bit}})
	if s.n1 >= len(w) || s.n1 > 1100 {
		t.Fatalf("sample of %d weights measures %d", len(s.w), s.n1)
	}
	found := false
	for _, x := range s.w[s.n1:] {
		found = found || x == 5
	}
	if !found {
		t.Error("the largest block is not in the anchor segments")
	}
	if encoder.ExpBias(s.w, encoder.Paper4Bit) != encoder.ExpBias(w, encoder.Paper4Bit) {
		t.Error("sample's exponent bias differs from the tensor's")
	}
}

// bruteForce is the optimal allocation by enumeration.
func bruteForce(opts [][]Option, budget float64) float64 {
	best := math.Inf(1)
	var rec func(t int, bits, err float64)
	rec = func(t int, bits, err float64) {
		if bits > budget {
			return
		}
		if t == len(opts) {
			best = math.Min(best, err)
			return
		}
		for _, o := range opts[t] {
			rec(t+1, bits+o.Bits, err+o.SqErr)
		}
	}
	rec(0, 0, 0)
	return best
}

func TestAllocate(t *testing.T) {
	// A designed case: tensor 1 is where bits buy the most.
	opts := [][]Option{
		{{Bits: 100, SqErr: 10}, {Bits: 200, SqErr: 9}},
		{{Bits: 100, SqErr: 50}, {Bits: 200, SqErr: 5}},
	}
	if c, ok := Allocate(opts, 300); !ok || c[0] != 0 || c[1] != 1 {
		t.Errorf("designed case: %v %v", c, ok)
	}
	if c, ok := Allocate(opts, 150); ok || c[0] != 0 || c[1] != 0 {
		t.Errorf("infeasible budget: %v %v, want cheapest and !ok", c, ok)
	}
	// Random convex-ish instances against brute force.
	rng := rand.New(rand.NewSource(3))
	worst := 0.0
	for it := 0; it < 300; it++ {
		nt := 2 + rng.Intn(4)
		opts := make([][]Option, nt)
		minB, maxB := 0.0, 0.0
		for k := range opts {
			n := 1000 + rng.Float64()*9000
			s2 := math.Exp(rng.NormFloat64() * 2)
			for j := 0; j < 1+rng.Intn(5); j++ {
				bpw := 0.8 + rng.Float64()*4
				e := n * s2 * math.Pow(2, -1.6*bpw) * (0.7 + 0.6*rng.Float64())
				opts[k] = append(opts[k], Option{Bits: math.Round(n * bpw), SqErr: e})
			}
			lo, hi := math.Inf(1), 0.0
			for _, o := range opts[k] {
				lo, hi = math.Min(lo, o.Bits), math.Max(hi, o.Bits)
			}
			minB += lo
			maxB += hi
		}
		budget := minB + rng.Float64()*(maxB-minB)
		c, ok := Allocate(opts, budget)
		if !ok {
			t.Fatalf("feasible budget reported infeasible")
		}
		bits, e := 0.0, 0.0
		for k, j := range c {
			bits += opts[k][j].Bits
			e += opts[k][j].SqErr
		}
		if bits > budget {
			t.Fatalf("over budget: %g > %g", bits, budget)
		}
		opt := bruteForce(opts, budget)
		if e < opt*(1-1e-9) {
			t.Fatalf("better than optimal?")
		}
		worst = math.Max(worst, e/opt-1)
	}
	// Greedy on the hull plus the fill pass is not exact (knapsack), but
	// must stay close to optimal.
	if worst > 0.05 {
		t.Errorf("worst gap to the optimum %.1f%%", 100*worst)
	}
	t.Logf("worst gap to the optimum over 300 instances: %.2f%%", 100*worst)
}

func TestAllocateByVariance(t *testing.T) {
	// Same options for three tensors; the highest variance gets the most
	// bits, and the budget holds.
	mk := func() []Option { return []Option{{Bits: 1000}, {Bits: 2000}, {Bits: 4000}} }
	opts := [][]Option{mk(), mk(), mk()}
	el := []int64{1000, 1000, 1000}
	sig := []float64{1, 100, 0.01}
	c, ok := AllocateByVariance(opts, el, sig, 6000)
	if !ok {
		t.Fatal("infeasible")
	}
	bits := opts[0][c[0]].Bits + opts[1][c[1]].Bits + opts[2][c[2]].Bits
	if bits > 6000 || !(c[1] >= c[0] && c[0] >= c[2]) || c[1] == c[2] {
		t.Errorf("choice %v (%g bits): want more bits for higher variance within 6000", c, bits)
	}
	if _, ok := AllocateByVariance(opts, el, sig, 2000); ok {
		t.Error("budget below the cheapest accepted")
	}
}

func TestPlanTarget(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	src := &memSource{}
	// Large enough that the archive index (counted against the target) is
	// a small share of the budget.
	src.add("a.weight", "F32", []int64{256, 128}, 1, rng)
	src.add("b.weight", "F32", []int64{256, 128}, 0.01, rng)
	src.add("c.weight", "F32", []int64{256, 64}, 0.1, rng)
	src.add("norm", "F32", []int64{64}, 1, rng)
	src.add("fixed.weight", "F32", []int64{64, 64}, 1, rng)
	cands := []Codec{
		{BlockSize: 8, LatentDim: 3, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
		{BlockSize: 12, LatentDim: 3, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
		{BlockSize: 16, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
		{BlockSize: 32, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
	}
	rules, _ := ParseConfig([]byte("layer_specific:\n  \"fixed.*\": {seed_bits: 8, block_size: 16}\n"))
	for _, method := range []string{"measured", "variance"} {
		cfg := rules
		cfg.TargetBPW = 2.0
		cfg.Adaptive = &Adaptive{Method: method, Candidates: cands}
		plans, _, err := Plan(context.Background(), cfg, src, Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := Summarize(plans, 1e5)
		if s.BPW > 2.0 || s.BPW < 1.5 {
			t.Errorf("%s: %.3f bits/weight for a 2.0 target", method, s.BPW)
		}
		m := planMap(t, plans)
		if !strings.Contains(m["fixed.weight"].Rule, `"fixed.*"`) || m["fixed.weight"].Layers[0].BlockSize != 16 {
			t.Errorf("%s: the rule's tensor was reallocated: %+v", method, m["fixed.weight"])
		}
		if !m["norm"].Passthrough {
			t.Errorf("%s: norm coded", method)
		}
		// The tiny-variance tensor b gets no more bits than a.
		if m["b.weight"].Bits > m["a.weight"].Bits {
			t.Errorf("%s: b (σ=0.01) got %d bits, a (σ=1) %d", method, m["b.weight"].Bits, m["a.weight"].Bits)
		}
		if method == "measured" && (s.EstRelErr <= 0 || !m["a.weight"].Measured) {
			t.Errorf("measured plan without estimates: %+v", s)
		}
		if s.EstSeconds <= 0 {
			t.Errorf("%s: no time estimate", method)
		}
	}
	cfg := Config{TargetRatio: 100, Adaptive: &Adaptive{Candidates: cands}}
	if _, _, err := Plan(context.Background(), cfg, src, Options{}); err == nil || !strings.Contains(err.Error(), "out of reach") {
		t.Errorf("unreachable target: %v", err)
	}
	// Adaptive without a target: the variance heuristic, no encoding.
	plans, _, err := Plan(context.Background(), Config{Adaptive: &Adaptive{Candidates: cands}}, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := planMap(t, plans)
	if m["a.weight"].Layers[0].BlockSize > m["b.weight"].Layers[0].BlockSize {
		t.Errorf("variance heuristic: high-variance a got larger blocks (%v) than b (%v)", m["a.weight"].Layers, m["b.weight"].Layers)
	}
}

func TestEstimateSeconds(t *testing.T) {
	pl := func(s string) TensorPlan { return TensorPlan{Layers: mustStack(s)} }
	base := EstimateSeconds(pl("C8P3K16B4E4"), 1e6, 1e5)
	if math.Abs(base-10) > 1e-9 {
		t.Errorf("paper config at 1e5 w/s: %g s for 1e6 weights, want 10", base)
	}
	if !(EstimateSeconds(pl("C8P3K12B4E4"), 1e6, 1e5) < base && base < EstimateSeconds(pl("C8P3K20B4E4"), 1e6, 1e5)) {
		t.Error("cost not monotone in K")
	}
	if EstimateSeconds(pl("C8P3K16B4E4+C8P3K16B4E4"), 1e6, 1e5) != 2*base {
		t.Error("two layers should cost twice one")
	}
	if EstimateSeconds(pl("C16P8K16B4E4"), 1e6, 1e5) < 20*base {
		t.Error("P=8 should be flagged as very slow")
	}
	if EstimateSeconds(TensorPlan{Passthrough: true}, 1e6, 1e5) != 0 {
		t.Error("passthrough costs encode time")
	}
}

func TestFlushSubnormals(t *testing.T) {
	w := []float32{1, 0, 1e-40, -1e-40, 1.2e-38, -5}
	got := FlushSubnormals(w)
	want := []float32{1, 0, 0, 0, 1.2e-38, -5}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("element %d: %g, want %g", i, got[i], want[i])
		}
	}
	if w[2] != 1e-40 {
		t.Error("input modified")
	}
	clean := []float32{1, 2}
	if &FlushSubnormals(clean)[0] != &clean[0] {
		t.Error("no subnormals: want the input back, not a copy")
	}
}

func TestCalibrate(t *testing.T) {
	wps, err := Calibrate(context.Background(), encoder.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Anything from a slow CI box to a fast desktop; zero or absurd means
	// the timing is broken.
	if wps < 100 || wps > 1e9 {
		t.Errorf("calibration: %g weights/s", wps)
	}
}

// A preset's size target is a best effort: on a model too small for it, the
// plan falls back to the smallest allowed settings with a warning, where an
// explicit --target-bpw is an error (TestPlanTarget).
func TestPresetTargetFallsBackOnTinyModels(t *testing.T) {
	if testing.Short() {
		t.Skip("measures K=16/18 candidates")
	}
	rng := rand.New(rand.NewSource(9))
	src := &memSource{}
	src.add("tiny.weight", "F32", []int64{32, 64}, 1, rng)
	// The container's overhead (the archive package estimates it in real
	// use) is what puts the target out of reach here.
	overhead := func([]checkpoint.TensorInfo, []TensorPlan) int64 { return 2048 }
	plans, warnings, err := Plan(context.Background(), Config{Preset: "quality"}, src, Options{OverheadBytes: overhead})
	if err != nil {
		t.Fatalf("preset on a tiny model: %v", err)
	}
	if len(warnings) == 0 || !strings.Contains(strings.Join(warnings, "\n"), "out of reach") {
		t.Errorf("no out-of-reach warning: %q", warnings)
	}
	if plans[0].Passthrough || len(plans[0].Layers) == 0 {
		t.Errorf("tiny.weight not coded: %+v", plans[0])
	}
}

// A duplicate (tied weights) gets its original's plan, takes no bits, is
// not read by the measuring pass, and its weights still count in a
// bits-per-weight target: the rest get the bits it saves.
func TestPlanDuplicates(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	src := &memSource{}
	src.add("embed.weight", "F32", []int64{256, 128}, 1, rng)
	src.add("mlp.weight", "F32", []int64{256, 128}, 0.1, rng)
	src.add("norm", "F32", []int64{64}, 1, rng)
	src.add("lm_head.weight", "F32", []int64{256, 128}, 1, rng)
	src.add("norm2", "F32", []int64{64}, 1, rng)
	dups := []string{"", "", "", "embed.weight", "norm"}
	cands := []Codec{
		{BlockSize: 8, LatentDim: 3, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
		{BlockSize: 16, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
		{BlockSize: 32, LatentDim: 2, SeedBits: 8, CoeffBits: 3, ExpBits: 3},
	}
	cfg := Config{TargetBPW: 1.5, Adaptive: &Adaptive{Candidates: cands}}
	with, _, err := Plan(context.Background(), cfg, src, Options{DuplicateOf: dups})
	if err != nil {
		t.Fatal(err)
	}
	reads := src.reads
	m := planMap(t, with)
	head, embed := m["lm_head.weight"], m["embed.weight"]
	if head.DuplicateOf != "embed.weight" || head.Bits != 0 || fmt.Sprint(head.Layers) != fmt.Sprint(embed.Layers) || head.Rule != `duplicate of "embed.weight"` {
		t.Errorf("lm_head.weight: %+v (embed %+v)", head, embed)
	}
	if n2 := m["norm2"]; n2.DuplicateOf != "norm" || !n2.Passthrough || n2.Bits != 0 {
		t.Errorf("norm2: %+v", n2)
	}
	if reads != 2 {
		t.Errorf("the measuring pass read %d tensors, want 2 (no duplicates)", reads)
	}
	var bits, weights int64
	for _, p := range with {
		bits += p.Bits
		weights += p.Elements
	}
	if bpw := float64(bits) / float64(weights); bpw > 1.5 {
		t.Errorf("%.3f bits/weight over all weights for a 1.5 target", bpw)
	}
	// Without the duplicate the same target leaves the others fewer bits.
	src.reads = 0
	without, _, err := Plan(context.Background(), cfg, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mw := planMap(t, without)
	if mw["mlp.weight"].Bits+mw["embed.weight"].Bits >= embed.Bits+m["mlp.weight"].Bits {
		t.Errorf("storing lm_head once freed no bits for the rest: %d+%d vs %d+%d",
			mw["mlp.weight"].Bits, mw["embed.weight"].Bits, m["mlp.weight"].Bits, embed.Bits)
	}
}

// A rule whose tensors are all stored exactly anyway says it changes
// nothing.
func TestRuleOnExactTensorsWarns(t *testing.T) {
	cfg, err := ParseConfig([]byte("layer_specific:\n  \"*layernorm*\": {seed_bits: 12}\n  \"*.mlp.*\": {seed_bits: 12}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, warnings, err := Plan(context.Background(), cfg, llamaLike(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"*layernorm*"`) || !strings.Contains(warnings[0], "only matches tensor(s) that are stored exactly") || !strings.Contains(warnings[0], "1-D tensor") {
		t.Errorf("warnings %q", warnings)
	}
}

// The commented layer_specific example in configs/compression.yaml does
// what its comments say: attention gets more bits per weight than the MLP.
func TestShippedRuleExample(t *testing.T) {
	raw, err := os.ReadFile("../../configs/compression.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var ex []string
	for i, l := range lines {
		if l == "# layer_specific:" {
			for _, m := range lines[i:] {
				if !strings.HasPrefix(m, "# ") && m != "#" {
					break
				}
				ex = append(ex, strings.TrimPrefix(m, "# "))
			}
			break
		}
	}
	if len(ex) == 0 {
		t.Fatal("no commented layer_specific example in configs/compression.yaml")
	}
	cfg, err := ParseConfig([]byte(strings.Join(ex, "\n")))
	if err != nil {
		t.Fatalf("the example does not parse: %v\n%s", err, strings.Join(ex, "\n"))
	}
	rng := rand.New(rand.NewSource(2))
	src := &memSource{}
	src.add("model.layers.0.self_attn.q_proj.weight", "F32", []int64{64, 64}, 0.02, rng)
	src.add("model.layers.0.mlp.up_proj.weight", "F32", []int64{172, 64}, 0.02, rng)
	plans, _, err := Plan(context.Background(), cfg, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := planMap(t, plans)
	attn, mlp := m["model.layers.0.self_attn.q_proj.weight"], m["model.layers.0.mlp.up_proj.weight"]
	if StackBPW(attn.Layers) <= StackBPW(mlp.Layers) {
		t.Errorf("attention %s (%.3f bits/weight) gets no more bits than the MLP %s (%.3f)", FormatStack(attn.Layers), StackBPW(attn.Layers), FormatStack(mlp.Layers), StackBPW(mlp.Layers))
	}
}

// A tensor with its original's bytes but a rule of its own is stored on
// its own (the rule wins), with a warning.
func TestDuplicateWithItsOwnRule(t *testing.T) {
	src := llamaLike()
	dups := make([]string, len(src.infos))
	dups[3] = "model.layers.0.mlp.gate_proj.weight" // up_proj: say it were a copy
	cfg, _ := ParseConfig([]byte("layer_specific:\n  \"*up_proj*\": {seed_bits: 10}\n"))
	plans, warnings, err := Plan(context.Background(), cfg, src, Options{DuplicateOf: dups})
	if err != nil {
		t.Fatal(err)
	}
	if p := plans[3]; p.DuplicateOf != "" || p.Layers[0].SeedBits != 10 {
		t.Errorf("up_proj: %+v", p)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "stored on its own") {
		t.Errorf("warnings %q", warnings)
	}
}
