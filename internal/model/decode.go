package model

import (
	"context"
	"fmt"
	"math"
)

// Decoder runs a batch of sequences one token at a time with a key/value
// cache: each Step feeds one token per sequence and returns the next-token
// logits. Every row is computed independently, so a sequence's logits do
// not depend on the batch it is in.
type Decoder struct {
	m         *Model
	n, maxLen int
	pos       int
	kc, vc    [][]float32 // per layer: [n][maxLen][KVDim]
	b         *buffers
	h, xn     []float32
	posv      []int
	logits    []float32
	probs     [][]float32 // per worker: attention weights
}

// DecoderBytes estimates a Decoder's memory (cache, buffers and logits).
func (c *Config) DecoderBytes(batch, maxLen int) int64 {
	cache := 2 * int64(c.Layers) * int64(batch) * int64(maxLen) * int64(c.KVDim()) * 4
	return cache + c.ActivationBytes(batch, 1, 1) + int64(batch)*int64(c.Vocab)*4
}

// NewDecoder prepares a batch of n sequences of up to maxLen tokens.
func (m *Model) NewDecoder(n, maxLen int) (*Decoder, error) {
	c := &m.Cfg
	if n <= 0 || maxLen <= 0 {
		return nil, fmt.Errorf("decoder needs a positive batch and length (got %d, %d)", n, maxLen)
	}
	if maxLen > c.MaxPos {
		return nil, fmt.Errorf("%d tokens exceed the context length %d (max_position_embeddings)", maxLen, c.MaxPos)
	}
	d := &Decoder{m: m, n: n, maxLen: maxLen, b: m.newBuffers(n),
		h: make([]float32, n*c.Hidden), xn: make([]float32, n*c.Hidden), posv: make([]int, n),
		logits: make([]float32, n*c.Vocab), probs: make([][]float32, workers(m.Workers))}
	d.kc = make([][]float32, c.Layers)
	d.vc = make([][]float32, c.Layers)
	for l := range d.kc {
		d.kc[l] = make([]float32, n*maxLen*c.KVDim())
		d.vc[l] = make([]float32, n*maxLen*c.KVDim())
	}
	return d, nil
}

// Pos is the number of tokens fed so far.
func (d *Decoder) Pos() int { return d.pos }

// Step feeds tokens[i] to sequence i and returns the logits of the next
// token, [n, Vocab] row-major (valid until the next Step).
func (d *Decoder) Step(ctx context.Context, tokens []int) ([]float32, error) {
	m, c := d.m, &d.m.Cfg
	if len(tokens) != d.n {
		return nil, fmt.Errorf("decoder step: %d tokens for a batch of %d", len(tokens), d.n)
	}
	if d.pos >= d.maxLen {
		return nil, fmt.Errorf("decoder is full (%d tokens)", d.maxLen)
	}
	hd := c.Hidden
	for i, tok := range tokens {
		if tok < 0 || tok >= c.Vocab {
			return nil, fmt.Errorf("sequence %d: token id %d outside the vocabulary [0, %d)", i, tok, c.Vocab)
		}
		m.embed.widen(d.h[i*hd:(i+1)*hd], tok*hd)
		d.posv[i] = d.pos
	}
	for li := range m.layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m.block(d.h, d.posv, d.b, li, d.maxLen, func() { d.attend(li) })
		for i, v := range d.h {
			if v != v || math.IsInf(float64(v), 0) {
				return nil, &NonFiniteError{Where: fmt.Sprintf("layer %d (%s*)", li, LayerPrefix(li)), Seq: i / hd, Pos: d.pos}
			}
		}
	}
	nw := workers(m.Workers)
	m.rmsNorm(d.xn, d.h, d.n, m.norm, nw)
	linear(d.logits, d.xn, d.n, m.lmHead, nil, nw)
	for i, v := range d.logits {
		if v != v || math.IsInf(float64(v), 0) {
			return nil, &NonFiniteError{Where: "lm_head (the output layer)", Seq: i / c.Vocab, Pos: d.pos}
		}
	}
	d.pos++
	return d.logits, nil
}

// attend appends this step's keys and values to layer li's cache and
// attends every (sequence, head) over the cached positions.
func (d *Decoder) attend(li int) {
	m, c := d.m, &d.m.Cfg
	hd, qd, kvd := c.HeadDim, c.QDim(), c.KVDim()
	group := c.Heads / c.KVHeads
	kc, vc := d.kc[li], d.vc[li]
	b := d.b
	t := d.pos
	for i := 0; i < d.n; i++ {
		copy(kc[(i*d.maxLen+t)*kvd:(i*d.maxLen+t+1)*kvd], b.k[i*kvd:(i+1)*kvd])
		copy(vc[(i*d.maxLen+t)*kvd:(i*d.maxLen+t+1)*kvd], b.v[i*kvd:(i+1)*kvd])
	}
	scale := float32(1 / math.Sqrt(float64(hd)))
	lo := 0
	if c.SlidingWindow > 0 {
		lo = max(0, t-c.SlidingWindow+1)
	}
	parallel(workers(m.Workers), d.n*c.Heads, func(g, task int) {
		if d.probs[g] == nil {
			d.probs[g] = make([]float32, 2*d.maxLen)
		}
		s, p := d.probs[g][:t+1], d.probs[g][d.maxLen:d.maxLen+t+1]
		i, h := task/c.Heads, task%c.Heads
		kh := h / group
		base := i * d.maxLen * kvd
		gemmNT(s, 1, b.q[i*qd+h*hd:], qd, 1, kc[base+kh*hd:], kvd, t+1, hd)
		softmaxRow(p, s, lo, t+1, scale)
		out := b.att[i*qd+h*hd : i*qd+(h+1)*hd]
		for j := range out {
			out[j] = 0
		}
		for sp := lo; sp <= t; sp++ {
			w := p[sp]
			vr := vc[base+sp*kvd+kh*hd : base+sp*kvd+(kh+1)*hd]
			for j, x := range vr {
				out[j] += float32(w * x)
			}
		}
	})
}
