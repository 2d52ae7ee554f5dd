package model

import (
	"context"
	"fmt"
	"slices"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
)

// Hugging Face tensor names.
const (
	EmbedName  = "model.embed_tokens.weight"
	NormName   = "model.norm.weight"
	LMHeadName = "lm_head.weight"
)

// LayerPrefix is the name prefix of decoder layer i's tensors.
func LayerPrefix(i int) string { return fmt.Sprintf("model.layers.%d.", i) }

// Per-layer tensor name suffixes.
const (
	sAttnNorm = "input_layernorm.weight"
	sMLPNorm  = "post_attention_layernorm.weight"
	sQ        = "self_attn.q_proj."
	sK        = "self_attn.k_proj."
	sV        = "self_attn.v_proj."
	sO        = "self_attn.o_proj."
	sGate     = "mlp.gate_proj.weight"
	sUp       = "mlp.up_proj.weight"
	sDown     = "mlp.down_proj.weight"
)

// Spec is one tensor the model reads.
type Spec struct {
	Name     string
	Shape    []int64
	Optional bool // a bias that may be absent (llama/mistral attention_bias)
}

// Specs lists the tensors a config needs, with their shapes, in forward
// order. lm_head is optional when the embeddings are tied.
func Specs(c *Config) []Spec {
	d, qd, kvd, I := int64(c.Hidden), int64(c.QDim()), int64(c.KVDim()), int64(c.Intermediate)
	out := []Spec{{Name: EmbedName, Shape: []int64{int64(c.Vocab), d}}}
	for i := 0; i < c.Layers; i++ {
		p := LayerPrefix(i)
		bias := c.Arch != "qwen2" // qwen2 always has q/k/v biases
		out = append(out,
			Spec{Name: p + sAttnNorm, Shape: []int64{d}},
			Spec{Name: p + sQ + "weight", Shape: []int64{qd, d}},
			Spec{Name: p + sQ + "bias", Shape: []int64{qd}, Optional: bias},
			Spec{Name: p + sK + "weight", Shape: []int64{kvd, d}},
			Spec{Name: p + sK + "bias", Shape: []int64{kvd}, Optional: bias},
			Spec{Name: p + sV + "weight", Shape: []int64{kvd, d}},
			Spec{Name: p + sV + "bias", Shape: []int64{kvd}, Optional: bias},
			Spec{Name: p + sO + "weight", Shape: []int64{d, qd}},
			Spec{Name: p + sO + "bias", Shape: []int64{d}, Optional: true},
			Spec{Name: p + sMLPNorm, Shape: []int64{d}},
			Spec{Name: p + sGate, Shape: []int64{I, d}},
			Spec{Name: p + sUp, Shape: []int64{I, d}},
			Spec{Name: p + sDown, Shape: []int64{d, I}},
		)
	}
	out = append(out, Spec{Name: NormName, Shape: []int64{d}},
		Spec{Name: LMHeadName, Shape: []int64{int64(c.Vocab), d}, Optional: c.Tied})
	return out
}

// CheckTensors matches a checkpoint's tensor list against the config
// without reading data: every required tensor present with its shape and a
// floating-point dtype. It returns the infos of the tensors the model will
// read, in Specs order.
func CheckTensors(c *Config, infos []checkpoint.TensorInfo, where string) ([]checkpoint.TensorInfo, error) {
	by := make(map[string]checkpoint.TensorInfo, len(infos))
	for _, t := range infos {
		by[t.Name] = t
	}
	var out []checkpoint.TensorInfo
	for _, s := range Specs(c) {
		t, ok := by[s.Name]
		if !ok {
			if s.Optional {
				continue
			}
			hint := "the checkpoint and config.json must describe the same model"
			if s.Name == LMHeadName {
				hint = "config.json says tie_word_embeddings is false, so lm_head.weight is required"
			}
			return nil, fmt.Errorf("%s has no tensor %q, which %s model with this config.json needs; hint: %s", where, s.Name, c.Arch, hint)
		}
		if !slices.Equal(t.Shape, s.Shape) {
			return nil, fmt.Errorf("%s: tensor %q has shape %s, config.json implies %s; hint: pass the model's own config.json (--model-config)",
				where, s.Name, dtype.ShapeString(t.Shape), dtype.ShapeString(s.Shape))
		}
		if !dtype.CanFloat32(t.DType) {
			return nil, fmt.Errorf("%s: tensor %q has dtype %s; the forward pass needs floating-point weights", where, s.Name, t.DType)
		}
		out = append(out, t)
	}
	return out, nil
}

// storedBytes is what a tensor of this dtype takes in memory here.
func storedBytes(t checkpoint.TensorInfo) int64 {
	switch t.DType {
	case "BF16", "F16":
		return 2 * t.NumElements()
	}
	return 4 * t.NumElements()
}

// WeightBytes is the memory the model's weights take once loaded (stored
// dtype; F64 and F8 tensors as F32).
func WeightBytes(used []checkpoint.TensorInfo) int64 {
	var b int64
	for _, t := range used {
		b += storedBytes(t)
	}
	return b
}

type layer struct {
	attnNorm, mlpNorm      []float32
	q, k, v, o             *Tensor
	qb, kb, vb, ob         []float32
	gate, up, down         *Tensor
	qName, kName, vName    string
	oName, gName, uName    string
	dName, anName, mnName  string
	qbName, kbName, vbName string
}

// Model is a loaded Llama-family model. It is safe for concurrent use by
// calls that do not modify it.
type Model struct {
	Cfg Config
	// Workers is the goroutine count of each parallel step (0: GOMAXPROCS).
	// The results do not depend on it.
	Workers int

	embed, lmHead *Tensor
	norm          []float32
	layers        []layer
	rope          *ropeTable
	// ropeInterleaved applies RoPE to (2i, 2i+1) pairs (Meta/llama2.c
	// layout) instead of HF's (i, i+d/2): only for the test that shows the
	// HF layout is the right one for HF weights.
	ropeInterleaved bool
}

// Load reads the tensors a config needs from w. Weights keep their stored
// dtype; norms and biases become float32.
func Load(ctx context.Context, c *Config, w Weights) (*Model, error) {
	used, err := CheckTensors(c, w.Tensors(), "model")
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, t := range used {
		have[t.Name] = true
	}
	m := &Model{Cfg: *c, layers: make([]layer, c.Layers)}
	get := func(name string) (*Tensor, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !have[name] {
			return nil, nil
		}
		return w.Tensor(name)
	}
	vec := func(name string) ([]float32, error) {
		t, err := get(name)
		if t == nil || err != nil {
			return nil, err
		}
		return t.Float32(), nil
	}
	if m.embed, err = get(EmbedName); err != nil {
		return nil, err
	}
	for i := range m.layers {
		p := LayerPrefix(i)
		L := &m.layers[i]
		L.qName, L.kName, L.vName, L.oName = p+sQ+"weight", p+sK+"weight", p+sV+"weight", p+sO+"weight"
		L.gName, L.uName, L.dName = p+sGate, p+sUp, p+sDown
		L.anName, L.mnName = p+sAttnNorm, p+sMLPNorm
		L.qbName, L.kbName, L.vbName = p+sQ+"bias", p+sK+"bias", p+sV+"bias"
		for _, x := range []struct {
			dst  **Tensor
			name string
		}{{&L.q, L.qName}, {&L.k, L.kName}, {&L.v, L.vName}, {&L.o, L.oName}, {&L.gate, L.gName}, {&L.up, L.uName}, {&L.down, L.dName}} {
			if *x.dst, err = get(x.name); err != nil {
				return nil, err
			}
		}
		for _, x := range []struct {
			dst  *[]float32
			name string
		}{{&L.attnNorm, L.anName}, {&L.mlpNorm, L.mnName}, {&L.qb, L.qbName}, {&L.kb, L.kbName}, {&L.vb, L.vbName}, {&L.ob, p + sO + "bias"}} {
			if *x.dst, err = vec(x.name); err != nil {
				return nil, err
			}
		}
	}
	if m.norm, err = vec(NormName); err != nil {
		return nil, err
	}
	// A checkpoint that holds lm_head uses it as stored, tied or not.
	if m.lmHead, err = get(LMHeadName); err != nil {
		return nil, err
	}
	if m.lmHead == nil {
		m.lmHead = m.embed
	}
	return m, nil
}

// MatrixNames lists the model's weight matrices (the tensors of 2+ dims it
// multiplies by), in forward order: embeddings, each layer's q, k, v, o,
// gate, up, down, then lm_head when it is stored separately.
func (m *Model) MatrixNames() []string {
	out := []string{EmbedName}
	for i := range m.layers {
		L := &m.layers[i]
		out = append(out, L.qName, L.kName, L.vName, L.oName, L.gName, L.uName, L.dName)
	}
	if m.lmHead != m.embed {
		out = append(out, LMHeadName)
	}
	return out
}

// Matrix returns a weight matrix by name, and the index of the first layer
// whose computation it affects (Layers for lm_head; 0 for the embeddings).
func (m *Model) Matrix(name string) (t *Tensor, firstLayer int, ok bool) {
	switch name {
	case EmbedName:
		return m.embed, 0, true
	case LMHeadName:
		if m.lmHead != m.embed {
			return m.lmHead, len(m.layers), true
		}
		return nil, 0, false
	}
	for i := range m.layers {
		for _, p := range m.layers[i].slots() {
			if p.name == name {
				return *p.t, i, true
			}
		}
	}
	return nil, 0, false
}

type slot struct {
	name string
	t    **Tensor
}

func (L *layer) slots() []slot {
	return []slot{{L.qName, &L.q}, {L.kName, &L.k}, {L.vName, &L.v}, {L.oName, &L.o}, {L.gName, &L.gate}, {L.uName, &L.up}, {L.dName, &L.down}}
}

// WithMatrix returns a copy of m with one weight matrix replaced (same
// shape); the rest is shared. In a tied model without a stored lm_head the
// embeddings are both, so replacing them replaces both (as coding that one
// tensor would); a stored lm_head is its own matrix.
func (m *Model) WithMatrix(name string, t *Tensor) (*Model, error) {
	old, _, ok := m.Matrix(name)
	if !ok {
		return nil, fmt.Errorf("model has no weight matrix %q", name)
	}
	if !slices.Equal(old.Shape, t.Shape) {
		return nil, fmt.Errorf("tensor %q: shape %s, the model's is %s", name, dtype.ShapeString(t.Shape), dtype.ShapeString(old.Shape))
	}
	c := *m
	c.layers = append([]layer(nil), m.layers...)
	switch name {
	case EmbedName:
		if c.lmHead == c.embed {
			c.lmHead = t
		}
		c.embed = t
		return &c, nil
	case LMHeadName:
		c.lmHead = t
		return &c, nil
	}
	for i := range c.layers {
		for _, p := range c.layers[i].slots() {
			if p.name == name {
				*p.t = t
				return &c, nil
			}
		}
	}
	return nil, fmt.Errorf("model has no weight matrix %q", name)
}

// Bytes is the memory the loaded weights take.
func (m *Model) Bytes() int64 {
	seen := map[*Tensor]bool{}
	var b int64
	add := func(t *Tensor) {
		if t != nil && !seen[t] {
			seen[t] = true
			b += t.Bytes()
		}
	}
	add(m.embed)
	add(m.lmHead)
	for i := range m.layers {
		for _, s := range m.layers[i].slots() {
			add(*s.t)
		}
	}
	return b
}
