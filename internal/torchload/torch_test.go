package torchload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const fixtures = "../../testdata/torch"

type expTensor struct {
	Name  string
	DType string
	Shape []int64
	Raw   string
	F32   []any
}

func loadExpected(t *testing.T, name string) []expTensor {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name+".expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []expTensor
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func expFloat(v any) float32 {
	switch x := v.(type) {
	case float64:
		return float32(x)
	case string:
		switch x {
		case "nan":
			return float32(math.NaN())
		case "inf":
			return float32(math.Inf(1))
		case "-inf":
			return float32(math.Inf(-1))
		}
	}
	panic("bad expected value")
}

// TestFixturesMatchPyTorch compares every tensor of every fixture with the
// values PyTorch itself wrote next to it.
func TestFixturesMatchPyTorch(t *testing.T) {
	for _, fx := range []string{"dtypes.pt", "views.pt", "tied.pt", "nested_wrapped.pt", "nested_deep.pt",
		"params.pt", "params_proto4.pt", "legacy.pt", "bigendian.pt", "legacy_bigendian.pt"} {
		t.Run(fx, func(t *testing.T) {
			want := loadExpected(t, fx)
			f, err := Open(filepath.Join(fixtures, fx))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Legacy() != strings.HasPrefix(fx, "legacy") {
				t.Errorf("Legacy() = %v", f.Legacy())
			}
			got := f.Tensors()
			if len(got) != len(want) {
				t.Fatalf("%d tensors, want %d: %v", len(got), len(want), got)
			}
			for i, w := range want {
				g := got[i]
				if g.Name != w.Name || g.DType != w.DType || !equalShape(g.Shape, w.Shape) {
					t.Errorf("tensor %d = %s %s %v, want %s %s %v", i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
					continue
				}
				raw, err := f.ReadRaw(w.Name)
				if err != nil {
					t.Errorf("%s: %v", w.Name, err)
					continue
				}
				wantRaw, _ := base64.StdEncoding.DecodeString(w.Raw)
				if !bytes.Equal(raw, wantRaw) {
					t.Errorf("%s: raw bytes differ:\n got % x\nwant % x", w.Name, raw, wantRaw)
				}
				if w.F32 == nil {
					if _, err := f.ReadFloat32(w.Name); err == nil || !strings.Contains(err.Error(), w.Name) {
						t.Errorf("%s: ReadFloat32 of %s: err = %v, want an error naming the tensor", w.Name, w.DType, err)
					}
					continue
				}
				vals, err := f.ReadFloat32(w.Name)
				if err != nil {
					t.Errorf("%s: %v", w.Name, err)
					continue
				}
				if len(vals) != len(w.F32) {
					t.Errorf("%s: %d values, want %d", w.Name, len(vals), len(w.F32))
					continue
				}
				for j, v := range vals {
					e := expFloat(w.F32[j])
					if !(v == e && math.Signbit(float64(v)) == math.Signbit(float64(e))) && !(math.IsNaN(float64(v)) && math.IsNaN(float64(e))) {
						t.Errorf("%s[%d] = %v, want %v", w.Name, j, v, e)
						break
					}
				}
			}
		})
	}
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSparseViewPath forces the run-by-run reader (used for a small view of
// a big storage) and checks it gives the same bytes as the in-memory gather.
func TestSparseViewPath(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "views.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dense := map[string][]byte{}
	for _, ts := range f.Tensors() {
		dense[ts.Name], err = f.ReadRaw(ts.Name)
		if err != nil {
			t.Fatal(err)
		}
	}
	old := denseSlack
	denseSlack = -1 << 40 // every non-contiguous view takes the sparse path
	defer func() { denseSlack = old }()
	for _, ts := range f.Tensors() {
		b, err := f.ReadRaw(ts.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, dense[ts.Name]) {
			t.Errorf("%s: sparse path % x, dense path % x", ts.Name, b, dense[ts.Name])
		}
	}
}

// TestSmallStagingChunks converts through a 7-byte staging buffer (many
// partial chunks) and must match the one-chunk result.
func TestSmallStagingChunks(t *testing.T) {
	for _, fx := range []string{"dtypes.pt", "legacy_bigendian.pt"} {
		f, err := Open(filepath.Join(fixtures, fx))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]float32{}
		for _, ts := range f.Tensors() {
			want[ts.Name], _ = f.ReadFloat32(ts.Name)
		}
		old := stageBytes
		stageBytes = 7
		for _, ts := range f.Tensors() {
			got, err := f.ReadFloat32(ts.Name)
			if (err == nil) != (want[ts.Name] != nil) {
				t.Errorf("%s: %v", ts.Name, err)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[ts.Name][i]) {
					t.Errorf("%s[%d] = %v, want %v", ts.Name, i, got[i], want[ts.Name][i])
				}
			}
		}
		stageBytes = old
		f.Close()
	}
}

func TestReadFloat32IntoReusesBuffer(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "views.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]float32, 100)
	out, err := f.ReadFloat32Into("transposed", buf)
	if err != nil {
		t.Fatal(err)
	}
	if &out[0] != &buf[0] || len(out) != 60 {
		t.Fatalf("did not reuse the buffer (len %d)", len(out))
	}
	// transposed[i][j] = base[j][i] = 12*j + i, shape [12, 5]
	for i := 0; i < 12; i++ {
		for j := 0; j < 5; j++ {
			if out[i*5+j] != float32(12*j+i) {
				t.Fatalf("transposed[%d][%d] = %v", i, j, out[i*5+j])
			}
		}
	}
}

func TestRealStories260K(t *testing.T) {
	path := "../../../shared/data/stories260K/stories260K.pt"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("needs the real models in ../shared/data beside the repository (on the development machine only), absent here: %v", err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts := f.Tensors()
	if len(ts) != 48 {
		t.Fatalf("%d tensors, want 48", len(ts))
	}
	var params int64
	for _, tn := range ts {
		v, err := f.ReadFloat32(tn.Name)
		if err != nil {
			t.Fatal(err)
		}
		params += int64(len(v))
		if tn.DType != "F32" {
			t.Errorf("%s: dtype %s", tn.Name, tn.DType)
		}
	}
	if params != 292800 {
		t.Errorf("%d parameters, want 292800", params)
	}
}

// Tied weights saved once are found without reading anything; a view of a
// different part of the storage, or a copy, is not the same.
func TestSameAsAndNonTensorKeys(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "tied.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, want := range map[string]string{"embed.weight": "", "lm_head.weight": "embed.weight", "tail": "", "other": ""} {
		if got := f.SameAs(name); got != want {
			t.Errorf("SameAs(%q) = %q, want %q", name, got, want)
		}
	}
	raw, _ := f.ReadRaw("lm_head.weight")
	b := make([]byte, 8)
	if err := f.ReadRawAt("lm_head.weight", b, 16); err != nil || !bytes.Equal(b, raw[16:24]) {
		t.Errorf("ReadRawAt: %v", err)
	}
	tail, _ := f.ReadRaw("tail")
	if err := f.ReadRawAt("tail", b, 4); err != nil || !bytes.Equal(b, tail[4:12]) {
		t.Errorf("ReadRawAt of a view: %v", err)
	}
	if err := f.ReadRawAt("tail", b, int64(len(tail))-4); err == nil {
		t.Error("ReadRawAt past the end succeeded")
	}
	if len(f.NonTensorKeys()) != 0 {
		t.Errorf("tied.pt: non-tensor keys %v", f.NonTensorKeys())
	}
	w, err := Open(filepath.Join(fixtures, "nested_wrapped.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	keys := w.NonTensorKeys()
	slices.Sort(keys)
	if strings.Join(keys, ",") != "epoch,lr,name" {
		t.Errorf("nested_wrapped.pt: non-tensor keys %v, want epoch, lr, name", keys)
	}
}
