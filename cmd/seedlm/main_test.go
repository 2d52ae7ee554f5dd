package main

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/safetensors"
)

func TestMain(m *testing.M) {
	// The SIGINT test runs this binary as seedlm itself.
	if os.Getenv("SEEDLM_TEST_MAIN") == "1" {
		os.Unsetenv("SEEDLM_TEST_MAIN") // not a seedlm setting
		os.Exit(mainExit())
	}
	testscript.Main(m, map[string]func(){
		"seedlm": func() { os.Exit(mainExit()) },
	})
}

// sharedData is the project's shared real-model folder (absent on some
// machines: tests that need it skip).
var sharedData = func() string {
	p, _ := filepath.Abs("../../../shared/data")
	return p
}()

func TestScripts(t *testing.T) {
	models, _ := filepath.Abs("../../testdata/models")
	configs, _ := filepath.Abs("../../configs")
	examples, _ := filepath.Abs("../../examples")
	torchData, _ := filepath.Abs("../../testdata/torch")
	testscript.Run(t, testscript.Params{
		Dir:                 "../../testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("MODELS", models)
			e.Setenv("CONFIGS", configs)
			e.Setenv("EXAMPLES", examples)
			e.Setenv("TORCHDATA", torchData)
			e.Setenv("SHARED", sharedData)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "shared":
				_, err := os.Stat(filepath.Join(sharedData, "stories260K"))
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkmodel":    cmdMkModel,
			"stcheck":    cmdSTCheck,
			"corrupt":    cmdCorrupt,
			"truncate":   cmdTruncate,
			"exitcode":   cmdExitCode,
			"lsdir":      cmdLsDir,
			"cut":        cmdCut,
			"grabenv":    cmdGrabEnv,
			"edit-plan":  cmdEditPlan,
			"runexample": cmdRunExample,
			"mkfifo":     cmdMkfifo,
			"perm":       cmdPerm,
			"age":        cmdAge,
			"islink":     cmdIsLink,
		},
	})
}

// exitcode N PROG ARGS...: run PROG and require exit status N; stdout and
// stderr are kept for the next stdout/stderr commands.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			ts.Fatalf("%v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// mkfifo PATH: make a named pipe (a special file no command may replace).
func cmdMkfifo(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mkfifo PATH")
	}
	ts.Check(mkfifo(ts.MkAbs(args[0])))
}

// perm PATH MODE: PATH's permission bits are MODE (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: perm PATH MODE")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	st, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := st.Mode().Perm(); uint64(got) != want {
		ts.Fatalf("%s has mode %#o, want %#o", args[0], got, want)
	}
}

// age PATH DURATION: set PATH's modification time DURATION into the past.
func cmdAge(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: age PATH DURATION")
	}
	d, err := time.ParseDuration(args[1])
	ts.Check(err)
	t := time.Now().Add(-d)
	ts.Check(os.Chtimes(ts.MkAbs(args[0]), t, t))
}

// [!] islink PATH: PATH is (not) a symbolic link.
func cmdIsLink(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: islink PATH")
	}
	st, err := os.Lstat(ts.MkAbs(args[0]))
	ts.Check(err)
	if (st.Mode()&os.ModeSymlink != 0) == neg {
		ts.Fatalf("%s: symlink is %v", args[0], !neg)
	}
}

// lsdir DIR WANT...: DIR holds exactly the entries WANT (sorted), and no
// temporary files.
func cmdLsDir(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: lsdir DIR [NAME...]")
	}
	ents, err := os.ReadDir(ts.MkAbs(args[0]))
	ts.Check(err)
	var got []string
	for _, e := range ents {
		if e.Name() == ".tmp" { // testscript's TMPDIR
			continue
		}
		got = append(got, e.Name())
	}
	want := append([]string(nil), args[1:]...)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		ts.Fatalf("%s holds [%s], want [%s]", args[0], strings.Join(got, " "), strings.Join(want, " "))
	}
}

// mkmodel OUT [dtype=F32|BF16|F16] [nan=TENSOR:INDEX] [scale=X]
// [huge=TENSOR] [shards=N] [big]: write a small deterministic model: coded
// tensors (rank 2, ≥ 1024 weights), a norm vector, a small matrix and an
// I64 tensor (stored exactly). scale=X multiplies every weight by X;
// huge=TENSOR puts that tensor's weights near the float32 limit; tied
// makes lm_head.weight a byte-identical copy of the embedding and adds
// model.norm.weight equal to the first norm. With
// shards=N, OUT is a folder with N shards and an index.
func cmdMkModel(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: mkmodel OUT [dtype=..] [nan=T:I] [scale=X] [huge=T] [shards=N] [big] [tied]")
	}
	out := ts.MkAbs(args[0])
	opt := map[string]string{"dtype": "F32", "shards": "1"}
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		opt[k] = v
	}
	ts.Check(writeTestModel(out, opt))
}

type testTensor struct {
	name  string
	dtype string
	shape []int64
	data  []byte
}

func testModelTensors(opt map[string]string) []testTensor {
	rng := rand.New(rand.NewSource(42))
	fl := func(name string, shape ...int64) testTensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		if len(shape) == 1 {
			for i := range w {
				w[i] += 1
			}
		}
		if sc, ok := opt["scale"]; ok {
			f, err := strconv.ParseFloat(sc, 64)
			if err != nil {
				panic(err)
			}
			for i := range w {
				w[i] *= float32(f)
			}
		}
		if opt["huge"] == name {
			// Near the float32 limit: beyond the codec's exponent range.
			for i := range w {
				w[i] = float32(math.Copysign(1.5e38+1e38*rng.Float64(), float64(w[i])))
			}
		}
		if nan, ok := opt["nan"]; ok {
			tn, idx, _ := strings.Cut(nan, ":")
			if tn == name {
				i, _ := strconv.Atoi(idx)
				w[i] = float32(math.NaN())
			}
		}
		dt := opt["dtype"]
		b, err := dtype.FromFloat32(dt, w)
		if err != nil {
			panic(err)
		}
		return testTensor{name, dt, shape, b}
	}
	rows := int64(64)
	if _, ok := opt["big"]; ok {
		rows = 2048
	}
	ids := make([]byte, 16*8)
	for i := 0; i < 16; i++ {
		binary.LittleEndian.PutUint64(ids[8*i:], uint64(i*7))
	}
	ts := []testTensor{
		fl("model.embed_tokens.weight", rows, 32),
		fl("model.layers.0.self_attn.q_proj.weight", 32, 32),
		fl("model.layers.0.input_layernorm.weight", 32),
		fl("model.layers.0.mlp.up_proj.weight", 48, 32),
		fl("model.layers.0.small.weight", 8, 8),
		{"model.position_ids", "I64", []int64{16}, ids},
		fl("lm_head.weight", 64, 32),
	}
	if _, ok := opt["tied"]; ok {
		// Tied embeddings saved as two byte-identical tensors, and a
		// second norm equal to the first.
		ts[6].shape, ts[6].data = ts[0].shape, ts[0].data
		ts = append(ts, testTensor{"model.norm.weight", ts[2].dtype, ts[2].shape, ts[2].data})
	}
	return ts
}

// testModelIn writes the test model (F32, one file; extra adds options)
// as m.safetensors in a new temp folder and returns the folder and file.
func testModelIn(t *testing.T, extra map[string]string) (dir, in string) {
	t.Helper()
	dir = t.TempDir()
	in = filepath.Join(dir, "m.safetensors")
	opt := map[string]string{"dtype": "F32", "shards": "1"}
	maps.Copy(opt, extra)
	if err := writeTestModel(in, opt); err != nil {
		t.Fatal(err)
	}
	return dir, in
}

func writeTestModel(out string, opt map[string]string) error {
	ts := testModelTensors(opt)
	meta := map[string]string{"format": "pt", "origin": "seedlm test model"}
	nsh, err := strconv.Atoi(opt["shards"])
	if err != nil || nsh < 1 {
		return fmt.Errorf("bad shards=%q", opt["shards"])
	}
	if nsh == 1 {
		return writeST(out, ts, meta)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	per := (len(ts) + nsh - 1) / nsh
	weightMap := map[string]string{}
	var total int64
	for s := 0; s < nsh; s++ {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, nsh)
		part := ts[s*per : min(len(ts), (s+1)*per)]
		for _, t := range part {
			weightMap[t.name] = name
			total += int64(len(t.data))
		}
		if err := writeST(filepath.Join(out, name), part, meta); err != nil {
			return err
		}
	}
	ix := map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}
	b, _ := jsonMarshal(ix)
	return os.WriteFile(filepath.Join(out, "model.safetensors.index.json"), append(b, '\n'), 0o644)
}

func writeST(path string, ts []testTensor, meta map[string]string) error {
	hs := make([]safetensors.TensorHeader, len(ts))
	for i, t := range ts {
		hs[i] = safetensors.TensorHeader{Name: t.name, DType: t.dtype, Shape: t.shape}
	}
	w, err := safetensors.NewWriter(path, hs, meta)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := w.WriteTensor(t.name, t.data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

// stcheck ORIG OUT MAXREL [dtype=X] [archive=A]: OUT has the same tensors
// (names, order within each shard, shapes), dtypes (coded ones X if given),
// shard layout and metadata as ORIG; every tensor stored exactly (by the
// default plan, or by archive A's index) is byte-identical; every coded
// tensor has a relative error in (0, MAXREL].
func cmdSTCheck(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: stcheck ORIG OUT MAXREL [dtype=X]")
	}
	maxRel, err := strconv.ParseFloat(args[2], 64)
	ts.Check(err)
	wantDT, arc := "", ""
	for _, a := range args[3:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "dtype":
			wantDT = v
		case "archive":
			arc = ts.MkAbs(v)
		default:
			ts.Fatalf("stcheck: unknown option %q", a)
		}
	}
	msg, err := compareCheckpoints(ts.MkAbs(args[0]), ts.MkAbs(args[1]), maxRel, wantDT, arc)
	ts.Check(err)
	ts.Logf("%s", msg)
}

func compareCheckpoints(origPath, outPath string, maxRel float64, wantDT, archivePath string) (string, error) {
	// Which tensors are stored exactly: the default plan's, or the
	// archive's own record when given.
	exact := func(t checkpoint.TensorInfo) bool { return presets.Default(t).Passthrough }
	if archivePath != "" {
		a, err := archive.Open(archivePath, archive.OpenOptions{})
		if err != nil {
			return "", err
		}
		defer a.Close()
		exact = func(t checkpoint.TensorInfo) bool {
			e, ok := a.Entry(t.Name)
			return ok && e.Passthrough
		}
	}
	a, err := checkpoint.Open(origPath)
	if err != nil {
		return "", err
	}
	defer a.Close()
	b, err := checkpoint.Open(outPath)
	if err != nil {
		return "", err
	}
	defer b.Close()
	if fmt.Sprint(a.Metadata()) != fmt.Sprint(b.Metadata()) {
		if !(len(a.Metadata()) == 0 && fmt.Sprint(b.Metadata()) == "map[format:pt]") {
			return "", fmt.Errorf("metadata %v, want %v", b.Metadata(), a.Metadata())
		}
	}
	at, bt := a.Tensors(), b.Tensors()
	if len(at) != len(bt) {
		return "", fmt.Errorf("%d tensors, want %d", len(bt), len(at))
	}
	var report []string
	for i, x := range at {
		y := bt[i]
		if strings.HasSuffix(x.Shard, ".bin") {
			x.Shard = archive.SafetensorsShardName(x.Shard) // a PyTorch shard comes back as safetensors
		}
		if x.Name != y.Name || fmt.Sprint(x.Shape) != fmt.Sprint(y.Shape) || x.Shard != y.Shard {
			return "", fmt.Errorf("tensor %d: %s %v shard %q, want %s %v shard %q", i, y.Name, y.Shape, y.Shard, x.Name, x.Shape, x.Shard)
		}
		passthrough := exact(x)
		dt := x.DType
		if wantDT != "" && (!passthrough || dtype.CanFloat32(x.DType)) {
			dt = wantDT // --dtype converts every float tensor
		}
		if y.DType != dt {
			return "", fmt.Errorf("tensor %s: dtype %s, want %s", x.Name, y.DType, dt)
		}
		if passthrough && dt != x.DType {
			// Converted: exact when widening, one rounding when narrowing.
			fa, fb, err := readBoth(a, b, x.Name)
			if err != nil {
				return "", err
			}
			widen := dt == "F32" || (dt == "BF16" && x.DType == "BF16") || (dt == "F16" && x.DType == "F16")
			for k := range fa {
				d := math.Abs(float64(fa[k]) - float64(fb[k]))
				if (widen && d != 0) || d > math.Abs(float64(fa[k]))/256+1e-7 {
					return "", fmt.Errorf("tensor %s, converted %s → %s: element %d is %v, want ≈%v", x.Name, x.DType, dt, k, fb[k], fa[k])
				}
			}
			report = append(report, fmt.Sprintf("%s converted %s → %s", x.Name, x.DType, dt))
			continue
		}
		if passthrough {
			ra, err := a.ReadRaw(x.Name)
			if err != nil {
				return "", err
			}
			rb, err := b.ReadRaw(x.Name)
			if err != nil {
				return "", err
			}
			if string(ra) != string(rb) {
				return "", fmt.Errorf("tensor %s is stored exactly but its bytes differ", x.Name)
			}
			continue
		}
		fa, fb, err := readBoth(a, b, x.Name)
		if err != nil {
			return "", err
		}
		var n2, e2 float64
		for k := range fa {
			d := float64(fa[k]) - float64(fb[k])
			n2 += float64(fa[k]) * float64(fa[k])
			e2 += d * d
		}
		rel := math.Sqrt(e2 / n2)
		if !(rel > 0 && rel <= maxRel) {
			return "", fmt.Errorf("tensor %s: relative error %.4f, want in (0, %g]", x.Name, rel, maxRel)
		}
		report = append(report, fmt.Sprintf("%s rel %.4f", x.Name, rel))
	}
	return strings.Join(report, "\n"), nil
}

// readBoth reads a tensor of two checkpoints as float32.
func readBoth(a, b checkpoint.Source, name string) ([]float32, []float32, error) {
	fa, err := a.ReadFloat32(name)
	if err != nil {
		return nil, nil, err
	}
	fb, err := b.ReadFloat32(name)
	return fa, fb, err
}

// corrupt ARCHIVE TENSOR [raw|layer K]: flip one byte in the middle of a
// tensor's chunk.
func cmdCorrupt(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: corrupt ARCHIVE TENSOR|file:NAME [LAYER]")
	}
	path := ts.MkAbs(args[0])
	a, err := archive.Open(path, archive.OpenOptions{})
	ts.Check(err)
	e, ok := a.Entry(args[1])
	var ref archive.ChunkRef
	if name, isFile := strings.CutPrefix(args[1], "file:"); isFile {
		for _, f := range a.Files() {
			if f.Name == name {
				ok, ref = true, f.Chunk
			}
		}
		e = &archive.TensorEntry{}
	}
	a.Close()
	if !ok {
		ts.Fatalf("no tensor or file %q", args[1])
	}
	if ref.Length > 0 {
		// a sidecar file's chunk
	} else if e.Passthrough {
		ref = *e.Raw
	} else {
		k := 0
		if len(args) > 2 {
			k, _ = strconv.Atoi(args[2])
		}
		ref = e.Layers[k].Chunk
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	ts.Check(err)
	defer f.Close()
	off := ref.Offset + ref.Length/2
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	ts.Check(err)
	b[0] ^= 0x5a
	_, err = f.WriteAt(b, off)
	ts.Check(err)
}

// truncate FILE N: cut FILE to N bytes (N < 0: remove -N bytes).
func cmdTruncate(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: truncate FILE N")
	}
	path := ts.MkAbs(args[0])
	n, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	if n < 0 {
		st, err := os.Stat(path)
		ts.Check(err)
		n += st.Size()
	}
	ts.Check(os.Truncate(path, n))
}

// cut SRC DST WHERE: copy the first bytes of archive SRC to DST, as an
// interrupted download would leave it. WHERE is base (exactly header,
// index and base layers), base+N, base-N, mid (halfway between the end of
// the base layers and the end of the file), end-N, or a byte count.
func cmdCut(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: cut SRC DST base|base+N|base-N|mid|end-N|N")
	}
	src := ts.MkAbs(args[0])
	a, err := archive.Open(src, archive.OpenOptions{})
	ts.Check(err)
	base, full := a.BaseBytes(), a.FullSize()
	a.Close()
	n, err := cutOffset(args[2], base, full)
	ts.Check(err)
	data, err := os.ReadFile(src)
	ts.Check(err)
	if n < 0 || n > int64(len(data)) {
		ts.Fatalf("cut at %d: the file is %d bytes", n, len(data))
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), data[:n], 0o644))
	ts.Logf("cut %s at %d bytes (base layers end at %d, file %d)", args[0], n, base, full)
}

func cutOffset(where string, base, full int64) (int64, error) {
	num := func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
	switch {
	case where == "base":
		return base, nil
	case where == "mid":
		return base + (full-base)/2, nil
	case strings.HasPrefix(where, "base+"):
		d, err := num(where[5:])
		return base + d, err
	case strings.HasPrefix(where, "base-"):
		d, err := num(where[5:])
		return base - d, err
	case strings.HasPrefix(where, "end-"):
		d, err := num(where[4:])
		return full - d, err
	}
	return num(where)
}

// grabenv VAR REGEXP: set VAR to the first submatch of REGEXP in the last
// command's stderr (or stdout, if stderr has no match).
func cmdGrabEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: grabenv VAR REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	for _, f := range []string{"stderr", "stdout"} {
		if m := re.FindStringSubmatch(ts.ReadFile(f)); len(m) > 1 {
			ts.Setenv(args[0], m[1])
			return
		}
	}
	ts.Fatalf("grabenv: no match for %q in stderr or stdout", args[1])
}

// edit-plan IN OUT: copy plan file IN to OUT with one setting changed by
// hand (the first seed_bits 16 becomes 15), as a careless edit would.
func cmdEditPlan(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: edit-plan IN OUT")
	}
	b, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	e := strings.Replace(string(b), `"seed_bits": 16`, `"seed_bits": 15`, 1)
	if e == string(b) {
		ts.Fatalf("edit-plan: no seed_bits 16 in %s", args[0])
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(e), 0o644))
}
