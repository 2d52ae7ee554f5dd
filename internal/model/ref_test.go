package model

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"testing"
)

// randomModel is random (Random, optionally with every bias).
func randomModel(c *Config, seed int64, dtype string, withBias bool) *memWeights {
	return random(c, seed, dtype, withBias)
}

// refForward is an independent float64 implementation of the HF Llama
// forward pass (modeling_llama.py, written from the equations), returning
// logits [T][V].
func refForward(c *Config, w *memWeights, toks []int) [][]float64 {
	get := func(name string) []float64 {
		t, ok := w.ts[name]
		if !ok {
			return nil
		}
		f := t.Float32()
		out := make([]float64, len(f))
		for i, x := range f {
			out[i] = float64(x)
		}
		return out
	}
	d, T := c.Hidden, len(toks)
	hd := c.HeadDim
	mat := func(x []float64, W []float64, b []float64, out int) []float64 {
		in := len(x)
		y := make([]float64, out)
		for o := 0; o < out; o++ {
			s := 0.0
			for k := 0; k < in; k++ {
				s += W[o*in+k] * x[k]
			}
			if b != nil {
				s += b[o]
			}
			y[o] = s
		}
		return y
	}
	norm := func(x, g []float64) []float64 {
		ss := 0.0
		for _, v := range x {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(len(x))+c.RMSEps)
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * r * g[i]
		}
		return y
	}
	rope := func(v []float64, pos int) {
		for h := 0; h < len(v)/hd; h++ {
			x := v[h*hd : (h+1)*hd]
			rot := make([]float64, hd) // rotate_half: [−x2, x1]
			for i := 0; i < hd/2; i++ {
				rot[i] = -x[i+hd/2]
				rot[i+hd/2] = x[i]
			}
			for i := 0; i < hd; i++ {
				j := i % (hd / 2)
				ang := float64(pos) * math.Pow(c.RopeTheta, -float64(2*j)/float64(hd))
				x[i] = x[i]*math.Cos(ang) + rot[i]*math.Sin(ang)
			}
		}
	}
	emb := get(EmbedName)
	h := make([][]float64, T)
	for t, tok := range toks {
		h[t] = append([]float64(nil), emb[tok*d:(tok+1)*d]...)
	}
	for l := 0; l < c.Layers; l++ {
		p := LayerPrefix(l)
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range h {
			x := norm(h[t], get(p+sAttnNorm))
			qs[t] = mat(x, get(p+sQ+"weight"), get(p+sQ+"bias"), c.QDim())
			ks[t] = mat(x, get(p+sK+"weight"), get(p+sK+"bias"), c.KVDim())
			vs[t] = mat(x, get(p+sV+"weight"), get(p+sV+"bias"), c.KVDim())
			rope(qs[t], t)
			rope(ks[t], t)
		}
		for t := range h {
			att := make([]float64, c.QDim())
			for hh := 0; hh < c.Heads; hh++ {
				kh := hh * c.KVHeads / c.Heads
				lo := 0
				if c.SlidingWindow > 0 && t-c.SlidingWindow+1 > 0 {
					lo = t - c.SlidingWindow + 1
				}
				sc := make([]float64, t+1)
				mx := math.Inf(-1)
				for s := lo; s <= t; s++ {
					dot := 0.0
					for i := 0; i < hd; i++ {
						dot += qs[t][hh*hd+i] * ks[s][kh*hd+i]
					}
					sc[s] = dot / math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[s])
				}
				sum := 0.0
				for s := lo; s <= t; s++ {
					sc[s] = math.Exp(sc[s] - mx)
					sum += sc[s]
				}
				for s := lo; s <= t; s++ {
					for i := 0; i < hd; i++ {
						att[hh*hd+i] += sc[s] / sum * vs[s][kh*hd+i]
					}
				}
			}
			o := mat(att, get(p+sO+"weight"), get(p+sO+"bias"), d)
			for i := range o {
				h[t][i] += o[i]
			}
			x := norm(h[t], get(p+sMLPNorm))
			g := mat(x, get(p+sGate), nil, c.Intermediate)
			u := mat(x, get(p+sUp), nil, c.Intermediate)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			dn := mat(g, get(p+sDown), nil, d)
			for i := range dn {
				h[t][i] += dn[i]
			}
		}
	}
	head := get(LMHeadName)
	if head == nil {
		head = emb
	}
	out := make([][]float64, T)
	for t := range h {
		out[t] = mat(norm(h[t], get(NormName)), head, nil, c.Vocab)
	}
	return out
}

func testConfigs() map[string]*Config {
	return map[string]*Config{
		// Multi-head, tied embeddings, odd widths (kernel tails).
		"llama": {Arch: "llama", Hidden: 36, Intermediate: 50, Layers: 2, Heads: 3, KVHeads: 3, HeadDim: 12,
			Vocab: 41, MaxPos: 64, RMSEps: 1e-5, RopeTheta: 10000, Tied: true},
		// Grouped-query attention, separate lm_head, sliding window.
		"mistral": {Arch: "mistral", Hidden: 32, Intermediate: 56, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8,
			Vocab: 37, MaxPos: 64, RMSEps: 1e-6, RopeTheta: 1e6, SlidingWindow: 5},
		// q/k/v biases and GQA with head_dim ≠ hidden/heads.
		"qwen2": {Arch: "qwen2", Hidden: 24, Intermediate: 40, Layers: 3, Heads: 4, KVHeads: 1, HeadDim: 10,
			Vocab: 29, MaxPos: 64, RMSEps: 1e-6, RopeTheta: 1e4, Tied: true},
	}
}

func TestForwardMatchesFloat64Reference(t *testing.T) {
	for name, c := range testConfigs() {
		for _, dt := range []string{"F32", "BF16", "F16"} {
			t.Run(name+"/"+dt, func(t *testing.T) {
				w := randomModel(c, 7, dt, c.Arch == "llama")
				m, err := Load(context.Background(), c, w)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewSource(3))
				seqs := [][]int{make([]int, 13), make([]int, 1), make([]int, 9)}
				for _, s := range seqs {
					for i := range s {
						s[i] = rng.Intn(c.Vocab)
					}
				}
				var worst, scale float64
				err = m.Forward(context.Background(), seqs, func(si, pos int, lg []float32) error {
					ref := refForward(c, w, seqs[si][:pos+1])[pos]
					for v := range lg {
						worst = math.Max(worst, math.Abs(float64(lg[v])-ref[v]))
						scale = math.Max(scale, math.Abs(ref[v]))
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				// float32 arithmetic over a few layers: ~2e−7 relative measured.
				if worst > 1e-6*(1+scale) {
					t.Fatalf("max |logit − reference| = %.3g (logit scale %.3g)", worst, scale)
				}
				t.Logf("max |logit − float64 reference| = %.2g at scale %.2g", worst, scale)
			})
		}
	}
}

// The reference is sensitive to what it checks: dropping the biases or
// using the interleaved rotary layout changes the logits far beyond the
// tolerance above.
func TestReferenceDetectsWrongModels(t *testing.T) {
	c := testConfigs()["qwen2"]
	w := randomModel(c, 7, "F32", false)
	toks := []int{1, 5, 9, 2, 7, 7, 3}
	ref := refForward(c, w, toks)
	diff := func(m *Model) float64 {
		var worst float64
		err := m.Forward(context.Background(), [][]int{toks}, func(_, pos int, lg []float32) error {
			for v := range lg {
				worst = math.Max(worst, math.Abs(float64(lg[v])-ref[pos][v]))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return worst
	}
	m, err := Load(context.Background(), c, w)
	if err != nil {
		t.Fatal(err)
	}
	good := diff(m)
	inter := *m
	inter.ropeInterleaved = true
	nob := *m
	nob.layers = append([]layer(nil), m.layers...)
	for i := range nob.layers {
		nob.layers[i].qb = nil
	}
	for name, d := range map[string]float64{"interleaved rope": diff(&inter), "no q bias": diff(&nob)} {
		if d < 100*good || d < 1e-3 {
			t.Errorf("%s: max diff %.3g, correct model %.3g: the check cannot tell them apart", name, d, good)
		}
	}
}

func TestDecoderMatchesForward(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			w := randomModel(c, 11, "BF16", true)
			m, err := Load(context.Background(), c, w)
			if err != nil {
				t.Fatal(err)
			}
			seqs := [][]int{{1, 4, 4, 8, 2, 0, 3, 9, 9, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
			want := make([][]float32, 0)
			if err := m.Forward(context.Background(), seqs, func(si, pos int, lg []float32) error {
				want = append(want, append([]float32(nil), lg...))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			dec, err := m.NewDecoder(2, 10)
			if err != nil {
				t.Fatal(err)
			}
			for p := 0; p < 10; p++ {
				lg, err := dec.Step(context.Background(), []int{seqs[0][p], seqs[1][p]})
				if err != nil {
					t.Fatal(err)
				}
				for si := 0; si < 2; si++ {
					ref := want[si*10+p]
					for v := range ref {
						if d := math.Abs(float64(lg[si*c.Vocab+v] - ref[v])); d > 1e-5*(1+math.Abs(float64(ref[v]))) {
							t.Fatalf("seq %d pos %d vocab %d: decoder %g, forward %g", si, p, v, lg[si*c.Vocab+v], ref[v])
						}
					}
				}
			}
		})
	}
}

// Results are bit-identical whatever the worker count.
func TestForwardIndependentOfWorkers(t *testing.T) {
	c := testConfigs()["mistral"]
	w := randomModel(c, 5, "F16", false)
	m, err := Load(context.Background(), c, w)
	if err != nil {
		t.Fatal(err)
	}
	seqs := [][]int{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 1, 4, 1, 5}}
	run := func(nw int) []float32 {
		m.Workers = nw
		var out []float32
		if err := m.Forward(context.Background(), seqs, func(_, _ int, lg []float32) error {
			out = append(out, lg...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	a := run(1)
	for _, nw := range []int{2, 3, 8} {
		b := run(nw)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("workers=%d: logit %d is %g, workers=1 gives %g", nw, i, b[i], a[i])
			}
		}
	}
}

// A checkpoint that stores lm_head while config.json says the embeddings
// are tied uses lm_head as stored (stories260K is such a checkpoint).
func TestStoredLMHeadWinsOverTied(t *testing.T) {
	c := *testConfigs()["mistral"] // untied: Random stores lm_head
	w := randomModel(&c, 9, "F32", false)
	c.Tied = true
	m, err := Load(context.Background(), &c, w)
	if err != nil {
		t.Fatal(err)
	}
	if m.lmHead == m.embed || len(m.MatrixNames()) != 2+7*c.Layers {
		t.Fatal("stored lm_head not used")
	}
	toks := []int{1, 2, 3}
	ref := refForward(&c, w, toks) // uses lm_head.weight when present
	err = m.Forward(context.Background(), [][]int{toks}, func(_, pos int, lg []float32) error {
		for v := range lg {
			if d := math.Abs(float64(lg[v]) - ref[pos][v]); d > 1e-5*(1+math.Abs(ref[pos][v])) {
				t.Fatalf("pos %d vocab %d: %g, reference %g", pos, v, lg[v], ref[pos][v])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Without it, the tied model uses the embeddings.
	delete(w.ts, LMHeadName)
	infos := w.infos[:0]
	for _, i := range w.Tensors() {
		if i.Name != LMHeadName {
			infos = append(infos, i)
		}
	}
	w.infos = infos
	m2, err := Load(context.Background(), &c, w)
	if err != nil {
		t.Fatal(err)
	}
	if m2.lmHead != m2.embed {
		t.Fatal("tied model without lm_head does not use the embeddings")
	}
	c.Tied = false
	if _, err := Load(context.Background(), &c, w); err == nil || !strings.Contains(err.Error(), "lm_head.weight is required") {
		t.Fatalf("untied model without lm_head: %v", err)
	}
}
