// Command streamcurve prints the stream budget curve of a .seedlm archive
// as Markdown: for budgets from the smallest possible archive (base layers
// and exactly stored tensors) to the full size, what `seedlm stream` writes
// (real bytes on disk) and the total relative weight error and SNR of the
// coded tensors. Each point is written for real with archive.Stream (the
// code behind `seedlm stream`) into a temporary folder and measured there.
//
// Each row also gives the error of a partial download of the same number
// of bytes: the first N bytes of the full archive, opened allowing a
// partial file (what `decompress --allow-partial` decodes).
//
// A second table compares stream with the uniform cut `decompress --layers
// k` makes: the same k layers for every tensor, against stream at the same
// byte budget.
//
//	go run ./scripts/streamcurve [-points 11] [-budgets 30000,60000] ARCHIVE
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/seedlm/seedlm/internal/archive"
)

func main() {
	points := flag.Int("points", 11, "budgets evenly spaced from the minimum to the full size, both included")
	budgetsFlag := flag.String("budgets", "", "comma-separated budgets in bytes, instead of -points")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: streamcurve [-points N | -budgets B1,B2,...] ARCHIVE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *points < 2 {
		flag.Usage()
		os.Exit(2)
	}
	if err := curve(flag.Arg(0), *points, *budgetsFlag); err != nil {
		fmt.Fprintln(os.Stderr, "streamcurve:", err)
		os.Exit(1)
	}
}

type point struct {
	budget, written int64
	layers, avail   int
	relErr, snr     float64
}

func curve(src string, points int, budgetsFlag string) error {
	ctx := context.Background()
	a, err := archive.Open(src, archive.OpenOptions{})
	if err != nil {
		return err
	}
	defer a.Close()
	tot := a.Totals()
	full := a.Size()

	tmp, err := os.MkdirTemp("", "streamcurve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	n := 0
	stream := func(budget int64) (point, error) {
		n++
		dst := filepath.Join(tmp, fmt.Sprintf("p%d.seedlm", n))
		rep, err := archive.Stream(ctx, src, dst, budget)
		if err != nil {
			return point{}, err
		}
		fi, err := os.Stat(dst)
		if err != nil {
			return point{}, err
		}
		os.Remove(dst)
		if fi.Size() != rep.Bytes || fi.Size() > budget {
			return point{}, fmt.Errorf("budget %d: wrote %d bytes, report says %d", budget, fi.Size(), rep.Bytes)
		}
		return point{budget: budget, written: fi.Size(), layers: rep.LayersIncluded, avail: rep.LayersAvailable,
			relErr: rep.RelErrAfter, snr: snr(rep.Norm2, rep.SqErrAfter)}, nil
	}

	// The minimum: Stream refuses a smaller budget and says what it is.
	var minBytes int64
	var be *archive.BudgetError
	if _, err := stream(0); !errors.As(err, &be) {
		return fmt.Errorf("budget 0: %v, want a budget error", err)
	}
	minBytes = be.MinBytes

	var budgets []int64
	if budgetsFlag != "" {
		for _, s := range strings.Split(budgetsFlag, ",") {
			b, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return fmt.Errorf("-budgets: %v", err)
			}
			budgets = append(budgets, b)
		}
	} else {
		for i := 0; i < points; i++ {
			budgets = append(budgets, minBytes+int64(i)*(full-minBytes)/int64(points-1))
		}
	}

	fmt.Printf("Archive `%s`: %s bytes, %s weights (%s coded in %d tensors, %d stored exactly); stream minimum %s bytes.\n\n",
		filepath.Base(src), commas(full), commas(tot.Weights), commas(tot.CodedWeights), tot.Coded, tot.Passthrough, commas(minBytes))
	fmt.Println("| budget (bytes) | written (bytes) | of budget | bits/weight | layers | rel. error | SNR dB | first N bytes (partial download): rel. error |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, b := range budgets {
		if b < minBytes {
			fmt.Printf("| %s | — (below the minimum, exit 4) | | | | | | |\n", commas(b))
			continue
		}
		p, err := stream(b)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %s | %.1f%% | %.3f | %d/%d | %.4f | %.2f | %s |\n", commas(p.budget), commas(p.written),
			100*float64(p.written)/float64(p.budget), 8*float64(p.written)/float64(tot.Weights), p.layers, p.avail, p.relErr, p.snr,
			prefixErr(src, min(b, full)))
	}

	// Uniform cuts: every coded tensor keeps its first k layers. Their
	// size is the chunks plus this archive's header and index (an upper
	// bound: a cut archive's index is a little smaller).
	maxL := 0
	for _, t := range a.Index().Tensors {
		maxL = max(maxL, len(t.Layers))
	}
	fmt.Println()
	fmt.Println("| uniform cut | its size (bytes) | its rel. error | stream at that budget: written | rel. error | SNR dB |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for k := 1; k <= maxL; k++ {
		size := archive.HeaderSize + a.IndexBytes()
		var sq, n2 float64
		for i := range a.Index().Tensors {
			t := &a.Index().Tensors[i]
			size += t.BytesUpTo(k - 1)
			if !t.Passthrough {
				sq += t.SqErrAt(k - 1)
				n2 += t.Norm2
			}
		}
		p, err := stream(size)
		if err != nil {
			return err
		}
		fmt.Printf("| `--layers %d` | %s | %.4f | %s | %.4f | %.2f |\n", k, commas(size), math.Sqrt(sq/n2), commas(p.written), p.relErr, p.snr)
	}
	return nil
}

// prefixErr is the relative error a reader gets from the first n bytes of
// the archive at path, or why it gets nothing.
func prefixErr(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	a, err := archive.OpenReader(f, n, path, archive.OpenOptions{AllowPartial: true})
	if err != nil {
		return "— (base layers incomplete)"
	}
	defer a.Close()
	return fmt.Sprintf("%.4f", a.Totals().RelErr)
}

func snr(norm2, sq float64) float64 {
	if sq <= 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(norm2/sq)
}

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
