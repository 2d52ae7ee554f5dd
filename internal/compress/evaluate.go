package compress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/presets"
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
	sum, err := configSHA256(m)
	if err != nil {
		return nil, err
	}
	if plan.Model == nil || sum != plan.Model.ConfigSHA256 {
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
			e.decoded[t.Name] = d.Renamed(t.Name) // same dtype and shape (findDuplicates)
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

// MergeQuality measures the figures for part archives whose quality
// record is pending (archive.CreateOptions.Quality for archive.Merge): it
// decodes the model's matrices from the parts, as the merged archive will
// hold them, and compares the decoded model with original on the record's
// text. original must be the model the parts were compressed from (its
// tensors are checked against the parts'); configPath its config.json (""
// beside it). Returns nil when the parts have no pending record.
func MergeQuality(ctx context.Context, paths []string, original checkpoint.Source, configPath string, workers int) (*archive.Quality, error) {
	var parts []*archive.Archive
	defer func() {
		for _, a := range parts {
			a.Close()
		}
	}()
	by := map[string]*archive.Archive{}
	var pending *archive.Quality
	for _, p := range paths {
		a, err := archive.Open(p, archive.OpenOptions{})
		if err != nil {
			return nil, err
		}
		parts = append(parts, a)
		if q := a.Index().Header.Quality; q.Pending() {
			pending = q
		}
		for _, t := range a.Index().Tensors {
			by[t.Name] = a
		}
	}
	if pending == nil {
		return nil, nil
	}
	var diffs []string
	for _, t := range original.Tensors() {
		a, ok := by[t.Name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("tensor %q of the original is in no part", t.Name))
			continue
		}
		e, _ := a.Entry(t.Name)
		delete(by, t.Name)
		if e.DType != t.DType || !slices.Equal(e.Shape, t.Shape) {
			diffs = append(diffs, fmt.Sprintf("tensor %q is %s %v in the original, %s %v in the parts", t.Name, t.DType, t.Shape, e.DType, e.Shape))
			continue
		}
		// The same weights: exactly stored tensors byte for byte, coded
		// ones by the ‖w‖² the encoder recorded, a duplicate by having its
		// original's bytes in the original too (the original is checked on
		// its own).
		if o := e.DuplicateOf; o != "" {
			db, err := original.ReadRaw(t.Name)
			if err != nil {
				return nil, err
			}
			ob, err := original.ReadRaw(o)
			if err != nil {
				diffs = append(diffs, fmt.Sprintf("tensor %q is stored as a duplicate of %q, which the original lacks", t.Name, o))
				continue
			}
			if !bytes.Equal(db, ob) {
				diffs = append(diffs, fmt.Sprintf("tensor %q is stored as a duplicate of %q, but their bytes differ in the original", t.Name, o))
			}
			continue
		}
		if e.Passthrough {
			pb, err := a.ReadPassthrough(t.Name)
			if err != nil {
				return nil, err
			}
			ob, err := original.ReadRaw(t.Name)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(pb, ob) {
				diffs = append(diffs, fmt.Sprintf("tensor %q has other bytes in the original than in the parts", t.Name))
			}
			continue
		}
		w, err := original.ReadFloat32(t.Name)
		if err != nil {
			return nil, err
		}
		// compress records ‖w‖² rounded (archive.RoundStat): compare the
		// same rounding, or, for a figure recorded unrounded, within 1e-9.
		if n2 := presets.SumSquares(presets.FlushSubnormals(w)); archive.RoundStat(n2) != archive.RoundStat(e.Norm2) && math.Abs(n2-e.Norm2) > 1e-9*max(n2, e.Norm2) {
			diffs = append(diffs, fmt.Sprintf("tensor %q has other weights in the original (‖w‖² %.6g) than the parts were coded from (%.6g)", t.Name, n2, e.Norm2))
		}
	}
	for name := range by {
		diffs = append(diffs, fmt.Sprintf("the parts hold tensor %q, which the original lacks", name))
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		return nil, &MismatchError{Plan: original.Path(), Diffs: diffs}
	}
	m, err := quality.FindModel(original.Path(), configPath, original.Tensors())
	if err != nil {
		return nil, err
	}
	decoded := map[string]*model.Tensor{}
	for _, t := range m.Used {
		if len(t.Shape) < 2 {
			continue
		}
		for _, a := range parts {
			e, ok := a.Entry(t.Name)
			if !ok || e.Passthrough {
				continue
			}
			v, err := a.DecodeTensor(t.Name, 0)
			if err != nil {
				return nil, err
			}
			decoded[t.Name] = model.NewTensorRounded(t.Name, e.DType, e.Shape, v)
		}
	}
	ev, err := quality.NewEvaluator(ctx, m, model.FromSource(original), quality.EvalText, workersOr(workers))
	if err != nil {
		return nil, err
	}
	if ev.Description != pending.Text {
		return nil, fmt.Errorf("the parts' evaluation is on %q, this model's on %q: is %s the model they were compressed from, with the same config?", pending.Text, ev.Description, original.Path())
	}
	cand, err := ev.Candidate(decoded)
	if err != nil {
		return nil, err
	}
	r, err := ev.Compare(ctx, cand)
	if err != nil {
		return nil, fmt.Errorf("evaluating the merged model: %w", err)
	}
	return quality.Figures(r, ev.Description), nil
}
