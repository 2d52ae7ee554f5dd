package model

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/seedlm/seedlm/internal/checkpoint"
)

// Random returns in-memory weights for c, for tests and benchmarks: weight
// matrices N(0, 1/in) (activations stay O(1)), embeddings N(0, 1), norms
// 1 ± 0.2, every bias the config allows N(0, 0.3²); stored in dtype (F32,
// BF16 or F16). lm_head is stored when the config does not tie it.
// Deterministic in seed.
func Random(c *Config, seed int64, dtype string) Weights { return random(c, seed, dtype, false) }

// random is Random; allBiases adds every optional bias too (llama's
// attention_bias layout: q, k, v and o).
func random(c *Config, seed int64, dtype string, allBiases bool) *memWeights {
	rng := rand.New(rand.NewSource(seed))
	mw := &memWeights{ts: map[string]*Tensor{}}
	for _, s := range Specs(c) {
		isBias := len(s.Shape) == 1 && s.Name[len(s.Name)-5:] == ".bias"
		if s.Name == LMHeadName && c.Tied {
			continue
		}
		if isBias && s.Optional && !allBiases {
			continue // only the biases the architecture requires (qwen2)
		}
		n := int(s.Shape[0])
		if len(s.Shape) == 2 {
			n *= int(s.Shape[1])
		}
		w := make([]float32, n)
		switch {
		case isBias:
			for i := range w {
				w[i] = float32(rng.NormFloat64() * 0.3)
			}
		case len(s.Shape) == 1:
			for i := range w {
				w[i] = float32(1 + 0.2*rng.NormFloat64())
			}
		default:
			sd := 1 / math.Sqrt(float64(s.Shape[1]))
			if s.Name == EmbedName {
				sd = 1
			}
			for i := range w {
				w[i] = float32(rng.NormFloat64() * sd)
			}
		}
		t := NewTensorRounded(s.Name, dtype, s.Shape, w)
		if len(s.Shape) == 1 {
			t = NewTensorF32(s.Name, s.Shape, w)
		}
		mw.ts[s.Name] = t
		mw.infos = append(mw.infos, checkpoint.TensorInfo{Name: s.Name, DType: t.DType, Shape: s.Shape})
	}
	return mw
}

// memWeights is Weights held in memory.
type memWeights struct {
	infos []checkpoint.TensorInfo
	ts    map[string]*Tensor
}

func (m *memWeights) Tensors() []checkpoint.TensorInfo { return m.infos }
func (m *memWeights) Tensor(name string) (*Tensor, error) {
	t, ok := m.ts[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	return t, nil
}
