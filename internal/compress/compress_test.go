package compress

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/safetensors"
)

type tensor struct {
	name  string
	shape []int64
	w     []float32
}

// writeModel writes a small F32 safetensors model: coded matrices, a norm
// vector (stored exactly), optionally more.
func writeModel(t testing.TB, path string, extra ...tensor) {
	t.Helper()
	rng := rand.New(rand.NewSource(5))
	gauss := func(name string, shape ...int64) tensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		return tensor{name, shape, w}
	}
	ts := []tensor{
		gauss("embed.weight", 64, 32),
		gauss("layers.0.attn.weight", 32, 32),
		gauss("layers.0.norm.weight", 32),
		gauss("layers.0.mlp.weight", 48, 32),
		gauss("layers.1.attn.weight", 32, 40),
		gauss("head.weight", 40, 32),
	}
	ts = append(ts, extra...)
	hs := make([]safetensors.TensorHeader, len(ts))
	for i, x := range ts {
		hs[i] = safetensors.TensorHeader{Name: x.name, DType: "F32", Shape: x.shape}
	}
	w, err := safetensors.NewWriter(path, hs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		b := make([]byte, 4*len(x.w))
		for i, v := range x.w {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		if err := w.WriteTensor(x.name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func open(t testing.TB, path string) checkpoint.Source {
	t.Helper()
	src, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

var k8 = Settings{Flags: presets.Config{Codec: presets.Codec{SeedBits: 8}}}

// plannedModel writes the test model as m.safetensors in a temp folder,
// opens it and plans it with s and opt.
func plannedModel(t *testing.T, s Settings, opt PlanOptions) (dir, in string, src checkpoint.Source, plan *Plan) {
	t.Helper()
	dir = t.TempDir()
	in = filepath.Join(dir, "m.safetensors")
	writeModel(t, in)
	src = open(t, in)
	plan, err := MakePlan(context.Background(), src, s, opt)
	if err != nil {
		t.Fatal(err)
	}
	return dir, in, src, plan
}

// One Run, the same Run with other worker counts, and parts run separately
// then merged: all the same bytes.
func TestPartsMergeToTheSameArchive(t *testing.T) {
	dir, _, src, plan := plannedModel(t, k8, PlanOptions{HashTensors: true})
	ctx := context.Background()
	whole := filepath.Join(dir, "whole.seedlm")
	if _, err := Run(ctx, src, plan, Part{}, whole, RunOptions{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(whole)
	for _, workers := range []int{2, 5} {
		p := filepath.Join(dir, fmt.Sprintf("w%d.seedlm", workers))
		if _, err := Run(ctx, src, plan, Part{}, p, RunOptions{Workers: workers}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, want) {
			t.Errorf("%d workers: archive differs from 1 worker", workers)
		}
	}
	for _, n := range []int{1, 2, 3, 9} {
		var parts []string
		for i := range n {
			p := filepath.Join(dir, fmt.Sprintf("p%d-%d.seedlm", i, n))
			rep, err := Run(ctx, src, plan, Part{Index: i, Count: n}, p, RunOptions{Workers: 1 + i%2})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Part == nil || rep.Part.Index != i || rep.Part.Count != n || rep.Part.Of != len(plan.Tensors) {
				t.Fatalf("part report %+v", rep.Part)
			}
			parts = append(parts, p)
		}
		out := filepath.Join(dir, fmt.Sprintf("merged%d.seedlm", n))
		if _, err := archive.Merge(ctx, out, parts, archive.CreateOptions{}); err != nil {
			t.Fatalf("%d parts: %v", n, err)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Errorf("%d parts merged: differs from one run", n)
		}
	}
}

// Run writes the archive in one pass, a whole model and a part alike: when
// the first tensor has been added, the one temp file beside the output
// already reaches past that tensor's first chunk at its final offset (the
// index's reserve in front of it), which a spill file holding the chunks
// alone never does.
func TestRunWritesInPlace(t *testing.T) {
	dir, _, src, plan := plannedModel(t, k8, PlanOptions{})
	ctx := context.Background()
	for _, part := range []Part{{}, {Index: 1, Count: 2}} {
		out := filepath.Join(dir, fmt.Sprintf("out-%d-%d.seedlm", part.Index, part.Count))
		var temps []string
		var size int64
		_, err := Run(ctx, src, plan, part, out, RunOptions{Workers: 1, TensorDone: func(k int) {
			if k != 0 {
				return
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "."+filepath.Base(out)) {
					temps = append(temps, e.Name())
					if fi, err := e.Info(); err == nil {
						size = fi.Size()
					}
				}
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		a, err := archive.Open(out, archive.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e := &a.Index().Tensors[0]
		r := e.Raw
		if r == nil {
			r = &e.Layers[0].Chunk
		}
		a.Close()
		if len(temps) != 1 || size < r.Offset+r.Length {
			t.Errorf("part %v: after the first tensor, temp files %v, %d bytes; want one file reaching its chunk's end at %d", part, temps, size, r.Offset+r.Length)
		}
	}
}

// Parts cover every tensor once, are deterministic, and balance the
// estimated cost: no part exceeds the mean by more than the largest
// tensor.
func TestAssign(t *testing.T) {
	p := &Plan{}
	rng := rand.New(rand.NewSource(1))
	for i := range 200 {
		n := int64(1 + rng.Intn(1<<14))
		tp := TensorPlan{Name: fmt.Sprint(i), DType: "F32", Shape: []int64{n}}
		if i%5 == 0 {
			tp.Passthrough = true
		} else {
			tp.Layers = []encoder.Params{encoder.Paper4Bit}
			if i%3 == 0 {
				tp.Layers = append(tp.Layers, encoder.Params{BlockSize: 12, LatentDim: 4, SeedBits: 12, CoeffBits: 4, ExpBits: 4})
			}
		}
		p.Tensors = append(p.Tensors, tp)
	}
	for _, count := range []int{1, 2, 7, 32, 250} {
		a := p.Assign(count)
		if b := p.Assign(count); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%d parts: not deterministic", count)
		}
		seen := make([]bool, len(p.Tensors))
		var total, largest, worst float64
		for _, ps := range a {
			var c float64
			for k, i := range ps {
				if seen[i] || (k > 0 && ps[k-1] >= i) {
					t.Fatalf("%d parts: tensor %d repeated or out of order", count, i)
				}
				seen[i] = true
				c += p.Tensors[i].Cost()
				largest = max(largest, p.Tensors[i].Cost())
			}
			total += c
			worst = max(worst, c)
		}
		for i, ok := range seen {
			if !ok {
				t.Fatalf("%d parts: tensor %d in none", count, i)
			}
		}
		if mean := total / float64(count); worst > mean+largest {
			t.Errorf("%d parts: largest part %.0f, mean %.0f, largest tensor %.0f", count, worst, mean, largest)
		}
	}
}

func TestParsePartAndEnv(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Part
		ok   bool
	}{{"0/1", Part{0, 1}, true}, {" 3/4 ", Part{3, 4}, true}, {"4/4", Part{}, false}, {"-1/4", Part{}, false},
		{"1", Part{}, false}, {"a/b", Part{}, false}, {"0/0", Part{}, false}} {
		got, err := ParsePart(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParsePart(%q) = %v, %v", c.in, got, err)
		}
	}
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, c := range []struct {
		name string
		env  func(string) string
		want Part
		from string // "" = error
	}{
		{"seedlm", env("SEEDLM_PART", "2", "SEEDLM_PARTS", "5"), Part{2, 5}, "SEEDLM_PART"},
		{"seedlm wins", env("SEEDLM_PART", "1", "SEEDLM_PARTS", "2", "JOB_COMPLETION_INDEX", "0"), Part{1, 2}, "SEEDLM_PART"},
		{"seedlm without count", env("SEEDLM_PART", "1"), Part{}, ""},
		{"kubernetes", env("JOB_COMPLETION_INDEX", "3", "SEEDLM_PARTS", "4"), Part{3, 4}, "Kubernetes"},
		{"kubernetes without count", env("JOB_COMPLETION_INDEX", "3"), Part{}, ""},
		{"kubernetes index too large", env("JOB_COMPLETION_INDEX", "4", "SEEDLM_PARTS", "4"), Part{}, ""},
		{"slurm", env("SLURM_ARRAY_TASK_ID", "2", "SLURM_ARRAY_TASK_MIN", "0", "SLURM_ARRAY_TASK_MAX", "3", "SLURM_ARRAY_TASK_COUNT", "4"), Part{2, 4}, "Slurm"},
		{"slurm from 1", env("SLURM_ARRAY_TASK_ID", "1", "SLURM_ARRAY_TASK_MIN", "1", "SLURM_ARRAY_TASK_MAX", "8"), Part{0, 8}, "Slurm"},
		{"slurm with a step", env("SLURM_ARRAY_TASK_ID", "2", "SLURM_ARRAY_TASK_MIN", "0", "SLURM_ARRAY_TASK_MAX", "6", "SLURM_ARRAY_TASK_COUNT", "4"), Part{}, ""},
		{"nothing", env(), Part{}, ""},
	} {
		got, from, err := PartFromEnv(c.env)
		if c.from == "" {
			if err == nil {
				t.Errorf("%s: %v from %s, want an error", c.name, got, from)
			}
			continue
		}
		if err != nil || got != c.want || !strings.Contains(from, c.from) {
			t.Errorf("%s: %v from %q (%v), want %v from %s", c.name, got, from, err, c.want, c.from)
		}
	}
}

// A plan file round-trips exactly; a changed byte or an edited value is
// refused.
func TestPlanFile(t *testing.T) {
	dir, _, _, plan := plannedModel(t, Settings{Flags: presets.Config{TargetBPW: 6, Codec: presets.Codec{SeedBits: 8}}}, PlanOptions{HashTensors: true})
	if !plan.Tensors[0].Measured || plan.Tensors[0].SHA256 == "" || plan.SHA256 == "" {
		t.Fatalf("plan lacks measurements or hashes: %+v", plan.Tensors[0])
	}
	p := filepath.Join(dir, "plan.json")
	if err := plan.WriteFile(p, false); err != nil {
		t.Fatal(err)
	}
	if err := plan.WriteFile(p, false); err == nil {
		t.Error("overwrote a plan file without overwrite")
	}
	back, err := ReadPlan(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.contentHash() != plan.SHA256 || fmt.Sprint(back) != fmt.Sprint(plan) {
		t.Fatal("plan changed on the round trip")
	}
	data, _ := os.ReadFile(p)
	edited := bytes.Replace(data, []byte(`"seed_bits": 8`), []byte(`"seed_bits": 9`), 1)
	os.WriteFile(p, edited, 0o644)
	var pe *PlanFileError
	if _, err := ReadPlan(p); !errors.As(err, &pe) || !strings.Contains(err.Error(), "edited or damaged") {
		t.Errorf("edited plan: %v", err)
	}
	os.WriteFile(p, data[:len(data)/2], 0o644)
	if _, err := ReadPlan(p); !errors.As(err, &pe) {
		t.Errorf("cut plan: %v", err)
	}
}

// A plan used on another input is refused before any work, naming what
// differs; a tensor whose bytes changed is caught when a part reads it.
func TestPlanMismatch(t *testing.T) {
	dir, in, _, plan := plannedModel(t, k8, PlanOptions{HashTensors: true})
	ctx := context.Background()
	other := filepath.Join(dir, "o", "m.safetensors")
	os.Mkdir(filepath.Dir(other), 0o755)
	writeModel(t, other, tensor{"extra.weight", []int64{4}, []float32{1, 2, 3, 4}})
	var me *MismatchError
	_, err := Run(ctx, open(t, other), plan, Part{Index: 0, Count: 2}, filepath.Join(dir, "o.seedlm"), RunOptions{PlanPath: "plan.json"})
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "m.safetensors is") || !strings.Contains(err.Error(), "the input has 7 tensors, the plan 6") {
		t.Errorf("other input: %v", err)
	}
	// Same layout, one weight changed: only the tensor hash can tell.
	data, _ := os.ReadFile(in)
	same := filepath.Join(dir, "s", "m.safetensors")
	os.Mkdir(filepath.Dir(same), 0o755)
	// The file is under 2 MiB, so its head/tail hash covers it all: fix the
	// plan's record of it to see the tensor check alone.
	data[len(data)-3] ^= 1 // a weight of the last tensor
	os.WriteFile(same, data, 0o644)
	id, err := identify(open(t, same))
	if err != nil {
		t.Fatal(err)
	}
	plan.Source = id
	_, err = Run(ctx, open(t, same), plan, Part{}, filepath.Join(dir, "s.seedlm"), RunOptions{})
	if !errors.As(err, &me) {
		t.Errorf("changed bytes: %v", err)
	}
	// Settings given again must be the plan's.
	if err := plan.MatchSettings(k8, "p"); err != nil {
		t.Errorf("same settings: %v", err)
	}
	if err := plan.MatchSettings(Settings{}, "p"); err != nil {
		t.Errorf("no settings: %v", err)
	}
	if err := plan.MatchSettings(Settings{Flags: presets.Config{Preset: "fast"}}, "p"); !errors.As(err, &me) || !strings.Contains(err.Error(), "preset=fast") {
		t.Errorf("other settings: %v", err)
	}
}

// A tensor whose coded relative error would be ≥ MaxRelErr (here a codec
// with one coefficient per 256 weights) is stored exactly with a warning,
// not coded with an error close to 1.
func TestUncodableTensorIsStoredExactly(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.safetensors")
	huge := make([]float32, 32*32)
	rng := rand.New(rand.NewSource(3))
	for i := range huge {
		huge[i] = float32(rng.NormFloat64() * 0.02)
	}
	writeModel(t, in, tensor{"huge.weight", []int64{32, 32}, huge})
	src := open(t, in)
	ctx := context.Background()
	useless := Settings{File: presets.Config{LayerSpecific: []presets.Rule{
		{Pattern: "huge.weight", Codec: presets.Codec{BlockSize: 256, LatentDim: 1, SeedBits: 8}}}}}
	plan, err := MakePlan(ctx, src, useless, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.seedlm")
	rep, err := Run(ctx, src, plan, Part{}, out, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], `tensor "huge.weight"`) || !strings.Contains(rep.Warnings[0], "stored exactly") {
		t.Errorf("warnings %q", rep.Warnings)
	}
	a, err := archive.Open(out, archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	e, _ := a.Entry("huge.weight")
	raw, _ := src.ReadRaw("huge.weight")
	got, err := a.ReadPassthrough("huge.weight")
	if !e.Passthrough || err != nil || !bytes.Equal(got, raw) {
		t.Errorf("huge.weight: passthrough %v, %v", e.Passthrough, err)
	}
	for _, st := range rep.PerTensor {
		if !st.Passthrough && st.RelErr[0] >= MaxRelErr {
			t.Errorf("%s coded with relative error %g", st.Name, st.RelErr[0])
		}
	}
}

func TestMaxLayersIsTheFormatLimit(t *testing.T) {
	if presets.MaxLayers != archive.MaxLayers {
		t.Fatalf("presets.MaxLayers %d, archive.MaxLayers %d", presets.MaxLayers, archive.MaxLayers)
	}
}

// Bad values are refused by Validate, the one check every source of
// settings goes through.
func TestSettingsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  presets.Config
	}{
		{"target_bpw huge", presets.Config{TargetBPW: 1e308}},
		{"target_bpw inf", presets.Config{TargetBPW: math.Inf(1)}},
		{"target_bpw nan", presets.Config{TargetBPW: math.NaN()}},
		{"target_bpw negative", presets.Config{TargetBPW: -1}},
		{"target_ratio nan", presets.Config{TargetRatio: math.NaN()}},
		{"target_ratio inf", presets.Config{TargetRatio: math.Inf(1)}},
		{"target_ratio tiny", presets.Config{TargetRatio: 0.1}},
		{"layers 17", presets.Config{Layers: 17}},
		{"rule layers 17", presets.Config{LayerSpecific: []presets.Rule{{Pattern: "*", Layers: 17}}}},
		{"level nan", presets.Config{CompressionLevel: math.NaN()}},
	} {
		for _, s := range []Settings{{Flags: c.cfg}, {File: c.cfg}} {
			if c.cfg.LayerSpecific != nil && s.Flags.LayerSpecific != nil {
				continue // rules only come from files
			}
			if err := s.Validate(); err == nil {
				t.Errorf("%s accepted", c.name)
			}
		}
	}
	if err := (Settings{Flags: presets.Config{TargetBPW: 64, Layers: 16}}).Validate(); err != nil {
		t.Errorf("limits refused: %v", err)
	}
}
