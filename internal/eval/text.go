// Package eval measures how far a compressed model's predictions are from
// the original's: KL(original ‖ candidate) over next-token distributions,
// top-1 agreement and perplexity, on text sampled from the original (or
// supplied as token ids).
//
// The protocol (docs/QUALITY.md): N sequences of T tokens sampled from the
// original at temperature 1 from BOS with a fixed seed; both models scored
// teacher-forced on them; every number is the same on every run, machine and
// worker count.
package eval

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/seedlm/seedlm/internal/model"
)

// Text is evaluation text: token sequences. Each sequence is scored on
// every token after its first (the first is context only).
type Text struct {
	Seqs [][]int
	// Source describes where the text came from, for reports.
	Source string
	// Notes are adjustments made (a length capped to the context).
	Notes []string
}

// Tokens is the number of scored positions (tokens after each first one).
func (t *Text) Tokens() int {
	n := 0
	for _, s := range t.Seqs {
		n += max(0, len(s)-1)
	}
	return n
}

// SampleOptions set the sampled evaluation text.
type SampleOptions struct {
	Samples int    // sequences (default 16)
	Tokens  int    // tokens sampled after BOS per sequence (default 128)
	Seed    uint64 // sequence i draws from its own stream seeded by (Seed, i)
	// Progress, when set, is called after each sampled position with the
	// tokens sampled so far and the total.
	Progress func(done, total int64)
}

// Defaults of the protocol.
const (
	DefaultSamples = 16
	DefaultTokens  = 128
	DefaultSeed    = 1
)

// CapTokens limits tokens per sample to the context length (BOS takes one
// position) and returns the note to report, or "".
func CapTokens(c *model.Config, tokens int) (int, string) {
	if tokens+1 <= c.MaxPos {
		return tokens, ""
	}
	n := c.MaxPos - 1
	return n, fmt.Sprintf("--tokens-per-sample %d capped to %d: the model's context is %d positions (max_position_embeddings), one of them BOS", tokens, n, c.MaxPos)
}

// Sample draws opt.Samples sequences of opt.Tokens tokens from m at
// temperature 1, each starting with BOS, with a KV-cached decoder over all
// sequences at once. Sequence i depends only on (Seed, i), not on Samples.
func Sample(ctx context.Context, m *model.Model, opt SampleOptions) (*Text, error) {
	n, T := opt.Samples, opt.Tokens
	if n <= 0 {
		n = DefaultSamples
	}
	if T <= 0 {
		T = DefaultTokens
	}
	T, note := CapTokens(&m.Cfg, T)
	if T <= 0 {
		return nil, fmt.Errorf("the model's context (%d positions) leaves no room to sample after BOS", m.Cfg.MaxPos)
	}
	dec, err := m.NewDecoder(n, T)
	if err != nil {
		return nil, err
	}
	rngs := make([]splitmix, n)
	seqs := make([][]int, n)
	cur := make([]int, n)
	for i := range seqs {
		rngs[i] = newStream(opt.Seed, uint64(i))
		seqs[i] = make([]int, 1, T+1)
		seqs[i][0] = m.Cfg.BOS
		cur[i] = m.Cfg.BOS
	}
	V := m.Cfg.Vocab
	for t := 0; t < T; t++ {
		lg, err := dec.Step(ctx, cur)
		if err != nil {
			return nil, fmt.Errorf("sampling the evaluation text: %w", err)
		}
		for i := range seqs {
			tok := model.SampleToken(lg[i*V:(i+1)*V], rngs[i].float64())
			seqs[i] = append(seqs[i], tok)
			cur[i] = tok
		}
		if opt.Progress != nil {
			opt.Progress(int64(t+1)*int64(n), int64(T)*int64(n))
		}
	}
	txt := &Text{Seqs: seqs, Source: fmt.Sprintf("%d sequences × %d tokens sampled from the original at temperature 1 from BOS (token %d), seed %d", n, T, m.Cfg.BOS, opt.Seed)}
	if note != "" {
		txt.Notes = append(txt.Notes, note)
	}
	return txt, nil
}

// splitmix is SplitMix64: small, fast, and specified here (not by a library
// whose algorithm could change), so sampled text never changes.
type splitmix struct{ s uint64 }

func newStream(seed, i uint64) splitmix {
	r := splitmix{seed ^ 0x9e3779b97f4a7c15*(i+1)}
	r.next()
	return r
}

func (r *splitmix) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// float64 is uniform in [0, 1) with 53 random bits.
func (r *splitmix) float64() float64 { return float64(r.next()>>11) / (1 << 53) }

// ReadTokens reads evaluation text from a token file (docs/QUALITY.md):
//
//   - plain text: one sequence per line, token ids separated by spaces,
//     tabs or commas; empty lines and lines starting with # are skipped;
//   - JSON: an array of arrays of token ids ([[1, 15, 27], [1, 9]]).
//
// Sequences are used as given (add the BOS id yourself if the model expects
// it); each is scored on every token after its first. A sequence longer
// than the model's context is cut to it, with a note.
func ReadTokens(path string, c *model.Config) (*Text, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	var seqs [][]int
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &seqs); err != nil {
			return nil, fmt.Errorf("%s: not a JSON array of arrays of token ids: %v", path, err)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 1<<30)
		line := 0
		for sc.Scan() {
			line++
			s := strings.TrimSpace(sc.Text())
			if s == "" || strings.HasPrefix(s, "#") {
				continue
			}
			var seq []int
			for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }) {
				v, err := strconv.Atoi(f)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: %q is not a token id; hint: one sequence per line, integer ids separated by spaces", path, line, f)
				}
				seq = append(seq, v)
			}
			seqs = append(seqs, seq)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	txt := &Text{Source: "token file " + path}
	cut := 0
	for i, s := range seqs {
		for j, v := range s {
			if v < 0 || v >= c.Vocab {
				return nil, fmt.Errorf("%s: sequence %d, token %d: id %d outside the vocabulary [0, %d)", path, i+1, j+1, v, c.Vocab)
			}
		}
		if len(s) > c.MaxPos {
			s = s[:c.MaxPos]
			cut++
		}
		if len(s) >= 2 {
			txt.Seqs = append(txt.Seqs, s)
		}
	}
	if cut > 0 {
		txt.Notes = append(txt.Notes, fmt.Sprintf("%d sequence(s) cut to the model's context of %d tokens", cut, c.MaxPos))
	}
	if txt.Tokens() == 0 {
		return nil, fmt.Errorf("%s holds no sequence of two or more tokens to score; hint: one sequence per line, integer ids separated by spaces", path)
	}
	return txt, nil
}
