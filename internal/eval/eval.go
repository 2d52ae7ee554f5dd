package eval

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/seedlm/seedlm/internal/model"
)

// Result is the comparison of a candidate with the original on one text.
type Result struct {
	// KL(original ‖ candidate) in nats over the next-token distributions of
	// every scored position: mean, 95th percentile (nearest rank) and max.
	KLMean float64 `json:"kl_mean"`
	KLP95  float64 `json:"kl_p95"`
	KLMax  float64 `json:"kl_max"`
	// Top1 is the fraction of positions where both models' most likely
	// next token is the same (ties to the lower id).
	Top1 float64 `json:"top1_agreement"`
	// Perplexity of each model on the text's actual next tokens.
	PPLOriginal  float64 `json:"ppl_original"`
	PPLCandidate float64 `json:"ppl_candidate"`
	// Tokens is the number of scored positions.
	Tokens int `json:"tokens"`
}

// Reference is the original model's view of a text: the log-probabilities
// of every scored position (float32, Tokens × Vocab), its top-1 tokens and
// its perplexity. Candidates are compared against it without the original
// in memory.
type Reference struct {
	Text   *Text
	V      int
	logp   []float32 // [k·V + i]
	top1   []int32
	nll    float64
	offset []int // first position index k of each sequence
}

// BatchTokens bounds the tokens scored in one forward batch (activations
// grow with it; larger batches amortize nothing further).
const BatchTokens = 4096

// Inputs are the token lists the models are fed: each sequence without its
// last token (no prediction is scored after it).
func (r *Reference) Inputs() [][]int {
	out := make([][]int, len(r.Text.Seqs))
	for i, s := range r.Text.Seqs {
		out[i] = s[:len(s)-1]
	}
	return out
}

// Index is the position index k of the prediction after token pos of
// sequence seq.
func (r *Reference) Index(seq, pos int) int { return r.offset[seq] + pos }

// Tokens is the number of scored positions.
func (r *Reference) Tokens() int { return len(r.top1) }

// ReferenceBytes is the memory a Reference of tokens positions takes.
func ReferenceBytes(tokens, vocab int) int64 { return int64(tokens) * (int64(vocab)*4 + 4) }

// Score runs m teacher-forced over inputs in batches of at most
// BatchTokens tokens, calling each(seq, pos, logits) in order.
// progress (optional) gets the tokens done after each layer of each batch,
// counting a batch's tokens in proportion to the layers it has run.
func Score(ctx context.Context, m *model.Model, inputs [][]int, progress func(done, total int64), each func(seq, pos int, logits []float32) error) error {
	var total, done int64
	for _, s := range inputs {
		total += int64(len(s))
	}
	L := m.Cfg.Layers
	for b0 := 0; b0 < len(inputs); {
		b1, rows := b0, 0
		for b1 < len(inputs) && (b1 == b0 || rows+len(inputs[b1]) <= BatchTokens) {
			rows += len(inputs[b1])
			b1++
		}
		st, err := m.Embed(inputs[b0:b1])
		if err != nil {
			return err
		}
		for l := 0; l < L; l++ {
			if err := m.RunLayers(ctx, st, l+1); err != nil {
				return err
			}
			if progress != nil {
				progress(done+int64(rows)*int64(l+1)/int64(L+1), total)
			}
		}
		base := b0
		if err := m.Logits(ctx, st, func(si, pos int, lg []float32) error { return each(base+si, pos, lg) }); err != nil {
			return err
		}
		done += int64(rows)
		if progress != nil {
			progress(done, total)
		}
		b0 = b1
	}
	return nil
}

// NewReference scores text with the original model.
func NewReference(ctx context.Context, m *model.Model, text *Text, progress func(done, total int64)) (*Reference, error) {
	V := m.Cfg.Vocab
	r := &Reference{Text: text, V: V, offset: make([]int, len(text.Seqs))}
	k := 0
	for i, s := range text.Seqs {
		if len(s) < 2 {
			return nil, fmt.Errorf("evaluation sequence %d has %d token(s); at least 2 are needed", i, len(s))
		}
		r.offset[i] = k
		k += len(s) - 1
	}
	r.logp = make([]float32, k*V)
	r.top1 = make([]int32, k)
	lp := make([]float64, V)
	err := Score(ctx, m, r.Inputs(), progress, func(si, pos int, lg []float32) error {
		k := r.Index(si, pos)
		model.LogSoftmax(lp, lg)
		dst := r.logp[k*V : (k+1)*V]
		for i, v := range lp {
			dst[i] = float32(v)
		}
		r.top1[k] = int32(argmax(lg))
		r.nll -= float64(dst[text.Seqs[si][pos+1]])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func argmax(lg []float32) int {
	best := 0
	for i, v := range lg {
		if v > lg[best] {
			best = i
		}
	}
	return best
}

// Accumulator compares a candidate's logits with the reference, one
// position at a time in any order; Result sums in position order.
type Accumulator struct {
	r     *Reference
	kl    []float64
	agree []bool
	nll   []float64
	seen  []bool
	lq    []float64
}

// NewAccumulator starts a comparison. Not safe for concurrent use.
func (r *Reference) NewAccumulator() *Accumulator {
	n := r.Tokens()
	return &Accumulator{r: r, kl: make([]float64, n), agree: make([]bool, n), nll: make([]float64, n), seen: make([]bool, n), lq: make([]float64, r.V)}
}

// Add records the candidate's logits for the prediction after token pos of
// sequence seq.
func (a *Accumulator) Add(seq, pos int, logits []float32) {
	r := a.r
	k := r.Index(seq, pos)
	V := r.V
	model.LogSoftmax(a.lq, logits)
	lp := r.logp[k*V : (k+1)*V]
	var kl float64
	for i, p := range lp {
		q := float64(float32(a.lq[i])) // the reference's rounding: identical models give exactly 0
		if d := float64(p) - q; d != 0 {
			kl += float64(model.Exp(float64(p)) * d) // rounded: no fused multiply-add
		}
	}
	// Rounding of the float32 log-probabilities can leave a few 1e−9 below
	// zero where the distributions are (nearly) equal; KL is never negative.
	a.kl[k] = max(0, kl)
	a.agree[k] = argmax(logits) == int(r.top1[k])
	a.nll[k] = -float64(float32(a.lq[r.Text.Seqs[seq][pos+1]]))
	a.seen[k] = true
}

// Result summarizes the positions added so far (all of them, normally).
func (a *Accumulator) Result() (*Result, error) {
	r := a.r
	n := len(a.kl)
	for k, s := range a.seen {
		if !s {
			return nil, fmt.Errorf("internal: position %d of %d was not scored", k, n)
		}
	}
	res := &Result{Tokens: n}
	var kl, nll float64
	agree := 0
	for k := 0; k < n; k++ {
		kl += a.kl[k]
		nll += a.nll[k]
		res.KLMax = max(res.KLMax, a.kl[k])
		if a.agree[k] {
			agree++
		}
	}
	res.KLMean = kl / float64(n)
	sorted := append([]float64(nil), a.kl...)
	sort.Float64s(sorted)
	res.KLP95 = sorted[max(0, int(math.Ceil(0.95*float64(n)))-1)]
	res.Top1 = float64(agree) / float64(n)
	res.PPLOriginal = model.Exp(r.nll / float64(n))
	res.PPLCandidate = model.Exp(nll / float64(n))
	return res, nil
}

// KL returns the KL of every position added so far (position order).
func (a *Accumulator) KL() []float64 { return a.kl }

// Compare scores the candidate on the reference's text.
func (r *Reference) Compare(ctx context.Context, cand *model.Model, progress func(done, total int64)) (*Result, error) {
	if cand.Cfg.Vocab != r.V {
		return nil, fmt.Errorf("candidate vocabulary %d, original %d", cand.Cfg.Vocab, r.V)
	}
	acc := r.NewAccumulator()
	err := Score(ctx, cand, r.Inputs(), progress, func(si, pos int, lg []float32) error {
		acc.Add(si, pos, lg)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return acc.Result()
}
