package presets

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
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
	// Weigh, when set, gives a tensor's weight in a target allocation's
	// objective (see Objectives): the allocation minimizes
	// Σ weight_t·‖w_t − ŵ_t‖². It gets the tensor and its ‖w‖² and is
	// called for every tensor the allocation decides and every duplicate of
	// one (whose weight joins its kept tensor's). nil: weight 1 (objective
	// "weights").
	Weigh func(t checkpoint.TensorInfo, norm2 float64) float64
	// Objective names Weigh's objective in the plans' rules ("" with
	// Weigh: "auto").
	Objective string
	// Search, required with max_kl, gets the measured allocation and
	// returns the budget (payload bits of the tensors it decides) to plan
	// with: compress evaluates candidate plans (Allocation.Choose) and
	// picks the smallest whose measured KL is within max_kl.
	Search func(ctx context.Context, a *Allocation) (float64, error)
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
	// tensor is stored once, with its original, unless a layer_specific
	// rule decides it otherwise than its original (then it is stored on
	// its own, with a warning). A stored-once group is one unit: the
	// duplicate takes no bits (its weights still count in a file-scope
	// bits-per-weight target, as the decompressed model has them; a
	// coded-scope target counts only the weights coded), gets its
	// original's plan, and in an allocation its objective weight joins its
	// original's (Weigh).
	DuplicateOf []string
}

// global is the settings that apply to every tensor no rule claims, after
// folding preset < config file < flags.
type global struct {
	stack      []encoder.Params
	stackFrom  string
	target     float64 // bits per weight (see scope); 0: none
	targetFrom string
	scope      string  // ScopeFile or ScopeCoded
	maxKL      float64 // 0: none (target and maxKL are never both set)
	objective  string  // "" (auto) or one of Objectives
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
		if c.CompressionLevel != 0 && (c.targetBPW() != 0 || c.MaxKL != 0) {
			return g, fmt.Errorf("%s: compression_level and a target (size or max_kl) both set: a level fixes the size, a target chooses it; set one", s.label)
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
			g.stack, g.target, g.maxKL, g.adaptive = st, 0, 0, nil
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
			g.target, g.maxKL = t, 0
			g.targetFrom = fmt.Sprintf("%s: target %.4g bits/weight", label, t)
		}
		if c.MaxKL != 0 {
			label := s.label
			if label == flagsLabel {
				label = origin("max_kl")
			}
			g.target, g.maxKL = 0, c.MaxKL
			g.targetFrom = fmt.Sprintf("%s: max KL %.4g", label, c.MaxKL)
		}
		if c.TargetScope != "" {
			g.scope = c.TargetScope
		}
		if c.Objective != "" {
			g.objective = c.Objective
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
	if g.scope == "" {
		g.scope = ScopeFile
	}
	if g.objective == "auto" {
		g.objective = ""
	}
	if preset != "" && g.stackFrom == "default" && g.target == 0 && g.maxKL == 0 {
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
//  0. A duplicate (Options.DuplicateOf) that no rule decides otherwise
//     than its original takes its original's plan and costs no bits.
//  1. A dtype that is not float, rank < 2, or fewer than min_elements
//     weights: passthrough ("passthrough: <reason>").
//  2. The winning layer_specific rule (last match): passthrough: true stores
//     it as-is; otherwise its keys refine the global stack (a rule level
//     replaces the stack, codec keys override fields, layers resizes it).
//     Such tensors keep their settings in every mode; in target mode their
//     bits are counted against the budget as fixed.
//  3. The global settings: the fixed stack; or, with adaptive and no
//     target, the variance heuristic; or, with a target or max_kl, the
//     allocation (adaptive.method, default measured) under the objective
//     (Options.Weigh).
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
	matched := make([]int, len(g.rules))
	won := make([]int, len(g.rules))
	inert := make([]int, len(g.rules))       // tensors the rule wins that are stored exactly whatever it says
	inertWhy := make([]string, len(g.rules)) // the first one's reason
	var open []int                           // tensors the global settings decide
	var fixedBits, totalElems, fixedCodedBits, codedElems int64
	keep, warnings, err := storedOnce(infos, opt.DuplicateOf, g.rules)
	if err != nil {
		return nil, nil, err
	}
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
		if keep[i] >= 0 {
			p.DuplicateOf = infos[keep[i]].Name
			p.Rule = fmt.Sprintf("duplicate of %q", p.DuplicateOf)
			plans[i] = p // mirrors its original, below
			if ri >= 0 {
				won[ri]++
			}
			continue
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
			codedElems += n
		}
		if p.Passthrough {
			p.Bits = rawBits(t)
		} else if p.Layers != nil {
			p.Bits = StackBits(p.Layers, n)
			fixedCodedBits += p.Bits
			codedElems += n
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
	case g.target > 0 || g.maxKL > 0:
		a, err := measure(ctx, &g, src, infos, plans, open, keep, opt)
		if err != nil {
			return nil, nil, err
		}
		// The rule is known before the choice: the index estimate below
		// counts it as written.
		for _, t := range a.Tensors {
			plans[t.Index].Rule = a.rule
		}
		// Budgets are computed with float64(…) around the products: the
		// same bits on every architecture (no fused multiply-subtract).
		var budget float64
		switch {
		case g.maxKL > 0:
			if opt.Search == nil {
				return nil, nil, fmt.Errorf("%s: max_kl needs a search over evaluated plans (seedlm compress does it)", g.targetFrom)
			}
			if len(open) > 0 {
				if budget, err = opt.Search(ctx, a); err != nil {
					return nil, nil, err
				}
			}
		case g.scope == ScopeCoded:
			// Only the coded tensors' payload counts: passthrough tensors
			// and the archive's header and index are outside the target.
			budget = float64(g.target*float64(codedElems)) - float64(fixedCodedBits)
		default:
			// The archive's header and index are part of the size the
			// user asked for: on small models they are a sizable share.
			var overhead int64
			if opt.OverheadBytes != nil {
				overhead = opt.OverheadBytes(infos, plans)
			}
			budget = float64(g.target*float64(totalElems)) - float64(fixedBits) - float64(8*overhead)
		}
		if err := a.apply(budget, plans, &warnings, float64(totalElems), float64(codedElems)); err != nil {
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
	for i := range plans {
		if keep[i] >= 0 {
			k := &plans[keep[i]]
			p := &plans[i]
			p.Passthrough = k.Passthrough
			p.Layers = append([]encoder.Params(nil), k.Layers...)
			p.Bits = 0 // stored once, with its original
		}
	}
	return plans, warnings, nil
}

// storedOnce maps each tensor to the earlier tensor it is stored with
// (Options.DuplicateOf), or -1: a duplicate must name an earlier tensor
// that is not itself stored as a duplicate. One whose winning
// layer_specific rule is not its original's is stored on its own (the user
// asked for other settings), with a warning; the others must have their
// original's dtype and shape.
func storedOnce(infos []checkpoint.TensorInfo, dup []string, rules []Rule) ([]int, []string, error) {
	if dup != nil && len(dup) != len(infos) {
		return nil, nil, fmt.Errorf("duplicates given for %d tensors, the source has %d (internal error)", len(dup), len(infos))
	}
	keep := make([]int, len(infos))
	pos := make(map[string]int, len(infos))
	var warnings []string
	for i, t := range infos {
		keep[i] = -1
		if dup != nil && dup[i] != "" {
			o := dup[i]
			j, ok := pos[o]
			if !ok || keep[j] >= 0 {
				return nil, nil, fmt.Errorf("tensor %q: duplicate of %q, which is not an earlier original tensor", t.Name, o)
			}
			switch ri := lastMatch(rules, t.Name); {
			case ri != lastMatch(rules, o):
				why := "no rule"
				if ri >= 0 {
					why = rules[ri].Name()
				}
				warnings = append(warnings, fmt.Sprintf("tensor %q has the same bytes as %q, but %s decides it and not %q's: it is stored on its own, not once for both",
					t.Name, o, why, o))
			case infos[j].DType != t.DType || !slices.Equal(infos[j].Shape, t.Shape):
				return nil, nil, fmt.Errorf("tensor %q (%s %v): duplicate of %q, which is %s %v", t.Name, t.DType, t.Shape, o, infos[j].DType, infos[j].Shape)
			default:
				keep[i] = j
			}
		}
		pos[t.Name] = i
	}
	return keep, warnings, nil
}

// candidateStacks turns the adaptive candidates into full stacks: unset
// fields come from base's first layer; the stack has len(base) layers if
// layers were asked for, else one. Without explicit candidates the Ladder
// is used, restricted near the target (within ×3 either side, at least
// three entries) and, for targets above 3.5 bits/weight, extended with
// enhancement stacks on the paper's 4-bit base.
//
// wide (max_kl, whose size is not known in advance) takes every ladder
// entry, the enhancement stacks and HighRate.
func candidateStacks(a *Adaptive, base []encoder.Params, target float64, wide bool) [][]encoder.Params {
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
	if target > 3.5 || wide {
		ladder = append(ladder, HighRate...)
		for _, p := range Ladder {
			ladder = append(ladder, []encoder.Params{encoder.Paper4Bit, p})
		}
	}
	if wide {
		for _, st := range ladder {
			add(st)
		}
		return out
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
	for _, st := range candidateStacks(g.adaptive, g.stack, g.target, g.maxKL > 0) {
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

// secondMoment is the mean square of n weights whose SumSquares is n2.
func secondMoment(n2 float64, n int) float64 {
	return n2 / float64(max(1, n))
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
		sig[k] = secondMoment(SumSquares(w), len(w))
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

// Allocation is a target allocation's measurements: every tensor it
// decides, with each candidate stack's exact bits and estimated squared
// error, and its weight in the objective. Choose solves it at any budget;
// compress --max-kl searches budgets with it (Options.Search).
type Allocation struct {
	// Stacks are the candidate layer stacks, the same for every tensor.
	Stacks [][]encoder.Params
	// Tensors are the tensors the allocation decides, in source order.
	Tensors []AllocTensor
	// Objective names the weights ("weights" when Options.Weigh is nil).
	Objective string
	// Fixed are the coded tensors a rule decides (outside the choice):
	// a search that evaluates plans must code them as the run will.
	Fixed []FixedTensor

	g       *global
	method  string
	rule    string     // the allocated tensors' TensorPlan.Rule
	weighed [][]Option // Options with SqErr × Weight: what Allocate minimizes
	elems   []int64
	sig     []float64
}

// AllocTensor is one tensor an Allocation decides.
type AllocTensor struct {
	Index    int // position in the source's tensor list
	Name     string
	Elements int64
	Norm2    float64 // ‖w‖², summed in float64 in index order
	// Weight multiplies the tensor's squared error in the objective; for a
	// tensor others duplicate, the sum over its group.
	Weight float64
	// Copies are the tensors stored once with this one (its duplicates):
	// they decode to what it decodes to.
	Copies []string
	// Options has, per stack, its exact payload bits and estimated
	// (unweighted) squared error.
	Options []Option
}

// FixedTensor is a coded tensor whose layers a rule fixed.
type FixedTensor struct {
	Index  int // position in the source's tensor list
	Name   string
	Layers []encoder.Params
	// Copies are the tensors stored once with this one.
	Copies []string
}

// MinBits and MaxBits are the payload bits of the cheapest and the most
// expensive plan the candidates allow.
func (a *Allocation) MinBits() float64 {
	return a.sumBits(func(o []Option) int { return lowerHull(o)[0] })
}

// MaxBits: see MinBits.
func (a *Allocation) MaxBits() float64 {
	return a.sumBits(func(o []Option) int {
		h := lowerHull(o)
		return h[len(h)-1]
	})
}

func (a *Allocation) sumBits(pick func([]Option) int) float64 {
	var b float64
	for _, t := range a.Tensors {
		b += t.Options[pick(t.Options)].Bits
	}
	return b
}

// Choose is the allocation's choice (a stack index per tensor) within
// budget payload bits, minimizing Σ Weight·SqErr (Allocate; the variance
// heuristic with adaptive.method variance). ok is false when even the
// cheapest plan exceeds the budget.
func (a *Allocation) Choose(budget float64) (choice []int, ok bool) {
	if a.method == "variance" {
		return AllocateByVariance(a.weighed, a.elems, a.sig, budget)
	}
	return Allocate(a.weighed, budget)
}

// Bits is the payload bits of a choice.
func (a *Allocation) Bits(choice []int) float64 {
	var b float64
	for k, j := range choice {
		b += a.Tensors[k].Options[j].Bits
	}
	return b
}

// measure is target mode's first half: measure every open tensor with every
// candidate and weigh it by the objective.
func measure(ctx context.Context, g *global, src Source, infos []checkpoint.TensorInfo, plans []TensorPlan, open []int, keep []int, opt Options) (*Allocation, error) {
	stacks, err := g.openStacks()
	if err != nil {
		return nil, err
	}
	a := &Allocation{Stacks: stacks, g: g, method: methodName(g.adaptive), Objective: "weights"}
	if opt.Weigh != nil {
		a.Objective = cmp.Or(opt.Objective, g.objective, "auto")
	}
	smp := Sampler{}
	if g.adaptive != nil {
		smp.Weights = g.adaptive.SampleWeights
	}
	a.Tensors = make([]AllocTensor, len(open))
	a.elems = make([]int64, len(open))
	a.sig = make([]float64, len(open))
	err = readOpen(ctx, src, infos, open, opt, func(k, i int, w []float32) error {
		t := AllocTensor{Index: i, Name: infos[i].Name, Elements: int64(len(w)), Norm2: SumSquares(w), Weight: 1}
		a.elems[k] = t.Elements
		a.sig[k] = secondMoment(t.Norm2, len(w))
		if a.method == "variance" {
			if err := encoder.CheckFinite(infos[i].Name, w); err != nil {
				return err
			}
			for _, st := range stacks {
				t.Options = append(t.Options, Option{Bits: float64(StackBits(st, t.Elements))})
			}
		} else {
			ms, err := MeasureTensor(ctx, infos[i].Name, w, stacks, smp, opt.Encoder)
			if err != nil {
				return err
			}
			for _, m := range ms {
				t.Options = append(t.Options, Option{Bits: float64(m.Bits), SqErr: m.SqErr})
			}
		}
		a.Tensors[k] = t
		return nil
	})
	if err != nil {
		return nil, err
	}
	weigh := opt.Weigh
	if weigh == nil {
		weigh = func(checkpoint.TensorInfo, float64) float64 { return 1 }
	}
	at := make(map[int]int, len(open)) // source index → allocation index
	for k, t := range a.Tensors {
		at[t.Index] = k
		a.Tensors[k].Weight = weigh(infos[t.Index], t.Norm2)
	}
	fixed := map[int]int{} // source index → a.Fixed index
	for i, p := range plans {
		if _, open := at[i]; !open && p.Layers != nil && !p.Passthrough && keep[i] < 0 {
			fixed[i] = len(a.Fixed)
			a.Fixed = append(a.Fixed, FixedTensor{Index: i, Name: infos[i].Name, Layers: p.Layers})
		}
	}
	// A duplicate's error is its kept tensor's: its weight joins the kept
	// tensor's (same bytes, so the same ‖w‖²).
	for i, kept := range keep {
		if k, ok := at[kept]; ok && kept >= 0 {
			a.Tensors[k].Weight += weigh(infos[i], a.Tensors[k].Norm2)
			a.Tensors[k].Copies = append(a.Tensors[k].Copies, infos[i].Name)
		} else if f, ok := fixed[kept]; ok && kept >= 0 {
			a.Fixed[f].Copies = append(a.Fixed[f].Copies, infos[i].Name)
		}
	}
	obj := ""
	if a.Objective != "weights" {
		obj = ", objective " + a.Objective
	}
	a.rule = fmt.Sprintf("%s, %s allocation%s%s", g.targetFrom, a.method, obj, g.ruleSuffix())
	a.weighed = make([][]Option, len(a.Tensors))
	for k, t := range a.Tensors {
		if !(t.Weight >= 0) || math.IsInf(t.Weight, 0) {
			return nil, fmt.Errorf("tensor %q: objective weight %g", t.Name, t.Weight)
		}
		for _, o := range t.Options {
			a.weighed[k] = append(a.weighed[k], Option{Bits: o.Bits, SqErr: o.SqErr * t.Weight})
		}
	}
	if a.method != "variance" {
		if err := checkOptions(a.weighed); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// SumSquares is ‖w‖² summed in float64 in index order, each square rounded
// before it is added (the explicit conversion forbids a fused multiply-add,
// so every platform gets the same bits).
func SumSquares(w []float32) float64 {
	var s float64
	for _, x := range w {
		s += float64(float64(x) * float64(x))
	}
	return s
}

// apply is target mode's second half: choose within budget bits and write
// the choice into plans. all and coded are the weights the target's
// bits-per-weight figures are over (the whole model, the coded tensors).
func (a *Allocation) apply(budget float64, plans []TensorPlan, warnings *[]string, all, coded float64) error {
	if len(a.Tensors) == 0 {
		return nil
	}
	g := a.g
	choice, ok := a.Choose(budget)
	if !ok {
		per := all
		if g.scope == ScopeCoded {
			per = coded
		}
		over := float64(g.target*per) - budget // rounded: no fused multiply-subtract
		fixed := over / per
		smallest := (a.MinBits() + over) / per
		if g.maxKL > 0 {
			return fmt.Errorf("%s: the search chose a budget of %.0f bits, below the smallest plan's %.0f (internal error)", g.targetFrom, budget, a.MinBits())
		}
		if !strings.HasPrefix(g.targetFrom, "preset ") {
			return &UnreachableError{Target: g.targetFrom, Smallest: smallest, Fixed: fixed, Scope: g.scope}
		}
		// A preset is a best effort, not a contract: on a model too small
		// for its ratio, take the smallest plan and say so.
		choice = make([]int, len(a.Tensors))
		for k, t := range a.Tensors {
			choice[k] = lowerHull(t.Options)[0]
		}
		*warnings = append(*warnings, fmt.Sprintf("%s is out of reach on this model: the archive index, passthrough and rule-fixed tensors alone take %.3f bits/weight; using the smallest plan the candidates allow (%.3f bits/weight)",
			g.targetFrom, fixed, smallest))
	}
	for k, t := range a.Tensors {
		i := t.Index
		st := a.Stacks[choice[k]]
		plans[i].Layers = st
		plans[i].Bits = StackBits(st, plans[i].Elements)
		plans[i].Norm2 = t.Norm2
		plans[i].Weight = t.Weight
		if a.method != "variance" {
			plans[i].EstSqErr = t.Options[choice[k]].SqErr
			plans[i].Measured = true
		}
		plans[i].Rule = a.rule
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
	// index, passthrough and rule-fixed tensors alone take, in bits/weight
	// (with Scope ScopeCoded: the rule-fixed coded tensors, per coded
	// weight).
	Smallest, Fixed float64
	Scope           string
}

func (e *UnreachableError) Error() string {
	if e.Scope == ScopeCoded {
		return fmt.Sprintf("%s is out of reach: the smallest plan the candidates allow is %.3f bits per coded weight "+
			"(rule-fixed coded tensors alone take %.3f)", e.Target, e.Smallest, e.Fixed)
	}
	return fmt.Sprintf("%s is out of reach: the smallest plan the candidates allow is %.3f bits/weight "+
		"(the archive index, passthrough and rule-fixed tensors alone take %.3f)", e.Target, e.Smallest, e.Fixed)
}

// Hint says what to change.
func (e *UnreachableError) Hint() string {
	return "lower the target ratio (raise the bits per weight), add larger-block candidates, or pass more tensors through"
}

// Intent is what the settings ask of a plan, known before any tensor is
// read: whether it allocates (and so measures), under which objective, and
// what the measuring pass will cost.
type Intent struct {
	// Allocates: a size target or max_kl; tensors are measured and
	// allocated under Objective.
	Allocates bool
	// Objective is "" (auto) or an entry of Objectives; MaxKL 0 when unset.
	Objective string
	MaxKL     float64
	// OpenWeights are the weights the allocation decides, and
	// MeasuringCost the measuring pass's estimated encode work, in
	// weight-equivalents of the paper's 4-bit setting (LayerCost).
	OpenWeights   int64
	MeasuringCost float64
	// EncodeCost estimates the encode work of the plan itself (every
	// codable tensor with the global stack; the allocation's choice is
	// not known yet), in the same unit.
	EncodeCost float64
}

// IntentOf resolves the settings for a source's tensors (duplicates as in
// Options.DuplicateOf) without reading any.
func IntentOf(file, flags Config, infos []checkpoint.TensorInfo, dup []string) (Intent, error) {
	g, err := resolve(file, flags, nil)
	if err != nil {
		return Intent{}, err
	}
	keep, _, err := storedOnce(infos, dup, g.rules)
	if err != nil {
		return Intent{}, err
	}
	in := Intent{Allocates: g.target > 0 || g.maxKL > 0, Objective: g.objective, MaxKL: g.maxKL}
	var stackCost float64
	for _, p := range g.stack {
		stackCost += LayerCost(p)
	}
	for i, t := range infos {
		if keep[i] < 0 && PassthroughReason(t, g.minElem) == "" {
			in.EncodeCost += float64(float64(t.NumElements()) * stackCost)
		}
	}
	if !in.Allocates {
		return in, nil
	}
	stacks, err := g.openStacks()
	if err != nil {
		return in, err
	}
	var perWeight float64 // cost of one sampled weight through every candidate
	for _, st := range stacks {
		for _, p := range st {
			perWeight += LayerCost(p)
		}
	}
	want := int64(DefaultSampleWeights)
	if g.adaptive != nil && g.adaptive.SampleWeights > 0 {
		want = int64(g.adaptive.SampleWeights)
	}
	for i, t := range infos {
		if keep[i] >= 0 || PassthroughReason(t, g.minElem) != "" || lastMatch(g.rules, t.Name) >= 0 {
			continue
		}
		n := t.NumElements()
		in.OpenWeights += n
		sampled := n
		if n > 2*want {
			sampled = want
		}
		in.MeasuringCost += float64(float64(sampled) * perWeight)
	}
	return in, nil
}
