package safetensors

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"github.com/seedlm/seedlm/internal/dtype"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/safetensors/go_written.* golden files")

const fixtures = "../../testdata/safetensors"

type expFile struct {
	Metadata map[string]string `json:"metadata"`
	Tensors  []struct {
		Name  string  `json:"name"`
		DType string  `json:"dtype"`
		Shape []int64 `json:"shape"`
		Raw   string  `json:"raw"`
		F32   []any   `json:"f32,omitempty"`
	} `json:"tensors"`
}

func readExpected(t *testing.T, path string) expFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e expFile
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func expF32(v any) float32 {
	switch x := v.(type) {
	case float64:
		return float32(x)
	case string:
		switch x {
		case "inf":
			return float32(math.Inf(1))
		case "-inf":
			return float32(math.Inf(-1))
		}
	}
	return float32(math.NaN())
}

// checkAgainst compares an open file with an expected-values JSON written by
// scripts/safetensors_numpy.py (an independent writer).
func checkAgainst(t *testing.T, f *File, exp expFile) {
	t.Helper()
	if len(f.Metadata()) != len(exp.Metadata) {
		t.Errorf("metadata %v, want %v", f.Metadata(), exp.Metadata)
	}
	for k, v := range exp.Metadata {
		if f.Metadata()[k] != v {
			t.Errorf("metadata[%q] = %q, want %q", k, f.Metadata()[k], v)
		}
	}
	ts := f.Tensors()
	if len(ts) != len(exp.Tensors) {
		t.Fatalf("%d tensors, want %d", len(ts), len(exp.Tensors))
	}
	for i, w := range exp.Tensors {
		g := ts[i]
		if g.Name != w.Name || g.DType != w.DType || len(g.Shape) != len(w.Shape) {
			t.Fatalf("tensor %d = %s %s %v, want %s %s %v", i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
		}
		raw, err := f.ReadRaw(w.Name)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := base64.StdEncoding.DecodeString(w.Raw)
		if !bytes.Equal(raw, want) {
			t.Errorf("%s: bytes differ", w.Name)
		}
		if w.F32 == nil {
			if dtype.CanFloat32(w.DType) {
				continue // F8 types: checked value by value in TestF8Values
			}
			if _, err := f.ReadFloat32(w.Name); err == nil {
				t.Errorf("%s: ReadFloat32 of %s succeeded", w.Name, w.DType)
			}
			continue
		}
		vals, err := f.ReadFloat32(w.Name)
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range vals {
			e := expF32(w.F32[j])
			if v != e && !(math.IsNaN(float64(v)) && math.IsNaN(float64(e))) {
				t.Fatalf("%s[%d] = %v, want %v", w.Name, j, v, e)
			}
		}
	}
}

func TestReadsIndependentWriter(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "numpy_written.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkAgainst(t, f, readExpected(t, filepath.Join(fixtures, "numpy_written.safetensors.expected.json")))
	if len(f.Tensors()) != len(dtype.Names())+2 {
		t.Errorf("fixture should hold every dtype plus a scalar and an empty tensor")
	}
}

// TestWriterGolden rewrites the numpy fixture with Writer and compares with
// the committed go_written.safetensors, which scripts/safetensors_numpy.py
// check has verified independently (go test -update regenerates both).
func TestWriterGolden(t *testing.T) {
	src, err := Open(filepath.Join(fixtures, "numpy_written.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var hdrs []TensorHeader
	for _, ts := range src.Tensors() {
		hdrs = append(hdrs, ts.TensorHeader)
	}
	md := map[string]string{"format": "pt", "writer": "seedlm"}
	out := filepath.Join(t.TempDir(), "go_written.safetensors")
	w, err := NewWriter(out, hdrs, md)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hdrs {
		b, err := src.ReadRaw(h.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(h.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if hl := int(got[0]) | int(got[1])<<8 | int(got[2])<<16; hl%8 != 0 || got[8+hl-1] != ' ' && got[8+hl-1] != '}' {
		t.Errorf("header length %d is not padded to 8", hl)
	}
	// Round trip through our reader.
	back, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	exp := readExpected(t, filepath.Join(fixtures, "numpy_written.safetensors.expected.json"))
	exp.Metadata = md
	checkAgainst(t, back, exp)

	golden := filepath.Join(fixtures, "go_written.safetensors")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		eb, _ := json.MarshalIndent(exp, "", " ")
		if err := os.WriteFile(golden+".expected.json", eb, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("writer output differs from %s (run go test -update, then scripts/safetensors_numpy.py check)", golden)
	}
}

func TestSmallStagingChunks(t *testing.T) {
	old := chunkBytes
	defer func() { chunkBytes = old }()
	chunkBytes = 3 // one BF16/F16 element per chunk, less than one F64
	f, err := Open(filepath.Join(fixtures, "numpy_written.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkAgainst(t, f, readExpected(t, filepath.Join(fixtures, "numpy_written.safetensors.expected.json")))
}

func TestRealWeights(t *testing.T) {
	dir := "../../../shared/data"
	f32p := filepath.Join(dir, "stories260K/stories260K.f32.safetensors")
	if _, err := os.Stat(f32p); err != nil {
		t.Skipf("needs the real models in ../shared/data beside the repository (on the development machine only), absent here: %v", err)
	}
	f32, err := Open(f32p)
	if err != nil {
		t.Fatal(err)
	}
	defer f32.Close()
	bf, err := Open(filepath.Join(dir, "stories260K/stories260K.bf16.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	if len(f32.Tensors()) != 48 || len(bf.Tensors()) != 48 {
		t.Fatalf("tensor counts %d, %d; want 48", len(f32.Tensors()), len(bf.Tensors()))
	}
	var params int
	for _, ts := range f32.Tensors() {
		a, err := f32.ReadFloat32(ts.Name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := bf.ReadFloat32(ts.Name)
		if err != nil {
			t.Fatal(err)
		}
		params += len(a)
		// The BF16 file is the F32 one rounded to nearest even.
		for i := range a {
			u := math.Float32bits(a[i])
			r := math.Float32frombits((u + 0x7fff + (u>>16)&1) &^ 0xffff)
			if b[i] != r {
				t.Fatalf("%s[%d]: bf16 %v, f32 %v rounds to %v", ts.Name, i, b[i], a[i], r)
			}
		}
	}
	if params != 292800 {
		t.Errorf("%d parameters, want 292800", params)
	}
	oc, err := Open(filepath.Join(dir, "ppocrv4-rec/ch_PP-OCRv4_rec.f32.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	params = 0
	for _, ts := range oc.Tensors() {
		v, err := oc.ReadFloat32(ts.Name)
		if err != nil {
			t.Fatal(err)
		}
		params += len(v)
	}
	if len(oc.Tensors()) != 122 || params != 2690109 {
		t.Errorf("ppocr: %d tensors, %d params; want 122, 2690109", len(oc.Tensors()), params)
	}
}

func TestOpenErrorsNameFile(t *testing.T) {
	for _, p := range []string{"/nonexistent/x.safetensors", fixtures} {
		_, err := Open(p)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Open(%s): %v", p, err)
		}
	}
}

// BenchmarkReadFloat32BF16 reads and widens a 32 MiB BF16 tensor from a file
// (in the page cache): the whole path, not just the conversion loop.
func BenchmarkReadFloat32BF16(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.safetensors")
	const n = 16 << 20
	w, err := NewWriter(path, []TensorHeader{{Name: "w", DType: "BF16", Shape: []int64{n}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	w.WriteTensor("w", make([]byte, 2*n))
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	dst := make([]float32, n)
	b.SetBytes(2 * n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if dst, err = f.ReadFloat32Into("w", dst); err != nil {
			b.Fatal(err)
		}
	}
}
