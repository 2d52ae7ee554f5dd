// Package quality is what compress knows about a compressed model's
// output, as opposed to its weights: the objective a target allocation
// minimizes (sensitivities measured with forward-pass probes, or the
// relative-error proxy for models the forward pass does not run), the
// evaluation of a compressed model (KL(original ‖ decoded) and top-1
// agreement on text sampled from the original) and the canonical rounding
// of every such figure a plan or an archive records.
//
// Everything here is reproducible: the forward pass computes the same bits
// on every machine and worker count (package model), and figures are
// rounded to 4 significant digits before anything compares or records
// them, so a difference in the last bits of a sum cannot flip a decision
// (a tie is broken by the allocation's own rule: lower tensor index, then
// the cheaper option).
package quality

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/eval"
	"github.com/seedlm/seedlm/internal/model"
)

// Digits is the number of significant decimal digits of a recorded figure.
const Digits = 4

// Round is the canonical rounding of a recorded or compared figure: the
// nearest float64 to x written with Digits significant digits (strconv's
// correctly rounded conversion, then parsed back). NaN and ±Inf are kept.
func Round(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', Digits, 64), 64)
	return v
}

// Text is a sampled evaluation text: Samples sequences of Tokens tokens
// drawn from the original at temperature 1 from BOS, with Seed.
type Text struct {
	Samples, Tokens int
	Seed            uint64
}

// EvalText is the text compress evaluates a compressed model on: seedlm
// eval's defaults, so `seedlm eval ORIGINAL ARCHIVE` prints the recorded
// figures.
var EvalText = Text{Samples: 16, Tokens: 128, Seed: 1}

// ProbeText is the text the sensitivity probes run on: shorter than the
// evaluation text (the probes are many) and another seed, so the KL an
// allocation is judged by is measured on text it was not fitted to.
var ProbeText = Text{Samples: 4, Tokens: 128, Seed: 2}

// Capped is t with its tokens capped to the model's context (as seedlm
// eval caps them).
func (t Text) Capped(c *model.Config) Text {
	t.Tokens, _ = eval.CapTokens(c, t.Tokens)
	return t
}

// Positions is the number of next-token distributions compared on t.
func (t Text) Positions() int { return t.Samples * t.Tokens }

// Describe is t's description, as seedlm eval prints it.
func (t Text) Describe(c *model.Config) string {
	return fmt.Sprintf("%d sequences × %d tokens sampled from the original at temperature 1 from BOS (token %d), seed %d", t.Samples, t.Tokens, c.BOS, t.Seed)
}

// Model is a model the forward pass runs: its config and the tensors it
// uses.
type Model struct {
	Config *model.Config
	// ConfigPath is where the config was read from.
	ConfigPath string
	// Used are the source's tensors the forward pass reads.
	Used []checkpoint.TensorInfo
}

// UnsupportedError says why a model cannot be run: no config.json, another
// architecture, or tensors that do not match the config.
type UnsupportedError struct {
	Reason string
	Err    error
}

func (e *UnsupportedError) Error() string { return e.Reason }
func (e *UnsupportedError) Unwrap() error { return e.Err }

// Hint says what to do.
func (e *UnsupportedError) Hint() string {
	var h interface{ Hint() string }
	if errors.As(e.Err, &h) && h.Hint() != "" {
		return h.Hint()
	}
	return "the output objective, max_kl and the evaluation need a Llama-family model (llama, mistral, qwen2) with its Hugging Face config.json beside it or given with model_config (--model-config)"
}

// FindModel returns the model at input if the forward pass runs it: the
// config from configPath, else the config.json beside input; its tensors
// must be the config's. An *UnsupportedError otherwise (other errors: a
// config file given but unreadable).
func FindModel(input, configPath string, infos []checkpoint.TensorInfo) (*Model, error) {
	path := configPath
	if path == "" {
		p, err := model.FindConfig(input)
		if err != nil {
			return nil, &UnsupportedError{Reason: fmt.Sprintf("no model config: %v", err), Err: err}
		}
		path = p
	}
	c, err := model.LoadConfig(path)
	if err != nil {
		var ce *model.ConfigError
		if errors.As(err, &ce) {
			return nil, &UnsupportedError{Reason: err.Error(), Err: err}
		}
		return nil, err
	}
	used, err := model.CheckTensors(c, infos, input)
	if err != nil {
		return nil, &UnsupportedError{Reason: fmt.Sprintf("%s does not describe this model: %v", path, err), Err: err}
	}
	return &Model{Config: c, ConfigPath: path, Used: used}, nil
}

// Weights is the memory the used tensors take in their stored dtype.
func (m *Model) Weights() int64 { return model.WeightBytes(m.Used) }

// MatrixWeights is the number of weights in the model's matrices.
func (m *Model) MatrixWeights() int64 {
	var n int64
	for _, t := range m.Used {
		if len(t.Shape) >= 2 {
			n += t.NumElements()
		}
	}
	return n
}
