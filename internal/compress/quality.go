package compress

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/quality"
)

// ModelRef identifies the model config a plan used: its architecture and
// the SHA-256 of the config file's bytes (a run that evaluates checks it).
type ModelRef struct {
	Arch         string `json:"arch"`
	ConfigSHA256 string `json:"config_sha256"`
}

// EvalShare is the automatic evaluation rule: compress evaluates a
// supported model when the evaluation's estimated cost is at most this
// share of the compression's (and AutoMemory holds both models).
const EvalShare = 0.10

// AutoMemory bounds what the automatic choices load: the output objective
// (the model, for its sensitivity probes) and the evaluation (the original
// and the decoded model). Larger models get the relative objective and no
// evaluation unless asked for explicitly. A fixed bound, not the machine's
// free memory, so the plan is the same on every machine.
const AutoMemory = 8 << 30

// qualityPlan is what MakePlan decides about output quality before it
// allocates.
type qualityPlan struct {
	intent    presets.Intent
	model     *quality.Model
	ref       *ModelRef
	objective *quality.Objective
	record    *quality.Sensitivities // output objective's, for the plan
	pending   *archive.Quality
	note      string
	warning   string
	evaluator *quality.Evaluator // max_kl's (kept for the run)
}

// configSHA256 is the hex SHA-256 of m's config file, which a plan records
// (ModelRef) and a run checks.
func configSHA256(m *quality.Model) (string, error) {
	b, err := os.ReadFile(m.ConfigPath)
	if err != nil {
		return "", err
	}
	return sha256Hex(b), nil
}

// planQuality resolves the model, the objective (measuring sensitivities
// for the output objective) and whether the run evaluates.
func planQuality(ctx context.Context, src checkpoint.Source, s Settings, dups []string, opt PlanOptions) (*qualityPlan, error) {
	in, err := presets.IntentOf(s.File, s.Flags, src.Tensors(), dups)
	if err != nil {
		return nil, &SettingsError{Err: err}
	}
	q := &qualityPlan{intent: in}
	if !in.Allocates && in.Objective != "" {
		q.warning = fmt.Sprintf("objective %s has no effect: nothing is allocated (it applies to a size target, a target preset or max_kl)", in.Objective)
	}
	wantOutput := in.Allocates && (in.Objective == "" || in.Objective == quality.Output)
	needModel := wantOutput || in.MaxKL > 0 || s.Eval == nil || *s.Eval
	if needModel {
		m, err := quality.FindModel(src.Path(), s.ModelConfig, src.Tensors())
		var ue *quality.UnsupportedError
		switch {
		case errors.As(err, &ue):
			// Required by an explicit choice: a settings problem.
			what := ""
			switch {
			case in.MaxKL > 0:
				what = "max_kl"
			case in.Allocates && in.Objective == quality.Output:
				what = "objective output"
			case s.Eval != nil && *s.Eval:
				what = "eval true"
			}
			if what != "" {
				return nil, &SettingsError{Err: fmt.Errorf("%s needs a model seedlm's forward pass runs: %w", what, err)}
			}
		case err != nil:
			return nil, err
		default:
			q.model = m
			sum, err := configSHA256(m)
			if err != nil {
				return nil, err
			}
			q.ref = &ModelRef{Arch: m.Config.Arch, ConfigSHA256: sum}
		}
	}
	m := q.model
	if in.Allocates {
		name := in.Objective
		if name == "" {
			name = quality.Relative
			if m != nil && m.Weights()+quality.ProbeMemory(m) <= AutoMemory {
				name = quality.Output
			}
		}
		q.objective = &quality.Objective{Name: name}
		if name == quality.Output {
			stage(opt, "sensitivity probes")
			sens, err := quality.Measure(ctx, m, model.FromSource(src), opt.Workers, nil)
			if err != nil {
				return nil, err
			}
			q.objective.Sens, q.record = sens, sens
		}
	}
	// The evaluation.
	switch {
	case m == nil:
	case in.MaxKL > 0 || (s.Eval != nil && *s.Eval):
		q.pending = quality.Pending(m, quality.EvalText)
	case s.Eval != nil:
	default:
		evalCost := quality.EvalCost(m, quality.EvalText)
		total := in.MeasuringCost + in.EncodeCost
		if q.objective != nil && q.objective.Name == quality.Output {
			total += quality.ProbeCost(m)
		}
		switch mem := 2*m.Weights() + quality.EvalMemory(m, quality.EvalText); {
		case mem > AutoMemory:
			q.note = fmt.Sprintf("not evaluated: the evaluation would hold the original and the decoded model, about %.1f GiB (the automatic rule allows %d GiB); eval true (--eval) forces it, or run seedlm eval", float64(mem)/(1<<30), AutoMemory>>30)
		case evalCost > EvalShare*total:
			q.note = fmt.Sprintf("not evaluated: the evaluation would cost about %.0f %% of this compression (the automatic rule allows %.0f %%); eval true (--eval) forces it, or run seedlm eval", 100*evalCost/total, 100*EvalShare)
		default:
			q.pending = quality.Pending(m, quality.EvalText)
		}
	}
	if in.MaxKL > 0 {
		stage(opt, "max_kl: evaluation text")
		if q.evaluator, err = quality.NewEvaluator(ctx, m, model.FromSource(src), quality.EvalText, opt.Workers); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func stage(opt PlanOptions, what string) {
	if opt.Stage != nil {
		opt.Stage(what)
	}
}

// weigh is the objective's weight function for presets (nil: weights).
func (q *qualityPlan) weigh() func(checkpoint.TensorInfo, float64) float64 {
	if q.objective == nil || q.objective.Name == quality.Weights {
		return nil
	}
	return q.objective.Weigh
}
