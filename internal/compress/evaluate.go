package compress

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/quality"
)

// runEval is a run's evaluation of the archive it writes: the decoded
// weights of the model's matrices are kept as they are written (rounded to
// their source dtype, as decompress writes them), then the decoded model
// is compared with the original before the archive is committed.
type runEval struct {
	src     checkpoint.Source
	plan    *Plan
	m       *quality.Model
	workers int
	used    map[string]bool
	decoded map[string]*model.Tensor
}

// newRunEval finds the plan's model config before any encoding.
func newRunEval(src checkpoint.Source, plan *Plan, opt RunOptions) (*runEval, error) {
	m, err := quality.FindModel(src.Path(), opt.ModelConfig, src.Tensors())
	if err != nil {
		return nil, fmt.Errorf("the plan evaluates the compressed model: %w", err)
	}
	b, err := os.ReadFile(m.ConfigPath)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if plan.Model == nil || hex.EncodeToString(sum[:]) != plan.Model.ConfigSHA256 {
		return nil, &MismatchError{Plan: opt.PlanPath, Diffs: []string{fmt.Sprintf("model config %s is not the one the plan used", m.ConfigPath)}}
	}
	e := &runEval{src: src, plan: plan, m: m, workers: workersOr(opt.Workers), used: map[string]bool{}, decoded: map[string]*model.Tensor{}}
	for _, t := range m.Used {
		if len(t.Shape) >= 2 {
			e.used[t.Name] = true
		}
	}
	return e, nil
}

// keep records a coded tensor's decoded weights if the model uses them.
func (e *runEval) keep(t *TensorPlan, res *encoder.Result) error {
	if e == nil || !e.used[t.Name] {
		return nil
	}
	n := t.info().NumElements()
	v, err := encoder.DecodeLayers(res.Layers, int(n))
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	e.decoded[t.Name] = model.NewTensorRounded(t.Name, t.DType, t.Shape, v)
	return nil
}

// run compares the decoded model with the original. A model whose
// evaluation fails on non-finite logits gets no figures and a warning (the
// archive is still written); other errors fail the run.
func (e *runEval) run(ctx context.Context) (*archive.Quality, string, error) {
	// Duplicates decode to their kept tensor.
	for i := range e.plan.Tensors {
		t := &e.plan.Tensors[i]
		if d, ok := e.decoded[t.DuplicateOf]; ok && t.DuplicateOf != "" && e.used[t.Name] {
			e.decoded[t.Name] = model.NewTensorRounded(t.Name, t.DType, t.Shape, d.Float32())
		}
	}
	ev := e.plan.evaluator
	if ev == nil {
		var err error
		if ev, err = quality.NewEvaluator(ctx, e.m, model.FromSource(e.src), quality.EvalText, e.workers); err != nil {
			return nil, "", fmt.Errorf("evaluating the compressed model: %w", err)
		}
	}
	cand, err := ev.Candidate(e.decoded)
	if err != nil {
		return nil, "", err
	}
	r, err := ev.Compare(ctx, cand)
	var nf *model.NonFiniteError
	if errors.As(err, &nf) {
		return nil, fmt.Sprintf("the compressed model's evaluation failed (%v): it no longer computes finite predictions; the archive records no quality figures", err), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("evaluating the compressed model: %w", err)
	}
	return quality.Figures(r, ev.Description), "", nil
}
