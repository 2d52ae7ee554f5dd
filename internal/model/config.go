// Package model runs Llama-family language models (llama, mistral, qwen2)
// from their Hugging Face tensors: batched teacher-forced scoring and
// KV-cached incremental decoding, on the CPU, with weights kept in their
// stored dtype (F32, BF16 or F16) and widened per matmul panel.
//
// Arithmetic is defined without fused multiply-adds (every product is
// rounded to float32 before it is added, in the assembly kernel and the
// portable one alike) and with the package's own exp, sin and cos, and each
// output element is reduced in a fixed order whatever the worker count: the
// same tokens give bit-identical logits on every run, thread count and
// architecture.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Supported lists the Hugging Face model_type values this package runs.
var Supported = []string{"llama", "mistral", "qwen2"}

// Config is the subset of a Hugging Face config.json the forward pass needs.
type Config struct {
	Arch         string  // model_type: "llama", "mistral" or "qwen2"
	Hidden       int     // hidden_size (d)
	Intermediate int     // intermediate_size (SwiGLU width)
	Layers       int     // num_hidden_layers
	Heads        int     // num_attention_heads
	KVHeads      int     // num_key_value_heads (grouped-query attention)
	HeadDim      int     // head_dim (default Hidden/Heads)
	Vocab        int     // vocab_size
	MaxPos       int     // max_position_embeddings (context length)
	RMSEps       float64 // rms_norm_eps
	RopeTheta    float64 // rope_theta
	Tied         bool    // tie_word_embeddings
	BOS          int     // bos_token_id (1 when absent)
	// SlidingWindow limits attention to the last SlidingWindow positions
	// (mistral; qwen2 with use_sliding_window); 0: unlimited.
	SlidingWindow int
	// Path is the file the config was read from ("" when parsed from bytes).
	Path string
}

// rawConfig mirrors config.json; pointers tell absent from zero.
type rawConfig struct {
	ModelType        string          `json:"model_type"`
	Architectures    []string        `json:"architectures"`
	Hidden           int             `json:"hidden_size"`
	Intermediate     int             `json:"intermediate_size"`
	Layers           int             `json:"num_hidden_layers"`
	Heads            int             `json:"num_attention_heads"`
	KVHeads          *int            `json:"num_key_value_heads"`
	HeadDim          *int            `json:"head_dim"`
	Vocab            int             `json:"vocab_size"`
	MaxPos           int             `json:"max_position_embeddings"`
	RMSEps           *float64        `json:"rms_norm_eps"`
	RopeTheta        *float64        `json:"rope_theta"`
	RopeScaling      json.RawMessage `json:"rope_scaling"`
	HiddenAct        string          `json:"hidden_act"`
	Tied             *bool           `json:"tie_word_embeddings"`
	BOS              json.RawMessage `json:"bos_token_id"`
	SlidingWindow    *int            `json:"sliding_window"`
	UseSlidingWindow *bool           `json:"use_sliding_window"`
}

// ConfigError is a config.json the package cannot run; it names the file.
type ConfigError struct {
	Path   string
	Msg    string
	Advice string // what to do, for Hint
}

func (e *ConfigError) Error() string {
	if e.Path != "" {
		return e.Path + ": " + e.Msg
	}
	return e.Msg
}

// Hint says what to do (the CLI prints it as a "hint:" line).
func (e *ConfigError) Hint() string { return e.Advice }

// ErrNoConfig is wrapped by FindConfig when no config.json is found.
var ErrNoConfig = errors.New("no config.json")

// ParseConfig reads a Hugging Face config.json. path is used in errors.
func ParseConfig(path string, data []byte) (*Config, error) {
	var r rawConfig
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, &ConfigError{Path: path, Msg: "not a valid config.json: " + err.Error()}
	}
	arch := r.ModelType
	if arch == "" && len(r.Architectures) > 0 {
		arch = r.Architectures[0]
	}
	ok := false
	for _, s := range Supported {
		ok = ok || s == arch
	}
	if !ok {
		what := fmt.Sprintf("architecture %q", arch)
		if arch == "" {
			what = "no model_type"
		}
		return nil, &ConfigError{Path: path, Msg: what + " is not supported",
			Advice: "seedlm's forward pass runs model_type " + strings.Join(Supported, ", ") + " (Llama-family decoders)"}
	}
	c := &Config{Arch: arch, Hidden: r.Hidden, Intermediate: r.Intermediate, Layers: r.Layers, Heads: r.Heads,
		Vocab: r.Vocab, MaxPos: r.MaxPos, RMSEps: 1e-6, RopeTheta: 10000, BOS: 1, Path: path}
	c.KVHeads = c.Heads
	if r.KVHeads != nil {
		c.KVHeads = *r.KVHeads
	}
	if r.RMSEps != nil {
		c.RMSEps = *r.RMSEps
	}
	if r.RopeTheta != nil {
		c.RopeTheta = *r.RopeTheta
	}
	if r.Tied != nil {
		c.Tied = *r.Tied
	}
	if len(r.BOS) > 0 && string(r.BOS) != "null" {
		if err := json.Unmarshal(r.BOS, &c.BOS); err != nil {
			return nil, &ConfigError{Path: path, Msg: "bos_token_id " + string(r.BOS) + " is not one token id"}
		}
	}
	if r.SlidingWindow != nil && *r.SlidingWindow > 0 && (arch == "mistral" || (r.UseSlidingWindow != nil && *r.UseSlidingWindow)) {
		c.SlidingWindow = *r.SlidingWindow
	}
	if c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if r.HeadDim != nil && *r.HeadDim > 0 {
		c.HeadDim = *r.HeadDim
	}
	bad := func(msg string, args ...any) error {
		return &ConfigError{Path: path, Msg: fmt.Sprintf(msg, args...)}
	}
	switch {
	case c.Hidden <= 0 || c.Intermediate <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.Vocab <= 0:
		return nil, bad("hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and vocab_size must all be positive (got %d, %d, %d, %d, %d)",
			c.Hidden, c.Intermediate, c.Layers, c.Heads, c.Vocab)
	case c.KVHeads <= 0 || c.Heads%c.KVHeads != 0:
		return nil, bad("num_key_value_heads %d must divide num_attention_heads %d", c.KVHeads, c.Heads)
	case c.HeadDim <= 0 || c.HeadDim%2 != 0:
		return nil, bad("head dimension %d must be positive and even (rotary embedding pairs)", c.HeadDim)
	case r.HeadDim == nil && c.Hidden%c.Heads != 0:
		return nil, bad("hidden_size %d is not a multiple of num_attention_heads %d", c.Hidden, c.Heads)
	case r.HiddenAct != "" && r.HiddenAct != "silu":
		return nil, bad("hidden_act %q is not supported (Llama-family models use silu)", r.HiddenAct)
	case len(r.RopeScaling) > 0 && string(r.RopeScaling) != "null":
		return nil, &ConfigError{Path: path, Msg: "rope_scaling " + string(r.RopeScaling) + " is not supported",
			Advice: "only plain RoPE (rope_scaling null) is implemented"}
	case !(c.RMSEps > 0) || !(c.RopeTheta > 0):
		return nil, bad("rms_norm_eps (%g) and rope_theta (%g) must be positive", c.RMSEps, c.RopeTheta)
	case c.BOS < 0 || c.BOS >= c.Vocab:
		return nil, bad("bos_token_id %d outside the vocabulary [0, %d)", c.BOS, c.Vocab)
	}
	if c.MaxPos <= 0 {
		c.MaxPos = 2048
	}
	return c, nil
}

// LoadConfig reads and parses a config.json file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Path: path, Msg: "cannot read model config: " + err.Error()}
	}
	return ParseConfig(path, data)
}

// FindConfig returns the config.json beside a model: in the folder itself
// for a folder, else in the file's folder. The error wraps ErrNoConfig.
func FindConfig(modelPath string) (string, error) {
	dir := modelPath
	if st, err := os.Stat(modelPath); err != nil || !st.IsDir() {
		dir = filepath.Dir(modelPath)
	}
	p := filepath.Join(dir, "config.json")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w beside %s (looked for %s)", ErrNoConfig, modelPath, p)
	}
	return p, nil
}

// KVDim is the width of the key and value projections.
func (c *Config) KVDim() int { return c.KVHeads * c.HeadDim }

// QDim is the width of the query projection.
func (c *Config) QDim() int { return c.Heads * c.HeadDim }

// MatMulMAs is the weight multiply-adds per token of a forward pass: every
// matrix once, lm_head included (the embeddings are a lookup; attention's
// own products, which grow with the context, are not counted). Evaluation
// cost ≈ tokens × MatMulMAs / the machine's multiply-add rate.
func (c *Config) MatMulMAs() float64 {
	d, qd, kvd, I := float64(c.Hidden), float64(c.QDim()), float64(c.KVDim()), float64(c.Intermediate)
	// Every product rounded (float64(…)): no fused multiply-add, so the
	// cost decisions it feeds are the same on every architecture.
	per := float64(d*qd) + float64(2*d*kvd) + float64(qd*d) + float64(3*d*I)
	return float64(float64(c.Layers)*per) + float64(d*float64(c.Vocab))
}
