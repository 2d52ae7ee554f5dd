package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// On a terminal, compress draws a bar on stderr (never stdout); with
// --quiet or --json, or when stderr is not a terminal, it draws nothing.
func TestProgressOnlyOnTerminal(t *testing.T) {
	dir, in := testModelIn(t, nil)
	old := isTerminal
	defer func() { isTerminal = old }()
	for _, c := range []struct {
		name        string
		term        bool
		quiet, json bool
		wantBar     bool
	}{
		{"terminal", true, false, false, true},
		{"terminal quiet", true, true, false, false},
		{"terminal json", true, false, true, false},
		{"pipe", false, false, false, false},
	} {
		isTerminal = func(io.Writer) bool { return c.term }
		var stdout, stderr bytes.Buffer
		o := &compressOptions{Output: filepath.Join(dir, "m.seedlm"), Force: true, Quiet: c.quiet, JSON: c.json, Settings: eightBits()}
		if err := runCompress(context.Background(), o, []string{in}, &stdout, &stderr); err != nil {
			t.Fatal(err)
		}
		gotBar := strings.Contains(stderr.String(), "weights")
		if gotBar != c.wantBar {
			t.Errorf("%s: progress on stderr = %v, want %v (stderr %q)", c.name, gotBar, c.wantBar, stderr.String())
		}
		if strings.Contains(stdout.String(), "\r") || strings.Contains(stdout.String(), "\x1b[") {
			t.Errorf("%s: progress leaked to stdout: %q", c.name, stdout.String())
		}
		if c.quiet && stdout.Len() != 0 {
			t.Errorf("%s: stdout %q, want nothing", c.name, stdout.String())
		}
	}
}

// The bar's text keeps one width whatever the numbers, its rate is
// smoothed (bursty progress does not swing the ETA), and nothing is drawn
// after Done (a worker finishing a block after Ctrl-C cannot redraw over
// the error).
func TestProgressSmoothFixedAndFinal(t *testing.T) {
	oldTerm, oldNow := isTerminal, now
	defer func() { isTerminal, now = oldTerm, oldNow }()
	isTerminal = func(io.Writer) bool { return true }
	clock := time.Unix(1000, 0)
	now = func() time.Time { return clock }
	var out bytes.Buffer
	const total = 10_000_000
	p := newProgress(&out, true, total, "encoding", "weights")
	p.Describe(shortName("model.layers.0.mlp.up_proj.weight"))
	width := utf8.RuneCountInString(p.describe())
	// 100 s of work at 50,000 weights/s on average, arriving in bursts: a
	// whole tensor's 250,000 weights at once every 5 s.
	var etas []float64
	for s := 1; s <= 100; s++ {
		clock = clock.Add(time.Second)
		if s%5 == 0 {
			p.Add(250_000)
		} else {
			p.Add(0)
		}
		if got := utf8.RuneCountInString(p.describe()); got != width {
			t.Fatalf("after %d s the text is %d wide, at the start %d: %q", s, got, width, p.describe())
		}
		if s >= 20 {
			// ETA over the true remaining time at the real 50,000/s.
			etas = append(etas, (float64(total-p.done)/p.rate)/(float64(total-p.done)/50_000))
		}
	}
	lo, hi := etas[0], etas[0]
	for _, e := range etas {
		lo, hi = min(lo, e), max(hi, e)
	}
	// A per-second rate would swing between 0 and 250,000/s (ETA ∞ to a
	// fifth of the truth); the smoothed one stays near the truth.
	if lo < 0.75 || hi > 1.33 {
		t.Errorf("ETA ranged %.2f–%.2f × the true remaining time, want within 0.75–1.33", lo, hi)
	}
	if !strings.Contains(p.describe(), "encoding") || !strings.Contains(p.describe(), "5,000,000/10,000,000 weights") {
		t.Errorf("text %q", p.describe())
	}
	p.Done()
	n := out.Len()
	p.Add(1000)
	p.Describe("late")
	p.Done()
	if out.Len() != n {
		t.Errorf("drew %q after Done", out.String()[n:])
	}
	if !strings.HasSuffix(out.String(), "\r\x1b[K") && !strings.Contains(out.String()[max(0, n-20):], "\x1b[") {
		t.Errorf("Done did not clear the line: %q", out.String()[max(0, n-40):])
	}
}

// The measuring pass of a size target has its own labelled bar, counting
// tensors; it is gone before the encoding bar starts.
func TestProgressMeasuringBar(t *testing.T) {
	dir, in := testModelIn(t, nil)
	old := isTerminal
	defer func() { isTerminal = old }()
	isTerminal = func(io.Writer) bool { return true }
	var stdout, stderr bytes.Buffer
	s := eightBits()
	s.Flags.TargetBPW = 7
	o := &compressOptions{Output: filepath.Join(dir, "m.seedlm"), Settings: s}
	if err := runCompress(context.Background(), o, []string{in}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	e := stderr.String()
	m, enc := strings.Index(e, "measuring"), strings.Index(e, "encoding")
	if m < 0 || enc < m || !strings.Contains(e[m:enc], "tensors") || strings.Contains(e[m:enc], "weights") {
		t.Errorf("want a measuring bar counting tensors, then the encoding bar; stderr %q", e)
	}
}
