package presets

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/encoder"
)

// Source is what Plan needs from a checkpoint (checkpoint.Source has it).
// ReadFloat32 is only called in the adaptive and target modes, one tensor at
// a time, so memory stays proportional to the largest tensor.
type Source interface {
	Tensors() []checkpoint.TensorInfo
	ReadFloat32(name string) ([]float32, error)
}

// Options are Plan's inputs besides the config file.
type Options struct {
	// Flags are the command-line settings (highest precedence). Every field
	// of Config but LayerSpecific may be set; its Codec fields override
	// every layer of every coded tensor, rules included.
	Flags Config
	// Encoder options for the sampled measurements (Workers, Kernel).
	Encoder encoder.Options
	// Progress, when set, is called after each tensor a measuring pass reads.
	Progress func(done, total int, name string)
	// OverheadBytes, when set, estimates the bytes the output's container
	// (header and index) adds for these plans; a size target counts them
	// against its budget. Plans not yet decided have Layers nil and
	// Passthrough false: count them as one layer.
	OverheadBytes func(infos []checkpoint.TensorInfo, plans []TensorPlan) int64
	// FlagOrigins says, per key of Flags, where its value came from
	// ("flags" or "env", for a SEEDLM_* variable), so rules (--dry-run,
	// inspect) name the real source; keys it lacks are "flags".
	FlagOrigins map[string]string
	// DuplicateOf, when set, has one entry per tensor of the source: the
	// name of an earlier tensor with the same bytes ("" for none). Such a
	// tensor is stored once: it takes no bits (its weights still count in
	// a bits-per-weight target, as the decompressed model has them), is
	// left out of the allocation, and gets its original's plan.
	DuplicateOf []string
}

// global is the settings that apply to every tensor no rule claims, after
// folding preset < config file < flags.
type global struct {
	stack      []encoder.Params
	stackFrom  string
	target     float64 // bits per weight over the whole archive; 0: none
	targetFrom string
	adaptive   *Adaptive
	adaptFrom  string
	layers     int
	minElem    int64
	flagsCodec Codec
	origin     func(key string) string // where a Flags key came from
	rules      []Rule
}

// baseStack is a single Config's own stack (no preset, no target).
func baseStack(c Config) ([]encoder.Params, error) {
	st := []encoder.Params{encoder.Paper4Bit}
	var err error
	if c.CompressionLevel != 0 {
		if st, err = LevelParams(c.CompressionLevel); err != nil {
			return nil, err
		}
	}
	if c.BaseQuality != 0 {
		if st, err = ProgressiveParams(c.BaseQuality, c.QualityIncrements); err != nil {
			return nil, err
		}
	}
	for i := range st {
		st[i] = c.Codec.Apply(st[i])
	}
	return withLayers(st, c.Layers), nil
}

// withLayers sets the number of progressive layers: n < len truncates the
// stack, n > len appends copies of its last layer (each enhancement layer
// then codes the residual at the same rate), 0 keeps it.
func withLayers(st []encoder.Params, n int) []encoder.Params {
	if n <= 0 || n == len(st) {
		return st
	}
	out := make([]encoder.Params, n)
	for i := range out {
		out[i] = st[min(i, len(st)-1)]
	}
	return out
}

// resolve folds the preset, the config file and the flags into the global
// settings. Precedence, lowest first: default (the paper's 4-bit config) <
// preset < config file < flags, and within each: a compression level or a
// quality stack replaces the stack (and cancels a target or adaptive set
// lower down), a target replaces a level set lower down, codec keys
// override fields of every layer.
func resolve(file Config, flags Config, origins map[string]string) (global, error) {
	const flagsLabel = "flags"
	origin := func(key string) string {
		if o := origins[key]; o != "" {
			return o
		}
		return flagsLabel
	}
	if len(flags.LayerSpecific) > 0 {
		return global{}, fmt.Errorf("layer_specific rules come from a config file, not flags")
	}
	if err := flags.Validate(); err != nil {
		return global{}, err
	}
	if err := file.Validate(); err != nil {
		return global{}, err
	}
	g := global{stack: []encoder.Params{encoder.Paper4Bit}, stackFrom: "default", minElem: MinElements, rules: file.LayerSpecific, origin: origin}
	type src struct {
		label string
		c     Config
	}
	var srcs []src
	preset := file.Preset
	if flags.Preset != "" {
		preset = flags.Preset
	}
	if preset != "" {
		pc, err := Builtin(preset)
		if err != nil {
			return g, err
		}
		srcs = append(srcs, src{"preset " + preset, pc})
	}
	srcs = append(srcs, src{"config", file}, src{flagsLabel, flags})
	for _, s := range srcs {
		c := s.c
		if c.CompressionLevel != 0 && c.targetBPW() != 0 {
			return g, fmt.Errorf("%s: compression_level and a target size both set: a level fixes the size, a target chooses it; set one", s.label)
		}
		if c.CompressionLevel != 0 && c.BaseQuality != 0 {
			return g, fmt.Errorf("%s: compression_level and base_quality both set: both choose the layer stack; set one", s.label)
		}
		if c.CompressionLevel != 0 || c.BaseQuality != 0 {
			st, err := baseStack(Config{CompressionLevel: c.CompressionLevel, BaseQuality: c.BaseQuality, QualityIncrements: c.QualityIncrements})
			if err != nil {
				return g, fmt.Errorf("%s: %w", s.label, err)
			}
			// A level fixes the stack: it cancels a target or adaptive
			// choice from lower down (a preset's), not one set beside it.
			g.stack, g.target, g.adaptive = st, 0, nil
			if c.CompressionLevel != 0 {
				label := s.label
				if label == flagsLabel {
					label = origin("compression_level")
				}
				g.stackFrom = fmt.Sprintf("%s: compression_level %g", label, c.CompressionLevel)
			} else {
				g.stackFrom = fmt.Sprintf("%s: base_quality %g", s.label, c.BaseQuality)
			}
		}
		if t := c.targetBPW(); t != 0 {
			label := s.label
			if label == flagsLabel {
				label = origin("target_bpw")
				if c.TargetBPW == 0 {
					label = origin("target_ratio")
				}
			}
			g.target = t
			g.targetFrom = fmt.Sprintf("%s: target %.4g bits/weight", label, t)
		}
		if !c.Codec.IsZero() && s.label != flagsLabel {
			for i := range g.stack {
				g.stack[i] = c.Codec.Apply(g.stack[i])
			}
			if strings.HasPrefix(s.label, "preset") && g.stackFrom == "default" {
				g.stackFrom = s.label
			} else {
				g.stackFrom += fmt.Sprintf(", %s: %s", s.label, c.Codec)
			}
		}
		if c.Adaptive != nil {
			a := *c.Adaptive
			g.adaptive, g.adaptFrom = &a, s.label
		}
		if c.Layers != 0 {
			g.layers = c.Layers
		}
		if c.MinElements != 0 {
			g.minElem = c.MinElements
		}
	}
	if preset != "" && g.stackFrom == "default" && g.target == 0 {
		g.stackFrom = "preset " + preset
	}
	g.flagsCodec = flags.Codec
	g.stack = withLayers(g.stack, g.layers)
	return g, nil
}

// finish applies the flags' codec keys and validates a tensor's stack.
func (g *global) finish(name, rule string, st []encoder.Params) ([]encoder.Params, error) {
	out := make([]encoder.Params, len(st))
	for i, p := range st {
		out[i] = g.flagsCodec.Apply(p)
		if err := out[i].Validate(); err != nil {
			return nil, fmt.Errorf("tensor %q (%s) layer %d: %w", name, rule, i, err)
		}
	}
	return out, nil
}

func (g *global) ruleSuffix() string {
	if g.flagsCodec.IsZero() {
		return ""
	}
	// " + flags: seed_bits=12", or per source: " + env: block_size=16 + flags: seed_bits=12".
	var order []string
	by := map[string][]string{}
	for _, k := range CodecKeys() {
		if v := g.flagsCodec.Get(k); v != 0 {
			o := g.origin(k)
			if by[o] == nil {
				order = append(order, o)
			}
			by[o] = append(by[o], fmt.Sprintf("%s=%d", k, v))
		}
	}
	var b strings.Builder
	for _, o := range order {
		fmt.Fprintf(&b, " + %s: %s", o, strings.Join(by[o], " "))
	}
	return b.String()
}

// lastMatch is the winning rule for a name: the LAST matching rule in file
// order (like .gitignore: general rules first, exceptions after), or -1.
func lastMatch(rules []Rule, name string) int {
	for i := len(rules) - 1; i >= 0; i-- {
		if Match(rules[i].Pattern, name) {
			return i
		}
	}
	return -1
}

// rawBits is a passthrough tensor's stored size in bits.
func rawBits(t checkpoint.TensorInfo) int64 {
	b, ok := dtype.Bits(t.DType)
	if !ok {
		b = 32 // unknown dtype: a guess, only for size estimates
	}
	return int64(b) * t.NumElements()
}

// Plan decides, for every tensor of src, whether to store it losslessly or
// code it, and with which layers. It returns the plans in src's order and
// warnings for the user (rules that match nothing or never win).
//
// Per tensor, in order:
//  1. A dtype that is not float, rank < 2, or fewer than min_elements
//     weights: passthrough ("passthrough: <reason>").
//  2. The winning layer_specific rule (last match): passthrough: true stores
//     it as-is; otherwise its keys refine the global stack (a rule level
//     replaces the stack, codec keys override fields, layers resizes it).
//     Such tensors keep their settings in every mode; in target mode their
//     bits are counted against the budget as fixed.
//  3. The global settings: the fixed stack; or, with adaptive and no
//     target, the variance heuristic; or, with a target, the allocation
//     (adaptive.method, default measured).
//  4. Flag codec keys override every coded tensor's layers.
//
// Only modes 3b and 3c read tensor data (every global tensor once).
func Plan(ctx context.Context, file Config, src Source, opt Options) ([]TensorPlan, []string, error) {
	g, err := resolve(file, opt.Flags, opt.FlagOrigins)
	if err != nil {
		return nil, nil, err
	}
	infos := src.Tensors()
	plans := make([]TensorPlan, len(infos))
	var warnings []string
	matched := make([]int, len(g.rules))
	won := make([]int, len(g.rules))
	inert := make([]int, len(g.rules))       // tensors the rule wins that are stored exactly whatever it says
	inertWhy := make([]string, len(g.rules)) // the first one's reason
	var open []int                           // tensors the global settings decide
	ruleOf := map[string]int{}               // each tensor's winning rule (-1: none)
	var fixedBits, totalElems int64
	for i, t := range infos {
		n := t.NumElements()
		totalElems += n
		p := TensorPlan{Name: t.Name, Elements: n}
		for ri, r := range g.rules {
			if Match(r.Pattern, t.Name) {
				matched[ri]++
			}
		}
		ri := lastMatch(g.rules, t.Name)
		ruleOf[t.Name] = ri
		if opt.DuplicateOf != nil && opt.DuplicateOf[i] != "" {
			o := opt.DuplicateOf[i]
			if oi, ok := ruleOf[o]; !ok || oi == ri {
				p.DuplicateOf = o
				plans[i] = p // mirrors its original below
				if ri >= 0 {
					won[ri]++
				}
				continue
			}
			// A rule gives it other settings than its original: the user
			// asked for that, so it is stored on its own.
			why := "no rule"
			if ri >= 0 {
				why = g.rules[ri].Name()
			}
			warnings = append(warnings, fmt.Sprintf("tensor %q has the same bytes as %q, but %s decides it and not %q's: it is stored on its own, not once for both",
				t.Name, o, why, o))
		}
		reason := PassthroughReason(t, g.minElem)
		if ri >= 0 {
			won[ri]++
			if reason != "" {
				if inert[ri]++; inert[ri] == 1 {
					inertWhy[ri] = reason
				}
			}
		}
		switch {
		case reason != "":
			p.Rule, p.Passthrough = "passthrough: "+reason, true
		case ri >= 0 && g.rules[ri].Passthrough:
			p.Rule, p.Passthrough = "passthrough: "+g.rules[ri].Name(), true
		case ri >= 0:
			r := g.rules[ri]
			st := g.stack
			if r.CompressionLevel != 0 {
				st, _ = LevelParams(r.CompressionLevel) // validated
			}
			st = append([]encoder.Params(nil), st...)
			for k := range st {
				st[k] = r.Codec.Apply(st[k])
			}
			if r.Layers != 0 {
				st = withLayers(st, r.Layers)
			} else if r.CompressionLevel != 0 {
				st = withLayers(st, g.layers)
			}
			p.Rule = r.Name() + g.ruleSuffix()
			if p.Layers, err = g.finish(t.Name, r.Name(), st); err != nil {
				return nil, nil, err
			}
		default:
			open = append(open, i)
		}
		if p.Passthrough {
			p.Bits = rawBits(t)
		} else if p.Layers != nil {
			p.Bits = StackBits(p.Layers, n)
		}
		if p.Layers != nil || p.Passthrough {
			fixedBits += p.Bits
		}
		plans[i] = p
	}
	for ri, r := range g.rules {
		switch {
		case matched[ri] == 0:
			warnings = append(warnings, fmt.Sprintf("%s matches no tensor", r.Name()))
		case won[ri] == 0:
			warnings = append(warnings, fmt.Sprintf("%s matches %d tensor(s) but a later rule wins for all of them", r.Name(), matched[ri]))
		case inert[ri] == won[ri]:
			warnings = append(warnings, fmt.Sprintf("%s only matches tensor(s) that are stored exactly whatever it says (%d, e.g. %s): it changes nothing",
				r.Name(), won[ri], inertWhy[ri]))
		}
	}

	switch {
	case g.target > 0:
		// The archive's header and index are part of the size the user
		// asked for: on small models they are a sizable share.
		var overhead int64
		if opt.OverheadBytes != nil {
			overhead = opt.OverheadBytes(infos, plans)
		}
		budget := g.target*float64(totalElems) - float64(fixedBits) - float64(8*overhead)
		if err := allocate(ctx, &g, src, infos, plans, open, budget, opt, &warnings); err != nil {
			return nil, nil, err
		}
	case g.adaptive != nil:
		if err := varianceOnly(ctx, &g, src, infos, plans, open, opt); err != nil {
			return nil, nil, err
		}
	default:
		for _, i := range open {
			st, err := g.finish(infos[i].Name, g.stackFrom, g.stack)
			if err != nil {
				return nil, nil, err
			}
			plans[i].Rule = g.stackFrom + g.ruleSuffix()
			plans[i].Layers = st
			plans[i].Bits = StackBits(st, plans[i].Elements)
		}
	}
	pos := make(map[string]int, len(infos))
	for i := range plans {
		pos[plans[i].Name] = i
		if o := plans[i].DuplicateOf; o != "" {
			j, ok := pos[o]
			if !ok || plans[j].DuplicateOf != "" {
				return nil, nil, fmt.Errorf("tensor %q: duplicate of %q, which is not an earlier original tensor", plans[i].Name, o)
			}
			plans[i].Rule = fmt.Sprintf("duplicate of %q", o)
			plans[i].Passthrough = plans[j].Passthrough
			plans[i].Layers = plans[j].Layers
			plans[i].Bits = 0
		}
	}
	return plans, warnings, nil
}

// candidateStacks turns the adaptive candidates into full stacks: unset
// fields come from base's first layer; the stack has len(base) layers if
// layers were asked for, else one. Without explicit candidates the Ladder
// is used, restricted near the target (within ×3 either side, at least
// three entries) and, for targets above 3.5 bits/weight, extended with
// enhancement stacks on the paper's 4-bit base.
func candidateStacks(a *Adaptive, base []encoder.Params, target float64) [][]encoder.Params {
	var out [][]encoder.Params
	seen := map[string]bool{}
	add := func(st []encoder.Params) {
		k := FormatStack(st)
		if !seen[k] {
			seen[k] = true
			out = append(out, st)
		}
	}
	if a != nil && len(a.Candidates) > 0 {
		for _, c := range a.Candidates {
			add([]encoder.Params{c.Apply(base[0])})
		}
		return out
	}
	var ladder [][]encoder.Params
	for _, p := range Ladder {
		ladder = append(ladder, []encoder.Params{p})
	}
	if target > 3.5 {
		for _, p := range Ladder {
			ladder = append(ladder, []encoder.Params{encoder.Paper4Bit, p})
		}
	}
	if target > 7 {
		for _, p := range Ladder {
			ladder = append(ladder, []encoder.Params{encoder.Paper4Bit, encoder.Paper4Bit, p})
		}
	}
	if target <= 0 {
		for _, st := range ladder[:len(Ladder)] {
			add(st)
		}
		return out
	}
	for _, st := range ladder {
		if b := StackBPW(st); b >= target/3 && b <= target*3 {
			add(st)
		}
	}
	if len(out) < 3 {
		// Extreme target: the three nearest.
		sort.SliceStable(ladder, func(i, j int) bool {
			return math.Abs(StackBPW(ladder[i])-target) < math.Abs(StackBPW(ladder[j])-target)
		})
		for _, st := range ladder[:3] {
			add(st)
		}
	}
	return out
}

// openStacks are the candidate stacks after layers and flag codec keys,
// invalid ones dropped (a flag may make some candidates impossible).
func (g *global) openStacks() ([][]encoder.Params, error) {
	var out [][]encoder.Params
	var firstErr error
	for _, st := range candidateStacks(g.adaptive, g.stack, g.target) {
		if g.layers > 0 {
			st = withLayers(st, g.layers)
		}
		fin, err := g.finish("", "candidate", st)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		out = append(out, fin)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no valid adaptive candidate: %v", firstErr)
	}
	return out, nil
}

func readOpen(ctx context.Context, src Source, infos []checkpoint.TensorInfo, open []int, opt Options, each func(k, i int, w []float32) error) error {
	for k, i := range open {
		if err := ctx.Err(); err != nil {
			return err
		}
		w, err := src.ReadFloat32(infos[i].Name)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", infos[i].Name, err)
		}
		if err := each(k, i, w); err != nil {
			return err
		}
		if opt.Progress != nil {
			opt.Progress(k+1, len(open), infos[i].Name)
		}
	}
	return nil
}

func secondMoment(w []float32) float64 {
	var s float64
	for _, x := range w {
		s += float64(x) * float64(x)
	}
	return s / float64(max(1, len(w)))
}

// varianceOnly is adaptive without a target: VarianceRates with θ = the
// global stack's rate, so the average stays near it.
func varianceOnly(ctx context.Context, g *global, src Source, infos []checkpoint.TensorInfo, plans []TensorPlan, open []int, opt Options) error {
	stacks, err := g.openStacks()
	if err != nil {
		return err
	}
	opts := make([][]Option, len(open))
	elems := make([]int64, len(open))
	sig := make([]float64, len(open))
	err = readOpen(ctx, src, infos, open, opt, func(k, i int, w []float32) error {
		if err := encoder.CheckFinite(infos[i].Name, w); err != nil {
			return err
		}
		elems[k] = int64(len(w))
		sig[k] = secondMoment(w)
		for _, st := range stacks {
			opts[k] = append(opts[k], Option{Bits: float64(StackBits(st, elems[k])), SqErr: 0})
		}
		return nil
	})
	if err != nil {
		return err
	}
	choice := VarianceRates(opts, elems, sig, StackBPW(g.stack))
	for k, i := range open {
		st := stacks[choice[k]]
		plans[i].Layers = st
		plans[i].Bits = StackBits(st, plans[i].Elements)
		plans[i].Rule = fmt.Sprintf("%s: adaptive variance (σ²=%.3g)%s", g.adaptFrom, sig[k], g.ruleSuffix())
	}
	return nil
}

// allocate is target mode: measure every open tensor with every candidate,
// then Allocate (or AllocateByVariance) within budget bits.
func allocate(ctx context.Context, g *global, src Source, infos []checkpoint.TensorInfo, plans []TensorPlan, open []int, budget float64, opt Options, warnings *[]string) error {
	stacks, err := g.openStacks()
	if err != nil {
		return err
	}
	method := methodName(g.adaptive)
	smp := Sampler{}
	if g.adaptive != nil {
		smp.Weights = g.adaptive.SampleWeights
	}
	opts := make([][]Option, len(open))
	elems := make([]int64, len(open))
	sig := make([]float64, len(open))
	norm := make([]float64, len(open))
	err = readOpen(ctx, src, infos, open, opt, func(k, i int, w []float32) error {
		elems[k] = int64(len(w))
		sig[k] = secondMoment(w)
		norm[k] = sig[k] * float64(len(w))
		if method == "variance" {
			if err := encoder.CheckFinite(infos[i].Name, w); err != nil {
				return err
			}
			for _, st := range stacks {
				opts[k] = append(opts[k], Option{Bits: float64(StackBits(st, elems[k]))})
			}
			return nil
		}
		ms, err := MeasureTensor(ctx, infos[i].Name, w, stacks, smp, opt.Encoder)
		if err != nil {
			return err
		}
		for _, m := range ms {
			opts[k] = append(opts[k], Option{Bits: float64(m.Bits), SqErr: m.SqErr})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(open) == 0 {
		return nil
	}
	var choice []int
	var ok bool
	if method == "variance" {
		choice, ok = AllocateByVariance(opts, elems, sig, budget)
	} else {
		if err := checkOptions(opts); err != nil {
			return err
		}
		choice, ok = Allocate(opts, budget)
	}
	if !ok {
		var min, all float64
		for k := range open {
			min += opts[k][lowerHull(opts[k])[0]].Bits
		}
		for _, p := range plans {
			all += float64(p.Elements)
		}
		smallest, fixed := (min+(g.target*all-budget))/all, (g.target*all-budget)/all
		if !strings.HasPrefix(g.targetFrom, "preset ") {
			return &UnreachableError{Target: g.targetFrom, Smallest: smallest, Fixed: fixed}
		}
		// A preset is a best effort, not a contract: on a model too small
		// for its ratio, take the smallest plan and say so.
		choice = make([]int, len(open))
		for k := range open {
			choice[k] = lowerHull(opts[k])[0]
		}
		*warnings = append(*warnings, fmt.Sprintf("%s is out of reach on this model: the archive index, passthrough and rule-fixed tensors alone take %.3f bits/weight; using the smallest plan the candidates allow (%.3f bits/weight)",
			g.targetFrom, fixed, smallest))
	}
	for k, i := range open {
		st := stacks[choice[k]]
		plans[i].Layers = st
		plans[i].Bits = StackBits(st, plans[i].Elements)
		plans[i].Norm2 = norm[k]
		if method != "variance" {
			plans[i].EstSqErr = opts[k][choice[k]].SqErr
			plans[i].Measured = true
		}
		plans[i].Rule = fmt.Sprintf("%s, %s allocation%s", g.targetFrom, method, g.ruleSuffix())
	}
	return nil
}

// Check validates flags and a config file together, as Plan would, without
// a model: bad values and settings that conflict only in combination (a
// level and a target in one source, an unknown preset).
func Check(file, flags Config) error {
	_, err := resolve(file, flags, nil)
	return err
}

// UnreachableError is a size target no plan can meet: a settings problem,
// not a failure of the model.
type UnreachableError struct {
	Target string // where the target came from, e.g. "flags: target 0.5 bits/weight"
	// Smallest is the smallest plan the candidates allow and Fixed what the
	// index, passthrough and rule-fixed tensors alone take, in bits/weight.
	Smallest, Fixed float64
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s is out of reach: the smallest plan the candidates allow is %.3f bits/weight "+
		"(the archive index, passthrough and rule-fixed tensors alone take %.3f)", e.Target, e.Smallest, e.Fixed)
}

// Hint says what to change.
func (e *UnreachableError) Hint() string {
	return "lower the target ratio (raise the bits per weight), add larger-block candidates, or pass more tensors through"
}
