package main

import (
	"io"
	"os"
	"sync"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports weights done on stderr. It is a no-op unless stderr is a
// terminal and neither --quiet nor --json is set.
type progress struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

// isTerminal reports whether w is a terminal (a var so tests can force it).
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newProgress(w io.Writer, enabled bool, total int64, desc string) *progress {
	return newProgressUnit(w, enabled, total, desc, "weights")
}

// newProgressUnit is newProgress counting unit ("tokens" for eval).
func newProgressUnit(w io.Writer, enabled bool, total int64, desc, unit string) *progress {
	if !enabled || total <= 0 || !isTerminal(w) {
		return &progress{}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100_000_000), // 100 ms
		progressbar.OptionClearOnFinish(),
		progressbar.OptionUseANSICodes(true),
	)
	return &progress{bar: bar}
}

// Add is safe for concurrent use (the encoder calls it from workers).
func (p *progress) Add(n int64) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	_ = p.bar.Add64(n)
	p.mu.Unlock()
}

func (p *progress) Describe(s string) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	p.bar.Describe(s)
	p.mu.Unlock()
}

// Done clears the bar (on success or failure) so the summary or error starts
// on a clean line.
func (p *progress) Done() {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	_ = p.bar.Finish()
	_ = p.bar.Clear()
	p.mu.Unlock()
}
