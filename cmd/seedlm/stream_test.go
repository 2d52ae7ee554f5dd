package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
)

// runCLI runs one command line in-process and returns exit code, stdout
// and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// demoArchive compresses the demo model with three progressive layers and
// a small seed width (fast) into dir.
func demoArchive(t *testing.T, dir string) (model, arc string) {
	t.Helper()
	model, err := filepath.Abs("../../testdata/models/stories260K-layer0.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	arc = filepath.Join(dir, "m.seedlm")
	if code, _, stderr := runCLI(t, "compress", "--quiet", "--seed-bits", "10", "--layers", "3", model, "-o", arc); code != 0 {
		t.Fatalf("compress: exit %d: %s", code, stderr)
	}
	return model, arc
}

// measuredRelErr decodes every coded tensor of a safetensors file and
// returns √(Σ‖w−ŵ‖² / Σ‖w‖²) against the original over the coded tensors
// of archive arc.
func measuredRelErr(t *testing.T, orig, decoded, arc string) float64 {
	t.Helper()
	a, err := archive.Open(arc, archive.OpenOptions{AllowPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	src, err := checkpoint.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := checkpoint.Open(decoded)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var n2, e2 float64
	for _, e := range a.Index().Tensors {
		if e.Passthrough {
			continue
		}
		w, err := src.ReadFloat32(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := dst.ReadFloat32(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range w {
			d := float64(w[i]) - float64(v[i])
			n2 += float64(w[i]) * float64(w[i])
			e2 += d * d
		}
	}
	return math.Sqrt(e2 / n2)
}

// A sweep of budgets from below the minimum to past the full size: below
// the minimum exit 4 naming it; otherwise a file ≤ budget of exactly the
// reported size that verifies, and a total error that never rises with
// the budget and matches the decoded weights.
func TestStreamBudgetSweep(t *testing.T) {
	dir := t.TempDir()
	model, arc := demoArchive(t, dir)
	fi, err := os.Stat(arc)
	if err != nil {
		t.Fatal(err)
	}
	full := fi.Size()

	code, _, stderr := runCLI(t, "stream", arc, "--max-bytes", "1000", "-o", filepath.Join(dir, "x.seedlm"))
	if code != ExitBudget {
		t.Fatalf("budget 1000: exit %d, want %d; %s", code, ExitBudget, stderr)
	}
	var minBytes int64
	if _, err := fmt.Sscanf(stderr[strings.Index(stderr, "use --max-bytes "):], "use --max-bytes %d or more", &minBytes); err != nil || minBytes <= 0 || minBytes >= full {
		t.Fatalf("no minimum in %q (%v)", stderr, err)
	}
	if code, _, stderr := runCLI(t, "stream", arc, "--max-bytes", fmt.Sprint(minBytes-1), "-o", filepath.Join(dir, "x.seedlm")); code != ExitBudget || !strings.Contains(stderr, fmt.Sprintf("at least %s bytes", commas(minBytes))) {
		t.Fatalf("budget min-1: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.seedlm")); !os.IsNotExist(err) {
		t.Fatalf("a refused budget left x.seedlm behind (%v)", err)
	}

	const steps = 24
	prevErr := math.Inf(1)
	var prevSize int64
	sizes := map[int64]bool{}
	for i := 0; i <= steps+1; i++ {
		budget := minBytes + int64(i)*(full-minBytes)/steps
		if i == steps+1 {
			budget = 2 * full
		}
		out := filepath.Join(dir, fmt.Sprintf("s%02d.seedlm", i))
		code, stdout, stderr := runCLI(t, "stream", arc, "--max-bytes", fmt.Sprint(budget), "-o", out, "--json")
		if code != 0 {
			t.Fatalf("budget %d: exit %d: %s", budget, code, stderr)
		}
		var rep streamReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("budget %d: %v\n%s", budget, err, stdout)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > budget || st.Size() != rep.OutputBytes || rep.MinBytes != minBytes || rep.FullBytes != full {
			t.Fatalf("budget %d: file %d bytes, report %+v", budget, st.Size(), rep)
		}
		if rep.RelErrAfter > prevErr || st.Size() < prevSize {
			t.Fatalf("budget %d: error %.6f (%d bytes) after %.6f (%d bytes) at a smaller budget", budget, rep.RelErrAfter, st.Size(), prevErr, prevSize)
		}
		prevErr, prevSize = rep.RelErrAfter, st.Size()
		sizes[st.Size()] = true
		if i == 0 && (st.Size() != minBytes || rep.LayersIncluded != rep.CodedTensors) {
			t.Fatalf("at the minimum: %d bytes, %d layers in %d coded tensors", st.Size(), rep.LayersIncluded, rep.CodedTensors)
		}
		if i >= steps && (rep.RelErrAfter != rep.RelErrBefore || rep.LayersIncluded != rep.LayersAvailable) {
			t.Fatalf("full budget: error %v vs %v, %d of %d layers", rep.RelErrAfter, rep.RelErrBefore, rep.LayersIncluded, rep.LayersAvailable)
		}
		if code, _, stderr := runCLI(t, "verify", "--quiet", out); code != 0 {
			t.Fatalf("verify %s: exit %d: %s", out, code, stderr)
		}
		if i%8 == 0 {
			dec := filepath.Join(dir, fmt.Sprintf("s%02d.safetensors", i))
			if code, _, stderr := runCLI(t, "decompress", "--quiet", out, "-o", dec); code != 0 {
				t.Fatalf("decompress %s: exit %d: %s", out, code, stderr)
			}
			if got := measuredRelErr(t, model, dec, out); math.Abs(got-rep.RelErrAfter) > 1e-4*rep.RelErrAfter {
				t.Errorf("budget %d: reported error %.6f, decoded weights give %.6f", budget, rep.RelErrAfter, got)
			}
		}
	}
	if len(sizes) < 8 {
		t.Errorf("only %d distinct sizes over the sweep", len(sizes))
	}
	if prevErr > 0.02 {
		t.Errorf("full budget: relative error %.4f, want the 3-layer archive's (< 0.02)", prevErr)
	}
}

// A copy cut at offsets from the end of the base layers to one byte short:
// decompress fails without --allow-partial (exit 3, naming the first
// incomplete chunk, no output); with it, it lists exactly the chunks the
// archive package reports missing, and the error of the decoded weights
// never rises as more of the file is present.
func TestPartialDecompressCuts(t *testing.T) {
	dir := t.TempDir()
	model, arc := demoArchive(t, dir)
	data, err := os.ReadFile(arc)
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(arc, archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base, full := a.BaseBytes(), a.FullSize()
	a.Close()
	prevErr := math.Inf(1)
	for _, cut := range []int64{base, base + 1, base + (full-base)/4, base + (full-base)/2, full - 2000, full - 1} {
		p := filepath.Join(dir, fmt.Sprintf("cut%d.seedlm", cut))
		if err := os.WriteFile(p, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		pa, err := archive.Open(p, archive.OpenOptions{AllowPartial: true})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		missing := pa.Missing()
		pa.Close()
		if len(missing) == 0 {
			t.Fatalf("cut at %d: nothing missing", cut)
		}

		out := filepath.Join(dir, fmt.Sprintf("cut%d.safetensors", cut))
		code, _, stderr := runCLI(t, "decompress", p, "-o", out)
		first := fmt.Sprintf("tensor %q, chunk %q at offset %d: truncated", missing[0].Tensor, missing[0].Name(), missing[0].Offset)
		if code != ExitIntegrity || !strings.Contains(stderr, first) || !strings.Contains(stderr, "seedlm: hint:") || !strings.Contains(stderr, "--allow-partial") {
			t.Fatalf("cut at %d without --allow-partial: exit %d, stderr %q; want exit 3 naming %s and a hint with --allow-partial", cut, code, stderr, first)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("cut at %d: failed decompress left %s", cut, out)
		}
		if code, _, _ := runCLI(t, "verify", p); code != ExitIntegrity {
			t.Fatalf("cut at %d: verify exit %d, want 3", cut, code)
		}

		code, stdout, stderr := runCLI(t, "decompress", "--allow-partial", "--json", p, "-o", out)
		if code != 0 {
			t.Fatalf("cut at %d with --allow-partial: exit %d: %s", cut, code, stderr)
		}
		var rep decompressReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.Partial || len(rep.MissingChunks) != len(missing) || rep.ArchiveBytes != cut || rep.FullBytes != full {
			t.Fatalf("cut at %d: report %+v, want %d missing chunks", cut, rep, len(missing))
		}
		for i, m := range missing {
			line := fmt.Sprintf("tensor %q, chunk %q (", m.Tensor, m.Name())
			if !strings.Contains(stderr, line) || rep.MissingChunks[i].Tensor != m.Tensor || rep.MissingChunks[i].Layer != m.Layer || rep.MissingChunks[i].Have != m.Have {
				t.Fatalf("cut at %d: missing chunk %s %s not reported (stderr %q, json %+v)", cut, m.Tensor, m.Name(), stderr, rep.MissingChunks[i])
			}
		}
		got := measuredRelErr(t, model, out, p)
		if math.Abs(got-rep.RelErr) > 1e-4*rep.RelErr || got > prevErr {
			t.Fatalf("cut at %d: decoded error %.6f (reported %.6f), %.6f with fewer bytes", cut, got, rep.RelErr, prevErr)
		}
		prevErr = got
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"100000": 100000, "100KB": 100000, "100kB": 100000, "100K": 100000, "100k": 100000, "1.5MiB": 1572864, "1.5 MiB": 1572864, "1.5miB": 1572864,
		"2KiB": 2048, "1MB": 1e6, "1G": 1e9, "1GiB": 1 << 30, "1TB": 1e12, "1,000": 1000, "1_000_000": 1e6,
		"10B": 10, "1.2345KB": 1234, "0.001KB": 1,
	} {
		got, err := parseByteSize(in)
		if err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	// A lowercase b means bits: refused, not guessed.
	for _, in := range []string{"60Kb", "60kb", "60b", "60Kib", "1.5mb"} {
		if got, err := parseByteSize(in); err == nil || !strings.Contains(err.Error(), "means bits") {
			t.Errorf("parseByteSize(%q) = %d, %v; want a bits error", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "0.0001KB", "-1", "1.2.3", ".5", "5.", "10XB", "KB", "1e3", "9999999TiB"} {
		if got, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) = %d, want an error", in, got)
		}
	}
}
