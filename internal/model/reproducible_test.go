package model

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand"
	"testing"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/detmath"
)

// The TestReproducible* tests pin bits: cmd/seedlm's TestCrossArch runs
// them built for arm64 (under qemu-aarch64) and with GOAMD64=v3, where Go
// fuses multiply-adds, so they must give these hashes on every machine.
// Their inputs come from math/rand's integer stream (Float64, Intn), never
// from NormFloat64 or math's transcendental functions, whose last bit may
// depend on the architecture.

func hashBits(t *testing.T, want string, fill func(put func(uint64))) {
	t.Helper()
	h := sha256.New()
	var b [8]byte
	fill(func(x uint64) {
		binary.LittleEndian.PutUint64(b[:], x)
		h.Write(b[:])
	})
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("bits hash %s, want %s", got, want)
	}
}

// TestReproducibleMath pins expDet, detmath.Log and sinCosDet (the forward
// pass's softmax, log-probabilities and RoPE).
func TestReproducibleMath(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	hashBits(t, "f623c433c0bbb1e2adddc7c0c94b458bb587031845fc3f0930acf3bd02ca23b1", func(put func(uint64)) {
		for range 20000 {
			put(math.Float64bits(expDet((rng.Float64()*2 - 1) * 740)))
			put(math.Float64bits(detmath.Log(math.Ldexp(rng.Float64()+0.5, rng.Intn(400)-200))))
			s, c := sinCosDet(rng.Float64() * 1e5)
			put(math.Float64bits(s))
			put(math.Float64bits(c))
		}
	})
}

// uniformModel is Random's layout with weights uniform in ±√(3/in)
// (embeddings ±√3, norms 1 ± 0.2): no NormFloat64.
func uniformModel(c *Config, seed int64) Weights {
	rng := rand.New(rand.NewSource(seed))
	mw := &memWeights{ts: map[string]*Tensor{}}
	for _, s := range Specs(c) {
		if (s.Name == LMHeadName && c.Tied) || s.Optional {
			continue
		}
		n := int(s.Shape[0])
		a := 0.2
		if len(s.Shape) == 2 {
			n *= int(s.Shape[1])
			a = math.Sqrt(3 / float64(s.Shape[1]))
			if s.Name == EmbedName {
				a = math.Sqrt(3)
			}
		}
		w := make([]float32, n)
		for i := range w {
			w[i] = float32((rng.Float64()*2 - 1) * a)
			if len(s.Shape) == 1 {
				w[i]++
			}
		}
		mw.ts[s.Name] = NewTensorF32(s.Name, s.Shape, w)
		mw.infos = append(mw.infos, checkpoint.TensorInfo{Name: s.Name, DType: "F32", Shape: s.Shape})
	}
	return mw
}

// TestReproducibleForward pins every logit of a forward pass of each test
// architecture (GQA, tied embeddings, sliding window, odd widths that take
// the kernel tails), with 3 workers.
func TestReproducibleForward(t *testing.T) {
	cs := testConfigs()
	hashBits(t, "b893dbe647e83c5dbccba102535cbac5c8e2daec6e946e996cbbfdcdcea125e6", func(put func(uint64)) {
		for _, arch := range []string{"llama", "mistral"} {
			m, err := Load(context.Background(), cs[arch], uniformModel(cs[arch], 3))
			if err != nil {
				t.Fatal(err)
			}
			m.Workers = 3
			seqs := [][]int{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, {3, 1, 4, 1, 5, 9, 2, 6}}
			if err := m.Forward(context.Background(), seqs, func(_, _ int, lg []float32) error {
				for _, v := range lg {
					put(uint64(math.Float32bits(v)))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	})
}
