package model

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/seedlm/seedlm/internal/checkpoint"
)

var sharedStories = func() string {
	p, _ := filepath.Abs("../../../shared/data/stories260K")
	return p
}()

// loadStories loads ../shared/data/stories260K (file: f32 or bf16), or
// skips when the shared data is absent.
func loadStories(t testing.TB, file string) *Model {
	t.Helper()
	path := filepath.Join(sharedStories, file)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("shared model data absent (%v): skipping the real-model check", err)
	}
	c, err := LoadConfig(filepath.Join(sharedStories, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m, err := Load(context.Background(), c, FromSource(src))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// logSoftmax64 returns log p of the row (float64).
func logSoftmax64(lg []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range lg {
		mx = math.Max(mx, float64(v))
	}
	var s float64
	for _, v := range lg {
		s += math.Exp(float64(v) - mx)
	}
	ls := mx + math.Log(s)
	out := make([]float64, len(lg))
	for i, v := range lg {
		out[i] = float64(v) - ls
	}
	return out
}

// perplexity of seqs (each starting with BOS) under m.
func perplexity(t testing.TB, m *Model, seqs [][]int) float64 {
	var nll float64
	var n int
	err := m.Forward(context.Background(), seqs, func(si, pos int, lg []float32) error {
		if pos+1 < len(seqs[si]) {
			nll -= logSoftmax64(lg)[seqs[si][pos+1]]
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return math.Exp(nll / float64(n))
}

// greedy decodes n tokens after BOS.
func greedy(t testing.TB, m *Model, n int) []int {
	dec, err := m.NewDecoder(1, n+1)
	if err != nil {
		t.Fatal(err)
	}
	seq := []int{m.Cfg.BOS}
	for len(seq) <= n {
		lg, err := dec.Step(context.Background(), seq[len(seq)-1:])
		if err != nil {
			t.Fatal(err)
		}
		best := 0
		for i, v := range lg {
			if v > lg[best] {
				best = i
			}
		}
		seq = append(seq, best)
	}
	return seq
}

// stories260K writes confident text greedily from BOS when, and only when,
// the rotary layout matches the checkpoint's (HF's rotate_half: the data
// README says q/k rows were permuted to it).
func TestStoriesGreedyIsConfident(t *testing.T) {
	m := loadStories(t, "stories260K.f32.safetensors")
	seq := greedy(t, m, 200)
	distinct := map[int]bool{}
	for _, tok := range seq {
		distinct[tok] = true
	}
	ppl := perplexity(t, m, [][]int{seq})
	wrong := *m
	wrong.ropeInterleaved = true
	wrongSeq := greedy(t, &wrong, 200)
	pplWrong := perplexity(t, m, [][]int{wrongSeq})
	pplWrongSelf := perplexity(t, &wrong, [][]int{seq})
	t.Logf("greedy 200 tokens from BOS: %d distinct tokens, perplexity %.3f under the model; interleaved RoPE: its greedy text has perplexity %.3f under the right model, and the right model's text %.3f under it", len(distinct), ppl, pplWrong, pplWrongSelf)
	if len(distinct) < 40 || ppl > 2.5 {
		t.Errorf("greedy text: %d distinct tokens, perplexity %.3f: want a varied, confident continuation (≥ 40 tokens, perplexity ≤ 2.5)", len(distinct), ppl)
	}
	if pplWrongSelf < 20*ppl || pplWrong < 20*ppl {
		t.Errorf("the interleaved layout is not measurably worse (%.3f, %.3f vs %.3f)", pplWrongSelf, pplWrong, ppl)
	}
	// BF16 weights: the same model rounded; its greedy text is as confident.
	mb := loadStories(t, "stories260K.bf16.safetensors")
	if mb.embed.DType != "BF16" {
		t.Fatalf("bf16 checkpoint loaded as %s: weights must stay in their stored dtype", mb.embed.DType)
	}
	if p := perplexity(t, mb, [][]int{seq}); math.Abs(p-ppl) > 0.05*ppl {
		t.Errorf("bf16 model: perplexity %.3f of the f32 model's greedy text, f32 %.3f", p, ppl)
	}
}
