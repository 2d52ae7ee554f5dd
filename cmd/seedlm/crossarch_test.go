package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seedlm/seedlm/internal/model"
	"github.com/seedlm/seedlm/internal/safetensors"
)

// crossArchCases are the settings TestCrossArch compresses with: the
// default, a preset, a size target (measured allocation) and a rule file
// (with the variance allocation for the tensors no rule claims). Under
// qemu the encoder is some 100× slower than native, so every case but the
// default searches K=12 seeds (the fast preset's), and the target's
// candidates are four, as two-layer stacks. The output case compresses a
// generated one-layer Llama model (crossArchLlama) for the output
// objective (each tensor weighted by a sensitivity measured with forward
// passes; the plan mixes all three K=8 candidates) and records an
// evaluation (KL figures from forward passes of both models) in the
// archive's header; the max-kl case's plan is the one a bisection over
// measured KL values chooses.
var crossArchCases = []struct {
	name, config string
	args         []string
	llama        bool // the generated Llama model instead of the cut demo model
}{
	{name: "default"},
	{name: "preset", args: []string{"--preset", "fast"}},
	{name: "target", args: []string{"--target-bpw", "9", "--layers", "2", "--seed-bits", "12"}, config: `adaptive:
  candidates:
    - {block_size: 8, latent_dim: 3}
    - {block_size: 12, latent_dim: 3, coeff_bits: 3, exponent_bits: 3}
    - {block_size: 16, latent_dim: 3, coeff_bits: 3, exponent_bits: 3}
    - {block_size: 24, latent_dim: 4, coeff_bits: 3, exponent_bits: 3}
`},
	{name: "rules", args: []string{"--seed-bits", "12"}, config: `target_bpw: 9
adaptive:
  method: variance
layer_specific:
  "*.mlp.*":
    compression_level: 0.7
  "*.self_attn.v_proj.*":
    block_size: 16
    latent_dim: 4
`},
	{name: "output", llama: true, args: []string{"--target-bpw", "2.5", "--target-scope", "coded", "--objective", "output", "--eval"}, config: `adaptive:
  candidates:
    - {block_size: 4, latent_dim: 3, seed_bits: 8, coeff_bits: 4, exponent_bits: 3}
    - {block_size: 8, latent_dim: 3, seed_bits: 8, coeff_bits: 4, exponent_bits: 3}
    - {block_size: 16, latent_dim: 2, seed_bits: 8, coeff_bits: 3, exponent_bits: 3}
`},
	{name: "max-kl", llama: true, args: []string{"--max-kl", "0.2"}, config: `adaptive:
  candidates:
    - {block_size: 4, latent_dim: 3, seed_bits: 8, coeff_bits: 4, exponent_bits: 3}
    - {block_size: 8, latent_dim: 3, seed_bits: 8, coeff_bits: 4, exponent_bits: 3}
    - {block_size: 16, latent_dim: 2, seed_bits: 8, coeff_bits: 3, exponent_bits: 3}
`},
}

// crossArchLlama is the output case's model: 13,408 parameters, 7 coded
// tensors, small enough for forward passes under qemu.
var crossArchLlama = &model.Config{Arch: "llama", Hidden: 32, Intermediate: 64, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 16,
	Vocab: 64, MaxPos: 32, RMSEps: 1e-5, RopeTheta: 10000, BOS: 1}

// TestCrossArch: same seedlm, same input, same settings → the same archive
// bytes from four builds:
//
//   - this test binary (amd64, assembly kernels where the CPU has AVX2 and
//     FMA), run with GOMAXPROCS=1 and one worker;
//   - a -tags purego build (the pure-Go kernels: what a CPU without AVX2
//     runs), two workers;
//   - a -tags purego build with GOAMD64=v3 (Go free to fuse x*y+z into FMA
//     instructions everywhere), three workers; skipped on a CPU that
//     cannot run v3 code;
//   - an arm64 build (Go fuses there too; pure-Go kernels), run under
//     qemu-aarch64 when it is on the PATH (.ci/run installs it), with the
//     host's worker count.
//
// The arm64 build is made and checked even without qemu: its machine code
// (from seedlm's own sources) must hold no fused multiply-add instruction
// and call no math function whose result differs between architectures
// (checkArchIndependent). The input is the demo model cut to about 1024
// weights per matrix (still 7 coded tensors: 7,168 weights). The
// TestReproducible* tests of internal/detmath, presets, compress and model
// (figures pinned bit for bit) run in the arm64 and v3 builds as well.
func TestCrossArch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds seedlm for other targets")
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("compares amd64 builds with arm64: this host is %s", runtime.GOARCH)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build with: %v", err)
	}
	qemu, qerr := exec.LookPath("qemu-aarch64")
	if qerr != nil {
		if q, err := exec.LookPath("qemu-aarch64-static"); err == nil {
			qemu, qerr = q, nil
		}
	}
	if qerr != nil {
		t.Logf("skipping the arm64 runs: qemu-aarch64 is not on the PATH (Debian/Ubuntu: apt-get install qemu-user; .ci/run installs it)")
	}
	dir := t.TempDir()
	demo := filepath.Join(dir, "cut.safetensors")
	cutDemoModel(t, filepath.Join("..", "..", "testdata", "models", "stories260K-layer0.safetensors"), demo)
	llama := filepath.Join(dir, "llama")
	if err := model.WriteCheckpoint(llama, crossArchLlama, model.Random(crossArchLlama, 1, "F32")); err != nil {
		t.Fatal(err)
	}

	// Builds, side by side; the test binaries of reproduciblePackages for
	// the targets that run them.
	type build struct {
		name  string
		env   []string
		args  []string
		tests bool
		out   string
		err   error
	}
	purego := &build{name: "amd64 purego", args: []string{"-tags", "purego"}}
	v3 := &build{name: "amd64 purego GOAMD64=v3", env: []string{"GOAMD64=v3"}, args: []string{"-tags", "purego"}, tests: true}
	arm := &build{name: "arm64", env: []string{"GOARCH=arm64", "CGO_ENABLED=0"}, tests: qerr == nil}
	builds := []*build{purego, v3, arm}
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.out = filepath.Join(dir, fmt.Sprintf("seedlm-%d", i))
			args := append([]string{"build", "-o", b.out}, b.args...)
			cmd := exec.Command(goTool, append(args, ".")...)
			cmd.Env = append(os.Environ(), b.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build (%s): %v\n%s", b.name, err, out)
			}
			if b.err == nil && b.tests {
				b.err = buildReproducibleTests(goTool, b.out+"-tests", b.env)
			}
		}()
	}
	wg.Wait()
	for _, b := range builds {
		if b.err != nil {
			t.Fatal(b.err)
		}
	}
	t.Logf("builds: %.1fs", time.Since(t0).Seconds())
	checkArchIndependent(t, goTool, arm.out)

	type runner struct {
		name    string
		prog    []string // command and its first arguments
		env     []string
		workers []string
	}
	self := runner{name: "amd64 (this binary)", prog: []string{os.Args[0]}, env: []string{"SEEDLM_TEST_MAIN=1", "GOMAXPROCS=1"}, workers: []string{"--workers", "1"}}
	runners := []runner{{name: purego.name, prog: []string{purego.out}, workers: []string{"--workers", "2"}}}
	// The v3 binary needs AVX2, FMA and BMI; a machine without them says
	// so on start-up.
	if out, err := exec.Command(v3.out, "--help").CombinedOutput(); err != nil {
		if !strings.Contains(string(out), "microarchitecture") {
			t.Fatalf("%s does not start: %v\n%s", v3.name, err, out)
		}
		t.Logf("skipping the %s runs: this CPU cannot run GOAMD64=v3 code", v3.name)
	} else {
		runners = append(runners, runner{name: v3.name, prog: []string{v3.out}, workers: []string{"--workers", "3"}})
		runReproducibleTests(t, v3.name, nil, v3.out+"-tests")
	}
	if qerr == nil {
		runners = append(runners, runner{name: "arm64 (qemu-aarch64)", prog: []string{qemu, arm.out}})
		t1 := time.Now()
		runReproducibleTests(t, arm.name, []string{qemu}, arm.out+"-tests")
		t.Logf("TestReproducible* under qemu: %.1fs", time.Since(t1).Seconds())
	}

	// The environment of every run: no SEEDLM_* settings, no user config.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SEEDLM_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	env = append(env, "XDG_CONFIG_HOME="+filepath.Join(dir, "no-config"))

	for _, c := range crossArchCases {
		in := demo
		if c.llama {
			in = filepath.Join(llama, "model.safetensors")
		}
		args := append([]string{"compress", "--quiet", in}, c.args...)
		if c.config != "" {
			cfg := filepath.Join(dir, c.name+".yaml")
			if err := os.WriteFile(cfg, []byte(c.config), 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--config", cfg)
		}
		var want []byte
		for i, r := range append([]runner{self}, runners...) {
			out := filepath.Join(dir, fmt.Sprintf("%s-%d.seedlm", c.name, i))
			argv := append(append(append(r.prog[1:], args...), r.workers...), "-o", out)
			cmd := exec.Command(r.prog[0], argv...)
			cmd.Env = append(append([]string(nil), env...), r.env...)
			cmd.Dir = dir
			t1 := time.Now()
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s, %s: seedlm %s: %v\n%s", c.name, r.name, strings.Join(args, " "), err, msg)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			t.Logf("%s, %s: %d bytes, %.1fs (%.1fs CPU)", c.name, r.name, len(got), time.Since(t1).Seconds(), cpu.Seconds())
			if i == 0 {
				want = got
			} else if !bytes.Equal(got, want) {
				t.Errorf("%s: the archive of %s differs from amd64's (%d vs %d bytes, first difference at byte %d)",
					c.name, r.name, len(got), len(want), firstDiff(got, want))
			}
		}
	}
}

// exactMath are the functions of package math whose results are exact
// (or correctly rounded by IEEE 754), hence the same bits on every
// architecture, as objdump names them (arch prefix and ABI suffix
// dropped, lower case).
var exactMath = map[string]bool{
	"abs": true, "ceil": true, "copysign": true, "floor": true, "frexp": true,
	"ldexp": true, "max": true, "min": true, "mod": true, "modf": true,
	"nextafter": true, "nextafter32": true, "round": true, "roundtoeven": true,
	"sqrt": true, "trunc": true,
}

// displayOnly are the functions of seedlm allowed to call other math
// functions (Log, Exp …, whose last bit differs between amd64 and arm64):
// their results are printed, never stored or used to decide anything.
var displayOnly = map[string]bool{
	"github.com/seedlm/seedlm/internal/archive.SNRdB": true, // dB figure of inspect, compress, stream
	"main.(*progress).update":                         true, // the progress bar's smoothed rate
}

// checkArchIndependent disassembles the arm64 build bin and fails for
// every function compiled from this repository's sources that holds a
// fused multiply-add (FMADD, FMSUB, FNMADD, FNMSUB: Go contracts x*y + z
// on arm64 unless the product is converted, float64(x*y), even across
// statements) or calls a math function outside exactMath (unless it is
// displayOnly). The assembly kernels for amd64 are not in this build; the
// fused instructions of their float32 bounds are covered by the bounds'
// margins (docs/PERFORMANCE.md).
func checkArchIndependent(t *testing.T, goTool, bin string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goTool, "tool", "objdump", "-s", `^(github\.com/seedlm/seedlm/|main\.)`, bin).Output()
	if err != nil {
		t.Fatalf("go tool objdump %s: %v", bin, err)
	}
	var fn, file string
	var bad []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "TEXT" {
			fn, file = strings.TrimSuffix(f[1], "(SB)"), f[2]
			continue
		}
		if len(f) < 4 || !strings.HasPrefix(file, root+string(filepath.Separator)) {
			continue
		}
		var why string
		switch op := f[3]; {
		case strings.HasPrefix(op, "FMADD"), strings.HasPrefix(op, "FMSUB"), strings.HasPrefix(op, "FNMADD"), strings.HasPrefix(op, "FNMSUB"):
			why = "fused multiply-add " + op + ": round the product, float64(x*y)"
		case op == "CALL" && len(f) >= 5 && strings.HasPrefix(f[4], "math."):
			name := strings.ToLower(strings.TrimPrefix(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(f[4], "math."), "(SB)"), ".abi0"), "arch"))
			if exactMath[name] || displayOnly[fn] {
				continue
			}
			why = "calls " + f[4] + ", whose last bit may differ between architectures (internal/detmath, or an exact function)"
		default:
			continue
		}
		msg := fmt.Sprintf("%s (%s): %s", fn, f[0], why)
		if !seen[msg] {
			seen[msg] = true
			bad = append(bad, msg)
		}
	}
	if len(bad) > 0 {
		t.Errorf("the arm64 build of seedlm computes differently from amd64:\n%s", strings.Join(bad, "\n"))
	}
}

// reproduciblePackages hold TestReproducible* tests: figures that decide
// or are written, pinned bit for bit.
var reproduciblePackages = []string{"detmath", "presets", "compress", "model"}

// buildReproducibleTests builds the test binaries of reproduciblePackages
// for the target env into the folder dir.
func buildReproducibleTests(goTool, dir string, env []string) error {
	args := []string{"test", "-c", "-o", dir + "/"}
	for _, p := range reproduciblePackages {
		args = append(args, "../../internal/"+p)
	}
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), env...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return nil
}

// runReproducibleTests runs the TestReproducible* tests of the binaries in
// dir (through prefix, e.g. qemu).
func runReproducibleTests(t *testing.T, name string, prefix []string, dir string) {
	t.Helper()
	for _, p := range reproduciblePackages {
		argv := append(append([]string(nil), prefix...), filepath.Join(dir, p+".test"), "-test.run", "^TestReproducible")
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Errorf("internal/%s TestReproducible*, %s: %v\n%s", p, name, err, out)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// cutDemoModel writes the tensors of src to dst with every tensor of rank
// ≥ 2 cut to its first rows, as many as make 1024 weights (the size below
// which a tensor is stored exactly); 1-D tensors whole.
func cutDemoModel(t *testing.T, src, dst string) {
	t.Helper()
	f, err := safetensors.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hs []safetensors.TensorHeader
	var data [][]byte
	for _, x := range f.Tensors() {
		raw, err := f.ReadRaw(x.Name)
		if err != nil {
			t.Fatal(err)
		}
		h := x.TensorHeader
		h.Shape = append([]int64(nil), h.Shape...)
		if len(h.Shape) >= 2 && h.Shape[0] > 0 {
			rowBytes := int64(len(raw)) / h.Shape[0]
			perRow := rowBytes * 8 / 32 // F32 weights per row
			if rows := (1024 + perRow - 1) / perRow; rows < h.Shape[0] {
				raw = raw[:rows*rowBytes]
				h.Shape[0] = rows
			}
		}
		hs = append(hs, h)
		data = append(data, raw)
	}
	w, err := safetensors.NewWriter(dst, hs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		if err := w.WriteTensor(h.Name, data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}
