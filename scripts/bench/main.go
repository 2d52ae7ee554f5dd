// Command bench runs bin/seedlm on real models and a generated matrix and
// writes a Markdown report (docs/BENCHMARKS.md). Every number comes from what
// seedlm measured and printed (--json) or from the kernel (peak RSS of each
// process, from wait4's rusage): nothing is estimated.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/seedlm/seedlm/internal/compress"
	"github.com/seedlm/seedlm/internal/safetensors"
)

type input struct {
	name, path, note string
}

type decompressJSON struct {
	OutputBytes int64   `json:"output_bytes"`
	WallSeconds float64 `json:"wall_seconds"`
	DecodeMBps  float64 `json:"decode_mb_per_s"`
}

type result struct {
	in       input
	c        compress.Report // what compress --json printed
	d        decompressJSON
	cRSS     int64 // KiB
	dRSS     int64
	verifyOK bool
}

func main() {
	bin := flag.String("bin", "bin/seedlm", "seedlm binary")
	data := flag.String("data", "../shared/data", "folder with the shared real models")
	work := flag.String("work", "out/bench", "scratch folder")
	out := flag.String("o", "", "report file (default docs/BENCHMARKS.md, or out/bench/BENCHMARKS.md with -quick)")
	n := flag.Int("matrix", 4096, "generated matrix is N×N")
	quick := flag.Bool("quick", false, "smoke run: the demo model and a 256×256 matrix")
	extra := flag.String("seedlm-flags", "", "extra flags for seedlm compress (e.g. \"--seed-bits 12\")")
	presetList := flag.String("presets", "default,fast,balanced,quality,research", "presets for the preset table (empty: none)")
	readme := flag.String("readme", "README.md", "README whose preset table (between the presets-table markers) is rewritten; empty: none")
	flag.Parse()
	if *out == "" {
		*out = "docs/BENCHMARKS.md"
		if *quick {
			*out = filepath.Join(*work, "BENCHMARKS.md")
		}
	}
	if err := run(*bin, *data, *work, *out, *n, *quick, strings.Fields(*extra)); err != nil {
		fmt.Fprintln(os.Stderr, "bench: error:", err)
		os.Exit(1)
	}
	if *presetList == "" {
		return
	}
	if *quick {
		*readme = ""
	}
	if err := runPresets(*bin, *data, *work, *out, *quick, strings.Split(*presetList, ","), *readme); err != nil {
		fmt.Fprintln(os.Stderr, "bench: error:", err)
		os.Exit(1)
	}
}

func run(bin, data, work, out string, n int, quick bool, extra []string) error {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	var ins []input
	if quick {
		n = 256
		if out == "" {
			out = filepath.Join(work, "BENCHMARKS.md")
		}
		ins = append(ins, input{"demo (stories260K layer 0)", "testdata/models/stories260K-layer0.safetensors", "F32, shipped in testdata/models"})
	} else {
		if out == "" {
			out = "docs/BENCHMARKS.md"
		}
		for _, c := range []input{
			{"stories260K F32", filepath.Join(data, "stories260K/stories260K.f32.safetensors"), "Llama-architecture LM, 292,800 parameters"},
			{"stories260K BF16", filepath.Join(data, "stories260K/stories260K.bf16.safetensors"), "same weights in BF16"},
			{"stories260K .pt", filepath.Join(data, "stories260K/stories260K.pt"), "torch.save zip, F32"},
			{"PP-OCRv4 rec F32", filepath.Join(data, "ppocrv4-rec/ch_PP-OCRv4_rec.f32.safetensors"), "OCR network, 2,690,109 parameters"},
		} {
			if _, err := os.Stat(c.path); err == nil {
				ins = append(ins, c)
			} else {
				fmt.Fprintf(os.Stderr, "bench: skipping %s: %v\n", c.name, err)
			}
		}
	}
	mpath := filepath.Join(work, fmt.Sprintf("gaussian-%dx%d.safetensors", n, n))
	if err := writeMatrix(mpath, n); err != nil {
		return err
	}
	ins = append(ins, input{fmt.Sprintf("Gaussian %d×%d", n, n), mpath, "N(0, 0.02²) F32, generated (seed 1)"})

	var results []result
	for i, in := range ins {
		fmt.Fprintf(os.Stderr, "bench: [%d/%d] %s\n", i+1, len(ins), in.name)
		arc := filepath.Join(work, fmt.Sprintf("%d.seedlm", i))
		dec := filepath.Join(work, fmt.Sprintf("%d.safetensors", i))
		r := result{in: in}
		args := append([]string{"compress", "--json", "--force", "-o", arc}, extra...)
		args = append(args, in.path)
		rss, err := runJSON(bin, args, &r.c)
		if err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		r.cRSS = rss
		if _, err := runJSON(bin, []string{"verify", "--quiet", arc}, nil); err != nil {
			return fmt.Errorf("%s: verify: %w", in.name, err)
		}
		r.verifyOK = true
		if r.dRSS, err = runJSON(bin, []string{"decompress", "--json", "--force", "-o", dec, arc}, &r.d); err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		os.Remove(dec)
		results = append(results, r)
	}
	return writeReport(out, bin, quick, extra, results)
}

// runJSON runs seedlm, decodes its stdout into v (if non-nil) and returns the
// process's peak RSS in KiB.
func runJSON(bin string, args []string, v any) (int64, error) {
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("seedlm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss // KiB on Linux
	}
	if v != nil {
		if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
			return 0, fmt.Errorf("seedlm %s: bad JSON: %v", strings.Join(args, " "), err)
		}
	}
	return rss, nil
}

func writeMatrix(path string, n int) error {
	if _, err := os.Stat(path); err == nil {
		return nil // deterministic: reuse
	}
	rng := rand.New(rand.NewSource(1))
	buf := make([]byte, 4*n*n)
	for i := 0; i < n*n; i++ {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(float32(rng.NormFloat64()*0.02)))
	}
	w, err := safetensors.NewWriter(path, []safetensors.TensorHeader{{Name: "weight", DType: "F32", Shape: []int64{int64(n), int64(n)}}},
		map[string]string{"format": "pt", "generator": "seedlm scripts/bench: N(0, 0.02^2), math/rand seed 1"})
	if err != nil {
		return err
	}
	if err := w.WriteTensor("weight", buf); err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

func db(v *float64) string {
	if v == nil {
		return "exact"
	}
	return fmt.Sprintf("%.2f", *v)
}

func writeReport(out, bin string, quick bool, extra []string, rs []result) error {
	var b strings.Builder
	ver, _ := exec.Command(bin, "version").Output()
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Generated by `make bench` (scripts/bench) on %s. Do not edit by hand.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- binary: %s", strings.TrimSpace(string(ver)))
	if len(extra) > 0 {
		fmt.Fprintf(&b, ", compress flags `%s`", strings.Join(extra, " "))
	} else {
		fmt.Fprintf(&b, ", default settings (paper's 4-bit configuration C8 P3 K16 B4 E4, one layer)")
	}
	fmt.Fprintf(&b, "\n- machine: %s, %d CPUs (GOMAXPROCS %d), %s/%s, %s\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if quick {
		fmt.Fprintf(&b, "- **quick smoke run** (-quick): tiny inputs, timings not meaningful\n")
	}
	fmt.Fprintf(&b, "\nSizes are bytes on disk. Bits/weight = archive bits / all weights (norms and other exactly stored tensors included); coded bpw counts only the coded tensors' payload. Relative error ‖w−ŵ‖/‖w‖ and SNR are over the coded tensors, measured by compress against the original weights. Encode rate = coded weights / time spent in the encoder. Decode MB/s = float32 bytes decoded per second. Peak RSS = the process's maximum resident set (wait4 rusage).\n\n")
	fmt.Fprintf(&b, "| input | weights | input bytes | archive bytes | bits/weight | coded bpw | ratio vs input | ratio vs fp32 | rel. error | SNR / worst tensor dB | compress wall s | encode weights/s | compress peak RSS MiB | decompress wall s | decode MB/s | decompress peak RSS MiB |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		c, d := r.c, r.d
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.3f | %.3f | %.2f | %.2f | %.4f | %s / %s | %.2f | %s | %.1f | %.2f | %.1f | %.1f |\n",
			r.in.name, commas(c.Weights), commas(c.InputBytes), commas(c.OutputBytes), c.BitsPerWeight, c.CodedBitsPerWeight, c.RatioVsInput, c.RatioVsFP32,
			c.RelErr, db(c.SNRdB), db(c.SNRWorstDB), c.WallSeconds, commas(int64(c.WeightsPerSecond+0.5)), float64(r.cRSS)/1024,
			d.WallSeconds, d.DecodeMBps, float64(r.dRSS)/1024)
	}
	fmt.Fprintf(&b, "\nInputs:\n\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "- %s: `%s` (%s); verify ok: %v; %d workers, %s kernel\n", r.in.name, r.in.path, r.in.note, r.verifyOK, r.c.Workers, r.c.Kernel)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s\n", out)
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}

// presetRow is one (model, preset) measurement.
type presetRow struct {
	model, preset string
	c             compress.Report
}

// runPresets compresses each real model with each preset and appends a table
// to the report; the same table replaces the one in the README between
// "<!-- presets-table:begin -->" and "<!-- presets-table:end -->".
func runPresets(bin, data, work, out string, quick bool, presets []string, readme string) error {
	models := []input{
		{"stories260K", filepath.Join(data, "stories260K/stories260K.f32.safetensors"), ""},
		{"PP-OCRv4 rec", filepath.Join(data, "ppocrv4-rec/ch_PP-OCRv4_rec.f32.safetensors"), ""},
	}
	if quick {
		models = []input{{"demo (stories260K layer 0)", "testdata/models/stories260K-layer0.safetensors", ""}}
	}
	var rows []presetRow
	for _, m := range models {
		if _, err := os.Stat(m.path); err != nil {
			fmt.Fprintf(os.Stderr, "bench: skipping %s: %v\n", m.name, err)
			continue
		}
		for _, p := range presets {
			fmt.Fprintf(os.Stderr, "bench: preset %s on %s\n", p, m.name)
			arc := filepath.Join(work, "preset.seedlm")
			args := []string{"compress", "--json", "--force", "-o", arc}
			if p != "default" {
				args = append(args, "--preset", p)
			}
			args = append(args, m.path)
			var c compress.Report
			if _, err := runJSON(bin, args, &c); err != nil {
				return fmt.Errorf("preset %s on %s: %w", p, m.name, err)
			}
			rows = append(rows, presetRow{model: m.name, preset: p, c: c})
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "| model | preset | archive bytes | bits/weight (whole file) | ratio vs fp32 | rel. error | SNR dB | encode weights/s |\n")
	fmt.Fprintf(&t, "|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&t, "| %s | %s | %s | %.3f | %.2f× | %.4f | %s | %s |\n", r.model, r.preset, commas(r.c.OutputBytes),
			r.c.BitsPerWeight, r.c.RatioVsFP32, r.c.RelErr, db(r.c.SNRdB), commas(int64(r.c.WeightsPerSecond+0.5)))
	}
	table := t.String()
	f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "\n## Presets\n\nEach real model compressed with each preset (`seedlm compress --preset NAME`; default = no preset, the paper's 4-bit configuration). Bits/weight and ratio count every byte of the archive file; error and SNR are over the coded tensors.\n\n%s", table)
	if err := f.Close(); err != nil {
		return err
	}
	if readme == "" {
		return nil
	}
	b, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	const begin, end = "<!-- presets-table:begin -->", "<!-- presets-table:end -->"
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		fmt.Fprintf(os.Stderr, "bench: %s has no presets-table markers; not updated\n", readme)
		return nil
	}
	s = s[:i+len(begin)] + "\n" + table + s[j:]
	fmt.Fprintf(os.Stderr, "bench: updated the preset table in %s\n", readme)
	return os.WriteFile(readme, []byte(s), 0o644)
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
