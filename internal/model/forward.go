package model

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/seedlm/seedlm/internal/detmath"
)

// State is a batch of sequences between decoder layers: the hidden state of
// every token, row after row (sequence after sequence). Keeping it lets a
// caller rerun only the layers after a change (sensitivity probes).
type State struct {
	Seqs  [][]int
	H     []float32 // [Rows, Hidden]
	Layer int       // the next layer to run (Layers: ready for Logits)
	start []int     // first row of each sequence
	pos   []int     // position of each row in its sequence
}

// Rows is the number of tokens in the batch.
func (s *State) Rows() int { return len(s.pos) }

// Clone copies the hidden states (the token lists are shared).
func (s *State) Clone() *State {
	c := *s
	c.H = append([]float32(nil), s.H...)
	return &c
}

// NonFiniteError reports NaN or Inf activations, naming where they appeared.
type NonFiniteError struct {
	Where    string // "layer 3" or "lm_head"
	Seq, Pos int
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("%s produced NaN/Inf activations (sequence %d, position %d); hint: the weights of that layer are damaged or out of float32 range", e.Where, e.Seq, e.Pos)
}

// Embed starts a batch: each sequence's token embeddings. Token ids must be
// in the vocabulary and sequences no longer than the context length.
func (m *Model) Embed(seqs [][]int) (*State, error) {
	c := &m.Cfg
	st := &State{Seqs: seqs, start: make([]int, len(seqs))}
	rows := 0
	for i, s := range seqs {
		if len(s) > c.MaxPos {
			return nil, fmt.Errorf("sequence %d has %d tokens, more than the context length %d (max_position_embeddings)", i, len(s), c.MaxPos)
		}
		st.start[i] = rows
		rows += len(s)
	}
	st.pos = make([]int, 0, rows)
	d := c.Hidden
	st.H = make([]float32, rows*d)
	for i, s := range seqs {
		for p, tok := range s {
			if tok < 0 || tok >= c.Vocab {
				return nil, fmt.Errorf("sequence %d position %d: token id %d outside the vocabulary [0, %d)", i, p, tok, c.Vocab)
			}
			r := len(st.pos)
			m.embed.widen(st.H[r*d:(r+1)*d], tok*d)
			st.pos = append(st.pos, p)
		}
	}
	return st, nil
}

// buffers are the per-batch activations one layer needs.
type buffers struct {
	xn, q, k, v, att, tmp, g, u []float32
}

func (m *Model) newBuffers(rows int) *buffers {
	c := &m.Cfg
	return &buffers{
		xn: make([]float32, rows*c.Hidden), q: make([]float32, rows*c.QDim()),
		k: make([]float32, rows*c.KVDim()), v: make([]float32, rows*c.KVDim()),
		att: make([]float32, rows*c.QDim()), tmp: make([]float32, rows*c.Hidden),
		g: make([]float32, rows*c.Intermediate), u: make([]float32, rows*c.Intermediate),
	}
}

// ActivationBytes estimates the memory of a batch of rows tokens in the
// teacher-forced pass (hidden states, one layer's buffers, attention
// scratch, one chunk of logits), for the memory check before loading.
func (c *Config) ActivationBytes(rows, maxLen, nw int) int64 {
	per := int64(2*c.Hidden+2*c.QDim()+2*c.KVDim()+c.Hidden+2*c.Intermediate) * 4
	scratch := int64(nw) * int64(maxLen*maxLen+c.HeadDim*maxLen) * 4
	return int64(rows)*per + scratch + int64(min(rows, logitRows(c.Vocab)))*int64(c.Vocab+c.Hidden)*4
}

// RunLayers runs decoder layers st.Layer … to−1 in place.
func (m *Model) RunLayers(ctx context.Context, st *State, to int) error {
	if to > len(m.layers) {
		to = len(m.layers)
	}
	if st.Layer >= to {
		return nil
	}
	b := m.newBuffers(st.Rows())
	for ; st.Layer < to; st.Layer++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.layer(st, b, st.Layer)
		if seq, pos, bad := firstNonFinite(st, st.H, m.Cfg.Hidden); bad {
			return &NonFiniteError{Where: fmt.Sprintf("layer %d (%s*)", st.Layer, LayerPrefix(st.Layer)), Seq: seq, Pos: pos}
		}
	}
	return nil
}

func firstNonFinite(st *State, x []float32, width int) (seq, pos int, bad bool) {
	for i, v := range x {
		if v != v || math.IsInf(float64(v), 0) {
			r := i / width
			for s := len(st.start) - 1; s >= 0; s-- {
				if st.start[s] <= r {
					return s, r - st.start[s], true
				}
			}
		}
	}
	return 0, 0, false
}

// layer runs decoder layer li on st.H.
func (m *Model) layer(st *State, b *buffers, li int) {
	m.block(st.H, st.pos, b, li, maxLen(st.Seqs), func() { m.attention(st, b) })
}

// block is one decoder layer on the rows of h (positions pos): attention
// (attn reads b.q, b.k, b.v and writes b.att) and the SwiGLU MLP, each with
// its residual.
func (m *Model) block(h []float32, pos []int, b *buffers, li, ropeLen int, attn func()) {
	c := &m.Cfg
	L := &m.layers[li]
	rows, d := len(pos), c.Hidden
	nw := workers(m.Workers)
	m.rmsNorm(b.xn, h, rows, L.attnNorm, nw)
	linear(b.q, b.xn, rows, L.q, L.qb, nw)
	linear(b.k, b.xn, rows, L.k, L.kb, nw)
	linear(b.v, b.xn, rows, L.v, L.vb, nw)
	rt := m.ropeFor(ropeLen)
	m.applyRope(b.q, pos, c.Heads, rt, nw)
	m.applyRope(b.k, pos, c.KVHeads, rt, nw)
	attn()
	linear(b.tmp, b.att, rows, L.o, L.ob, nw)
	addInto(h, b.tmp[:rows*d])
	m.rmsNorm(b.xn, h, rows, L.mlpNorm, nw)
	linear(b.g, b.xn, rows, L.gate, nil, nw)
	linear(b.u, b.xn, rows, L.up, nil, nw)
	swiglu(b.g[:rows*c.Intermediate], b.u, nw)
	linear(b.tmp, b.g, rows, L.down, nil, nw)
	addInto(h, b.tmp[:rows*d])
}

func maxLen(seqs [][]int) int {
	n := 0
	for _, s := range seqs {
		n = max(n, len(s))
	}
	return n
}

func addInto(dst, src []float32) {
	for i, v := range src {
		dst[i] += v
	}
}

// rmsNorm: y = x / sqrt(mean(x²) + eps) · w, the mean in float64 (exact
// products, sequential sum), per row.
func (m *Model) rmsNorm(y, x []float32, rows int, w []float32, nw int) {
	d := m.Cfg.Hidden
	eps := m.Cfg.RMSEps
	chunk := max(1, 4096/d)
	parallel(nw, (rows+chunk-1)/chunk, func(_, ci int) {
		for r := ci * chunk; r < min(rows, (ci+1)*chunk); r++ {
			rmsRow(y[r*d:(r+1)*d], x[r*d:(r+1)*d], w, eps)
		}
	})
}

func rmsRow(y, x, w []float32, eps float64) {
	var ss float64
	for _, v := range x {
		ss += float64(float64(v) * float64(v)) // rounded: no fused multiply-add
	}
	inv := float32(1 / math.Sqrt(ss/float64(len(x))+eps))
	for i, v := range x {
		y[i] = float32(v*inv) * w[i]
	}
}

// swiglu sets g = silu(g)·u, silu(x) = x/(1+e^−x) in float64.
func swiglu(g, u []float32, nw int) {
	const chunk = 1 << 14
	parallel(nw, (len(g)+chunk-1)/chunk, func(_, ci int) {
		for i := ci * chunk; i < min(len(g), (ci+1)*chunk); i++ {
			x := float64(g[i])
			g[i] = float32(x/(1+expDet(-x))) * u[i]
		}
	})
}

// ropeTable holds cos and sin of position·θ^(−2i/d) for i < d/2, as float32.
type ropeTable struct {
	n, half  int
	cos, sin []float32
}

var ropeMu sync.Mutex

// ropeFor returns a table covering positions < n (grown on demand; models
// share nothing, but one model may be used from several goroutines).
func (m *Model) ropeFor(n int) *ropeTable {
	ropeMu.Lock()
	defer ropeMu.Unlock()
	if m.rope != nil && m.rope.n >= n {
		return m.rope
	}
	half := m.Cfg.HeadDim / 2
	t := &ropeTable{n: n, half: half, cos: make([]float32, n*half), sin: make([]float32, n*half)}
	lt := detmath.Log(m.Cfg.RopeTheta)
	freq := make([]float64, half)
	for i := range freq {
		freq[i] = expDet(-float64(float64(2*i)/float64(m.Cfg.HeadDim)) * lt)
	}
	for p := 0; p < n; p++ {
		for i, f := range freq {
			s, c := sinCosDet(float64(float64(p) * f))
			t.cos[p*half+i], t.sin[p*half+i] = float32(c), float32(s)
		}
	}
	m.rope = t
	return t
}

// applyRope rotates each head of x ([rows, heads·HeadDim]) by its row's
// position: HF layout, pairs (i, i+d/2) (rotate_half).
func (m *Model) applyRope(x []float32, pos []int, heads int, t *ropeTable, nw int) {
	hd := m.Cfg.HeadDim
	half := hd / 2
	w := heads * hd
	inter := m.ropeInterleaved
	chunk := max(1, 4096/w)
	rows := len(pos)
	parallel(nw, (rows+chunk-1)/chunk, func(_, ci int) {
		for r := ci * chunk; r < min(rows, (ci+1)*chunk); r++ {
			cs := t.cos[pos[r]*half : (pos[r]+1)*half]
			sn := t.sin[pos[r]*half : (pos[r]+1)*half]
			for h := 0; h < heads; h++ {
				v := x[r*w+h*hd : r*w+(h+1)*hd]
				for i := 0; i < half; i++ {
					i0, i1 := i, i+half
					if inter {
						i0, i1 = 2*i, 2*i+1
					}
					a, b := v[i0], v[i1]
					v[i0] = float32(a*cs[i]) - float32(b*sn[i])
					v[i1] = float32(b*cs[i]) + float32(a*sn[i])
				}
			}
		}
	})
}

// attention computes causal grouped-query attention for every sequence and
// head of the batch into b.att, one (sequence, head) per task.
func (m *Model) attention(st *State, b *buffers) {
	c := &m.Cfg
	hd, qd, kvd := c.HeadDim, c.QDim(), c.KVDim()
	group := c.Heads / c.KVHeads
	T := maxLen(st.Seqs)
	nw := workers(m.Workers)
	type scratch struct{ s, p, vt []float32 }
	scr := make([]*scratch, nw)
	scale := float32(1 / math.Sqrt(float64(hd)))
	tasks := len(st.Seqs) * c.Heads
	parallel(nw, tasks, func(g, task int) {
		if scr[g] == nil {
			scr[g] = &scratch{s: make([]float32, T*T), p: make([]float32, T*T), vt: make([]float32, hd*T)}
		}
		sc := scr[g]
		si, h := task/c.Heads, task%c.Heads
		n := len(st.Seqs[si])
		if n == 0 {
			return
		}
		r0 := st.start[si]
		kh := h / group
		q := b.q[r0*qd+h*hd:]
		k := b.k[r0*kvd+kh*hd:]
		// Scores for rows t0…t0+2 need keys 0…t0+2 only (causal).
		for t0 := 0; t0 < n; t0 += tileR {
			rows := min(tileR, n-t0)
			gemmNT(sc.s[t0*n:], n, q[t0*qd:], qd, rows, k, kvd, min(n, t0+tileR), hd)
		}
		// V transposed: [hd, n], so the weighted sum is a row dot product.
		vt := sc.vt[:hd*n]
		for t := 0; t < n; t++ {
			vr := b.v[(r0+t)*kvd+kh*hd : (r0+t)*kvd+(kh+1)*hd]
			for j, x := range vr {
				vt[j*n+t] = x
			}
		}
		p := sc.p[:n*n]
		for t := 0; t < n; t++ {
			lo := 0
			if c.SlidingWindow > 0 {
				lo = max(0, t-c.SlidingWindow+1)
			}
			softmaxRow(p[t*n:(t+1)*n], sc.s[t*n:], lo, t+1, scale)
		}
		out := b.att[r0*qd+h*hd:]
		for t0 := 0; t0 < n; t0 += tileR {
			rows := min(tileR, n-t0)
			// Probabilities past t are zero: summing to t0+3 is exact.
			gemmNT(out[t0*qd:], qd, p[t0*n:], n, rows, vt, n, hd, min(n, t0+tileR))
		}
	})
}

// softmaxRow sets p[lo:hi] to softmax(scale·s[lo:hi]) (exp in float64) and
// the rest of p to zero.
func softmaxRow(p, s []float32, lo, hi int, scale float32) {
	mx := float32(math.Inf(-1))
	for j := lo; j < hi; j++ {
		mx = max(mx, float32(s[j]*scale))
	}
	var sum float64
	for j := range p {
		if j < lo || j >= hi {
			p[j] = 0
			continue
		}
		e := expDet(float64(float32(s[j]*scale) - mx))
		sum += e
		p[j] = float32(e)
	}
	inv := 1 / sum
	for j := lo; j < hi; j++ {
		p[j] = float32(float64(p[j]) * inv)
	}
}

// logitRows is how many rows of logits are computed at once: up to 64 MiB
// of them (at least 64 rows), since every chunk streams all of lm_head
// through the cache once.
func logitRows(vocab int) int { return min(4096, max(64, (64<<20)/(4*vocab))) }

// Logits applies the final norm and lm_head to every row of a state that
// has run all layers, in order, calling each(seq, pos, logits) per token;
// logits is reused after each returns.
func (m *Model) Logits(ctx context.Context, st *State, each func(seq, pos int, logits []float32) error) error {
	if st.Layer < len(m.layers) {
		return fmt.Errorf("internal: logits of a state at layer %d of %d", st.Layer, len(m.layers))
	}
	c := &m.Cfg
	d, V := c.Hidden, c.Vocab
	nw := workers(m.Workers)
	chunk := logitRows(V)
	xn := make([]float32, chunk*d)
	lg := make([]float32, chunk*V)
	rowSeq := make([]int, 0, st.Rows())
	for si, s := range st.Seqs {
		for range s {
			rowSeq = append(rowSeq, si)
		}
	}
	for r0 := 0; r0 < st.Rows(); r0 += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(chunk, st.Rows()-r0)
		m.rmsNorm(xn, st.H[r0*d:(r0+n)*d], n, m.norm, nw)
		linear(lg, xn, n, m.lmHead, nil, nw)
		for i := 0; i < n; i++ {
			row := lg[i*V : (i+1)*V]
			si, pos := rowSeq[r0+i], st.pos[r0+i]
			for _, v := range row {
				if v != v || math.IsInf(float64(v), 0) {
					return &NonFiniteError{Where: "lm_head (the output layer)", Seq: si, Pos: pos}
				}
			}
			if err := each(si, pos, row); err != nil {
				return err
			}
		}
	}
	return nil
}

// Forward scores sequences teacher-forced: each(seq, pos, logits) gets the
// next-token logits after every token, in order.
func (m *Model) Forward(ctx context.Context, seqs [][]int, each func(seq, pos int, logits []float32) error) error {
	st, err := m.Embed(seqs)
	if err != nil {
		return err
	}
	if err := m.RunLayers(ctx, st, len(m.layers)); err != nil {
		return err
	}
	return m.Logits(ctx, st, each)
}
