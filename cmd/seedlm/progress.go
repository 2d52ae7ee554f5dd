package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports work done on stderr: a labelled bar of fixed width
// ("encoding  45% |█████     | 20,480/45,312 weights · 310,000/s · ETA
// 12s · …q_proj.weight"). It is a no-op unless stderr is a terminal and
// neither --quiet nor --json is set.
//
// The rate is smoothed (an exponential moving average with a 30 s time
// constant, started from the average so far), so the ETA does not swing
// with the size of the tensor in flight; every field has a fixed width, so
// the bar does not move as numbers grow. Done clears the line, and after it
// nothing draws again (workers still finishing a block after Ctrl-C cannot
// redraw over the error).
type progress struct {
	mu     sync.Mutex
	bar    *progressbar.ProgressBar
	label  string
	unit   string
	total  int64
	done   int64
	start  time.Time
	last   time.Time // last rate update
	lastN  int64     // done at last
	rate   float64   // smoothed units per second
	item   string    // what is being worked on
	drawn  time.Time // last description update
	closed bool
}

// isTerminal reports whether w is a terminal (a var so tests can force it).
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// now is the clock (a var so tests can drive it).
var now = time.Now

// rateTau is the time constant of the rate's moving average.
const rateTau = 30 * time.Second

// newProgress starts a bar labelled label ("measuring", "encoding")
// counting total units ("tensors", "weights").
func newProgress(w io.Writer, enabled bool, total int64, label, unit string) *progress {
	p := &progress{label: label, unit: unit, total: total, start: now()}
	p.last = p.start
	if !enabled || total <= 0 || !isTerminal(w) {
		return p
	}
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionUseANSICodes(true),
	)
	p.bar.Describe(p.describe())
	return p
}

// Add counts n more units done; safe for concurrent use (the encoder's
// workers call it).
func (p *progress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil || p.closed {
		return
	}
	p.done += n
	t := now()
	p.update(t)
	if t.Sub(p.drawn) >= 200*time.Millisecond {
		p.drawn = t
		p.bar.Describe(p.describe())
	}
	_ = p.bar.Add64(n)
}

// update folds the units done since the last update into the smoothed
// rate.
func (p *progress) update(t time.Time) {
	dt := t.Sub(p.last)
	if dt < 100*time.Millisecond {
		return
	}
	inst := float64(p.done-p.lastN) / dt.Seconds()
	if el := t.Sub(p.start); el < 2*time.Second || p.rate == 0 {
		p.rate = float64(p.done) / max(el.Seconds(), 1e-9) // the average until it settles
	} else {
		a := 1 - math.Exp(-dt.Seconds()/rateTau.Seconds())
		p.rate += float64(a * (inst - p.rate)) // no fused multiply-add anywhere (TestCrossArch)
	}
	p.last, p.lastN = t, p.done
}

// describe is the text after the bar, each field padded to a fixed width.
func (p *progress) describe() string {
	w := len(commas(p.total))
	eta := "--"
	if p.rate > 0 && now().Sub(p.start) >= time.Second {
		eta = fmtETA(float64(p.total-p.done) / p.rate)
	}
	rate := "--"
	if p.rate > 0 {
		rate = commas(int64(math.Round(p.rate)))
	}
	return fmt.Sprintf("%-9s %*s/%s %s · %11s/s · ETA %-7s %s", p.label, w, commas(p.done), commas(p.total), p.unit, rate, eta, p.item)
}

// fmtETA rounds a remaining time so it does not flicker: whole seconds
// under a minute, 5 s steps under an hour, then minutes.
func fmtETA(s float64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%.0fs", math.Ceil(s))
	case s < 3600:
		t := int(math.Ceil(s/5) * 5)
		return fmt.Sprintf("%dm%02ds", t/60, t%60)
	}
	m := int(math.Ceil(s / 60))
	return fmt.Sprintf("%dh%02dm", m/60, m%60)
}

// Stage names what is being done and shows it at once (a planning stage
// that adds no units: sensitivity probes, a max_kl search step).
func (p *progress) Stage(s string) { p.name(s, true) }

// Describe names the item being worked on (a tensor), shown after the
// numbers when the bar next moves.
func (p *progress) Describe(s string) { p.name(s, false) }

func (p *progress) name(s string, draw bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil || p.closed {
		return
	}
	p.item = s
	if draw {
		p.bar.Describe(p.describe())
	}
}

// Done clears the bar (on success or failure) so the summary or error starts
// on a clean line; later calls draw nothing.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil || p.closed {
		return
	}
	p.closed = true
	_ = p.bar.Clear()
	_ = p.bar.Exit()
}
