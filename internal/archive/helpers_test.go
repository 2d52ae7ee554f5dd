package archive

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/seedlm/seedlm/internal/encoder"
)

// Small codec settings keep the exhaustive seed search fast in tests.
var (
	pK8  = encoder.Params{BlockSize: 8, LatentDim: 3, SeedBits: 8, CoeffBits: 4, ExpBits: 4}
	pK9  = encoder.Params{BlockSize: 8, LatentDim: 3, SeedBits: 9, CoeffBits: 4, ExpBits: 4}
	pK10 = encoder.Params{BlockSize: 8, LatentDim: 2, SeedBits: 10, CoeffBits: 3, ExpBits: 4}
)

// testTensor is one input tensor: passthrough (raw set) or coded.
type testTensor struct {
	info   Info
	rule   string
	raw    []byte
	w      []float32
	layers []encoder.Params
	res    *encoder.Result // filled by writeArchive
}

func gaussian(seed uint64, n int, sigma float64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * sigma)
	}
	return w
}

func f32Bytes(w []float32) []byte {
	b := make([]byte, 4*len(w))
	for i, x := range w {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// fixture is the synthetic tensor set used by most tests: passthrough
// tensors of several dtypes and ranks, and coded tensors with 1 to 3 layers.
func fixture() []*testTensor {
	ids := make([]byte, 8*3)
	for i := range 3 {
		binary.LittleEndian.PutUint64(ids[8*i:], uint64(i*7+1))
	}
	return []*testTensor{
		{info: Info{Name: "model.embed.weight", DType: "F32", Shape: []int64{12, 16}}, rule: "default", w: gaussian(1, 192, 0.02), layers: []encoder.Params{pK8, pK8, pK8}},
		{info: Info{Name: "model.norm.weight", DType: "F32", Shape: []int64{16}}, rule: "passthrough: 1-D tensor", raw: f32Bytes(gaussian(2, 16, 1))},
		{info: Info{Name: "model.mlp.weight", DType: "BF16", Shape: []int64{10, 13}}, rule: "layer_specific \"*.mlp.*\"", w: gaussian(3, 130, 0.05), layers: []encoder.Params{pK9, pK10}},
		{info: Info{Name: "position_ids", DType: "I64", Shape: []int64{3}}, rule: "passthrough: dtype I64", raw: ids},
		{info: Info{Name: "scale", DType: "F32", Shape: []int64{}}, rule: "passthrough: 0-D tensor", raw: f32Bytes([]float32{0.5})},
		{info: Info{Name: "model.out.weight", DType: "F32", Shape: []int64{4, 20}}, rule: "default", w: gaussian(4, 80, 1), layers: []encoder.Params{pK8}},
		{info: Info{Name: "model.attn.weight", DType: "F16", Shape: []int64{8, 9}}, rule: "default", w: gaussian(5, 72, 0.1), layers: []encoder.Params{pK8, pK9}},
	}
}

func testHeader() Header {
	return Header{
		SourceFormat: "safetensors",
		SourceFiles:  []string{"model.safetensors"},
		SourceBytes:  12345,
		Metadata:     map[string]string{"format": "pt", "b": "2", "a": "1"},
		Settings:     map[string]string{"preset": "test", "level": "3"},
	}
}

var encodeOpt = encoder.Options{Workers: 1}

// encodeAll fills res for every coded tensor (once per tensor set).
func encodeAll(t testing.TB, ts []*testTensor) {
	t.Helper()
	for _, tt := range ts {
		if tt.raw != nil || tt.res != nil || len(tt.layers) == 0 {
			continue
		}
		res, err := encoder.Encode(context.Background(), tt.info.Name, tt.w, tt.layers, encodeOpt)
		if err != nil {
			t.Fatalf("encode %s: %v", tt.info.Name, err)
		}
		tt.res = res
	}
}

// writeArchive writes ts as compress does: with a plan (one pass).
func writeArchive(t testing.TB, path string, h Header, ts []*testTensor) {
	t.Helper()
	writeArchiveWith(t, path, h, ts, CreateOptions{Plan: planOf(ts)})
}

// planOf declares ts for CreateOptions.Plan.
func planOf(ts []*testTensor) []PlannedTensor {
	plan := []PlannedTensor{}
	for _, tt := range ts {
		plan = append(plan, PlannedTensor{Info: tt.info, Rule: tt.rule, Layers: tt.layers})
	}
	return plan
}

func writeArchiveWith(t testing.TB, path string, h Header, ts []*testTensor, opt CreateOptions) {
	t.Helper()
	encodeAll(t, ts)
	w, err := CreateWith(path, h, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, tt := range ts {
		if err := addTensor(w, tt); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// addTensor adds an encoded test tensor the way its kind asks.
func addTensor(w *Writer, tt *testTensor) error {
	if tt.raw != nil {
		return w.AddPassthroughRule(tt.info, tt.rule, tt.raw)
	}
	return w.AddCoded(tt.info, tt.rule, tt.res)
}

var sharedFixture struct {
	ts   []*testTensor
	data []byte
}

// fixtureArchive returns the fixture tensors (encoded once per test binary)
// and a fresh copy of their archive at dir/name.
func fixtureArchive(t testing.TB, dir string) ([]*testTensor, string, []byte) {
	t.Helper()
	if sharedFixture.ts == nil {
		ts := fixture()
		tmp := t.TempDir()
		p := filepath.Join(tmp, "fixture.seedlm")
		writeArchive(t, p, testHeader(), ts)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sharedFixture.ts, sharedFixture.data = ts, b
	}
	p := filepath.Join(dir, "a.seedlm")
	if err := os.WriteFile(p, sharedFixture.data, 0o644); err != nil {
		t.Fatal(err)
	}
	return sharedFixture.ts, p, append([]byte(nil), sharedFixture.data...)
}

func decodeRef(t testing.TB, res *encoder.Result, layers int) []float32 {
	t.Helper()
	out, err := encoder.DecodeLayers(res.Layers[:layers], res.Layers[0].N)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sqErr(w, got []float32) float64 {
	var s float64
	for i := range w {
		d := float64(w[i]) - float64(got[i])
		s += d * d
	}
	return s
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// listDir returns the names in dir (to catch leftover temp files).
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// openArchive opens path, failing the test if it cannot, and closes it when
// the test ends.
func openArchive(t testing.TB, path string) *Archive {
	t.Helper()
	a, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}
