package quality

import (
	"context"
	"fmt"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/eval"
	"github.com/seedlm/seedlm/internal/model"
)

// Evaluator compares candidate models with the original on one sampled
// text: the original is loaded once (candidates share the tensors they do
// not replace) and its log-probabilities are kept.
type Evaluator struct {
	Model *Model
	Text  Text
	// Description is the text's, as archive.Quality records it.
	Description string
	base        *model.Model
	ref         *eval.Reference
}

// NewEvaluator loads the original from w, samples t from it and scores it.
func NewEvaluator(ctx context.Context, m *Model, w model.Weights, t Text, workers int) (*Evaluator, error) {
	base, t, txt, ref, err := reference(ctx, m, w, t, workers, "evaluation text", "evaluation text")
	if err != nil {
		return nil, err
	}
	return &Evaluator{Model: m, Text: t, Description: txt.Source, base: base, ref: ref}, nil
}

// reference loads the original from w with workers goroutines, samples t
// (capped to its context) from it and scores it: what the evaluation and
// the sensitivity probes both start from. text names the text when the
// context leaves no room for it; stage prefixes sampling and scoring errors.
func reference(ctx context.Context, m *Model, w model.Weights, t Text, workers int, text, stage string) (*model.Model, Text, *eval.Text, *eval.Reference, error) {
	base, err := model.Load(ctx, m.Config, w)
	if err != nil {
		return nil, t, nil, nil, err
	}
	base.Workers = workers
	t = t.Capped(m.Config)
	if t.Tokens <= 0 {
		return nil, t, nil, nil, fmt.Errorf("%s: the context leaves no room for %s", m.ConfigPath, text)
	}
	txt, err := eval.Sample(ctx, base, eval.SampleOptions{Samples: t.Samples, Tokens: t.Tokens, Seed: t.Seed})
	if err != nil {
		return nil, t, nil, nil, fmt.Errorf("%s: %w", stage, err)
	}
	ref, err := eval.NewReference(ctx, base, txt, nil)
	if err != nil {
		return nil, t, nil, nil, fmt.Errorf("%s: %w", stage, err)
	}
	return base, t, txt, ref, nil
}

// Candidate is the original with the decoded tensors in place of its own
// (tensors the forward pass does not use are ignored). Decoded weights
// must already be rounded to their source dtype (model.NewTensorRounded),
// as decompress writes them.
func (e *Evaluator) Candidate(decoded map[string]*model.Tensor) (*model.Model, error) {
	c := e.base
	for _, name := range e.base.MatrixNames() {
		t, ok := decoded[name]
		if !ok {
			continue
		}
		var err error
		if c, err = c.WithMatrix(name, t); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Compare scores a candidate on the text.
func (e *Evaluator) Compare(ctx context.Context, cand *model.Model) (*eval.Result, error) {
	return e.ref.Compare(ctx, cand, nil)
}

// Figures is a result as an archive records it: every figure rounded.
func Figures(r *eval.Result, text string) *archive.Quality {
	f := func(x float64) *float64 {
		v := Round(x)
		return &v
	}
	return &archive.Quality{Text: text, Tokens: r.Tokens, KLMean: f(r.KLMean), KLP95: f(r.KLP95), KLMax: f(r.KLMax),
		Top1: f(r.Top1), PPLOriginal: f(r.PPLOriginal), PPLCandidate: f(r.PPLCandidate)}
}

// Pending is the quality record a plan promises for t: its description
// and token count, no figures yet.
func Pending(m *Model, t Text) *archive.Quality {
	t = t.Capped(m.Config)
	return &archive.Quality{Text: t.Describe(m.Config), Tokens: t.Positions()}
}
