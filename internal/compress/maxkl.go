package compress

import (
	"context"
	"fmt"
	"strings"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/quality"
)

// Search is max_kl's budget search, as the plan records it.
type Search struct {
	MaxKL float64 `json:"max_kl"`
	// KL is the measured mean KL(original ‖ decoded) of the plan chosen
	// (rounded to 4 significant digits, as compared with MaxKL) on Text.
	KL   float64 `json:"kl"`
	Text string  `json:"text"`
	// BitsPerWeight is the chosen plan's payload over the weights the
	// allocation decided; Evaluations the candidate plans measured.
	BitsPerWeight float64 `json:"bits_per_weight"`
	Evaluations   int     `json:"evaluations"`
}

// QualityError is a max_kl no candidate plan reaches: even the largest
// the candidates allow measures a higher KL. Nothing is written.
type QualityError struct {
	MaxKL float64
	// Best is the KL of the largest plan, at BitsPerWeight over the
	// allocated tensors.
	Best, BitsPerWeight float64
	Text                string
}

func (e *QualityError) Error() string {
	return fmt.Sprintf("max_kl %g is out of reach: the largest plan the candidates allow (%.3f bits/weight in the allocated tensors) measures KL(original ‖ decoded) %.4g on %s",
		e.MaxKL, e.BitsPerWeight, e.Best, e.Text)
}

// Hint says what to change.
func (e *QualityError) Hint() string {
	return fmt.Sprintf("raise max_kl to at least %.4g, or add larger candidates (adaptive.candidates, progressive layers)", e.Best)
}

// searchTolerance ends the bisection: budgets closer than this many bits
// per allocated weight are not told apart.
const searchTolerance = 0.005

// searcher finds the smallest budget whose plan measures KL ≤ max.
type searcher struct {
	src     checkpoint.Source
	ev      *quality.Evaluator
	max     float64
	workers int
	stage   func(string)
	infos   map[string]checkpoint.TensorInfo
	// decoded caches each (tensor, stack) encoding of the plans the
	// search holds on to (the bounds), rounded to the source dtype as
	// decompress writes it; nil marks a tensor the run stores exactly.
	decoded map[[2]int]*model.Tensor
	fixed   map[string]*model.Tensor // the rule-fixed tensors' decodings
	evals   map[string]float64       // KL by choice
	result  *Search
}

func newSearcher(src checkpoint.Source, ev *quality.Evaluator, maxKL float64, workers int, stage func(string)) *searcher {
	s := &searcher{src: src, ev: ev, max: maxKL, workers: workers, stage: stage, infos: map[string]checkpoint.TensorInfo{},
		decoded: map[[2]int]*model.Tensor{}, fixed: map[string]*model.Tensor{}, evals: map[string]float64{}}
	for _, t := range src.Tensors() {
		s.infos[t.Name] = t
	}
	return s
}

func choiceKey(c []int) string {
	var b strings.Builder
	for _, j := range c {
		fmt.Fprintf(&b, "%d,", j)
	}
	return b.String()
}

// kl measures the plan a makes at budget bits: encodes every allocated
// tensor with its chosen stack and every tensor a rule fixed with its
// rule's (as the run will, a tensor the run would store exactly stays
// exact; its duplicates take its decoding) and
// compares the decoded model with the original. The result is rounded (quality.Round).
func (s *searcher) kl(ctx context.Context, a *presets.Allocation, choice []int) (float64, error) {
	key := choiceKey(choice)
	if v, ok := s.evals[key]; ok {
		return v, nil
	}
	if s.stage != nil {
		s.stage(fmt.Sprintf("max_kl search: plan %d", len(s.evals)+1))
	}
	dec := map[string]*model.Tensor{}
	// put adds a tensor's decoding (nil: stored exactly) under its name
	// and its duplicates', in the search as in the archive.
	put := func(name string, copies []string, d *model.Tensor) {
		if d == nil {
			return
		}
		dec[name] = d
		for _, c := range copies {
			dec[c] = d.Renamed(c) // same dtype and shape (findDuplicates)
		}
	}
	// Tensors a rule fixed are coded as the run will code them, once.
	for _, f := range a.Fixed {
		d, ok := s.fixed[f.Name]
		if !ok {
			var err error
			if d, err = s.code(ctx, f.Name, f.Layers); err != nil {
				return 0, err
			}
			s.fixed[f.Name] = d
		}
		put(f.Name, f.Copies, d)
	}
	for k, t := range a.Tensors {
		ck := [2]int{k, choice[k]}
		d, ok := s.decoded[ck]
		if !ok {
			var err error
			if d, err = s.code(ctx, t.Name, a.Stacks[choice[k]]); err != nil {
				return 0, err
			}
			s.decoded[ck] = d
		}
		put(t.Name, t.Copies, d)
	}
	cand, err := s.ev.Candidate(dec)
	if err != nil {
		return 0, err
	}
	r, err := s.ev.Compare(ctx, cand)
	if err != nil {
		return 0, fmt.Errorf("evaluating a candidate plan: %w", err)
	}
	v := quality.Round(r.KLMean)
	s.evals[key] = v
	return v, nil
}

// code encodes a tensor with st and decodes it, rounded to its source
// dtype as decompress writes it; nil when the run would store it exactly
// (relative error at or above MaxRelErr).
func (s *searcher) code(ctx context.Context, name string, st []encoder.Params) (*model.Tensor, error) {
	info := s.infos[name]
	w, err := s.src.ReadFloat32(name)
	if err != nil {
		return nil, err
	}
	res, err := encoder.Encode(ctx, name, w, st, encoder.Options{Workers: s.workers})
	if err != nil {
		return nil, err
	}
	if _, exact := storedExactly(res); exact {
		return nil, nil
	}
	v, err := encoder.DecodeLayers(res.Layers, len(w))
	if err != nil {
		return nil, err
	}
	return model.NewTensorRounded(name, info.DType, info.Shape, v), nil
}

// keep drops cached encodings no plan in keepers uses.
func (s *searcher) keep(keepers ...[]int) {
	used := map[[2]int]bool{}
	for _, c := range keepers {
		for k, j := range c {
			used[[2]int{k, j}] = true
		}
	}
	for ck := range s.decoded {
		if !used[ck] {
			delete(s.decoded, ck)
		}
	}
}

// search is presets.Options.Search: bisection on the budget between the
// smallest and the largest plan the candidates allow, keeping the
// invariant "the upper bound's plan measures KL ≤ max_kl"; it returns the
// upper bound once the two are within searchTolerance bits per allocated
// weight. KL is not strictly monotone in the budget, so this is the
// smallest budget the bisection finds, not a global minimum; the run
// checks the archive with a final evaluation. Deterministic: the budgets
// tried, the encodings and the measured KLs do not depend on the worker
// count or the machine, and KL is compared rounded to 4 digits.
func (s *searcher) search(ctx context.Context, a *presets.Allocation) (float64, error) {
	var n int64
	for _, t := range a.Tensors {
		n += t.Elements
	}
	choose := func(b float64) []int {
		c, _ := a.Choose(b)
		return c
	}
	lo, hi := a.MinBits(), a.MaxBits()
	cHi := choose(hi)
	kHi, err := s.kl(ctx, a, cHi)
	if err != nil {
		return 0, err
	}
	if kHi > s.max {
		return 0, &QualityError{MaxKL: s.max, Best: kHi, BitsPerWeight: a.Bits(cHi) / float64(n), Text: s.ev.Description}
	}
	cLo := choose(lo)
	kLo, err := s.kl(ctx, a, cLo)
	if err != nil {
		return 0, err
	}
	if kLo <= s.max {
		hi, cHi, kHi = lo, cLo, kLo
	} else {
		for (hi-lo)/float64(n) > searchTolerance {
			mid := lo + float64((hi-lo)/2) // rounded: Go would fuse lo + (hi−lo)·0.5
			c := choose(mid)
			k, err := s.kl(ctx, a, c)
			if err != nil {
				return 0, err
			}
			if k <= s.max {
				hi, cHi, kHi = mid, c, k
			} else {
				lo, cLo = mid, c
			}
			s.keep(cLo, cHi)
		}
	}
	s.result = &Search{MaxKL: s.max, KL: kHi, Text: s.ev.Description, BitsPerWeight: a.Bits(cHi) / float64(n), Evaluations: len(s.evals)}
	s.decoded, s.fixed = nil, nil
	return hi, nil
}
