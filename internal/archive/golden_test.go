package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/seedlm/seedlm/internal/encoder"
)

// The golden archives are what every later version must keep decoding to
// exactly the same floats (golden-v1.expected.json, the same for every
// version: the payloads did not change). golden-v1.seedlm is frozen; the
// current version's file is regenerated (only on a deliberate format
// change, under a new file name for a new version) with
//
//	go test ./internal/archive -run TestGolden -update
var update = flag.Bool("update", false, "regenerate the current version's golden archive in testdata/archive")

var (
	goldenPath     = filepath.Join("..", "..", "testdata", "archive", "golden-v1.seedlm")
	goldenPaths    = []string{goldenPath, goldenCurrent}
	goldenCurrent  = filepath.Join("..", "..", "testdata", "archive", fmt.Sprintf("golden-v%d.seedlm", Version))
	goldenExpected = filepath.Join("..", "..", "testdata", "archive", "golden-v1.expected.json")
)

// goldenTensors is the synthetic input of the golden archive. The weights
// are a closed formula (float64 sin, rounded to float32) so the input can
// be rebuilt anywhere.
func goldenTensors() []*testTensor {
	wave := func(n int, a, f, ph float64) []float32 {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(a * math.Sin(f*float64(i)+ph) * (1 + 0.5*math.Cos(0.11*float64(i*i))))
		}
		return w
	}
	step := make([]byte, 8)
	binary.LittleEndian.PutUint64(step, 1000)
	norm := make([]float32, 16)
	for i := range norm {
		norm[i] = 1 + float32(i)/16
	}
	return []*testTensor{
		{info: Info{Name: "layers.0.attn.weight", DType: "F32", Shape: []int64{4, 16}}, rule: "default",
			w: wave(64, 0.04, 0.37, 0.2), layers: []encoder.Params{
				{BlockSize: 8, LatentDim: 3, SeedBits: 8, CoeffBits: 4, ExpBits: 4},
				{BlockSize: 8, LatentDim: 3, SeedBits: 8, CoeffBits: 4, ExpBits: 4}}},
		{info: Info{Name: "layers.0.norm.weight", DType: "F32", Shape: []int64{16}}, rule: "passthrough: 1-D tensor", raw: f32Bytes(norm)},
		{info: Info{Name: "layers.0.mlp.weight", DType: "BF16", Shape: []int64{3, 10}}, rule: "default",
			w: wave(30, 0.5, 1.3, 1), layers: []encoder.Params{
				{BlockSize: 8, LatentDim: 2, SeedBits: 10, CoeffBits: 3, ExpBits: 4}}},
		{info: Info{Name: "step", DType: "I64", Shape: []int64{}}, rule: "passthrough: dtype I64", raw: step},
	}
}

func goldenHeader() Header {
	return Header{
		SourceFormat: "safetensors", SourceFiles: []string{"golden.safetensors"}, SourceBytes: 1234,
		Metadata: map[string]string{"format": "pt"},
		Settings: map[string]string{"generator": "internal/archive TestGolden"},
	}
}

// goldenValues is the committed expectation: per tensor, per layer count,
// every decoded float32 (as strconv 'g' strings, exact) and their SHA-256
// (little-endian float32 bytes); for passthrough tensors the bytes' SHA-256.
type goldenValues struct {
	Tensors []goldenTensor `json:"tensors"`
}

type goldenTensor struct {
	Name   string        `json:"name"`
	RawSHA string        `json:"raw_sha256,omitempty"`
	Decode []goldenLayer `json:"decode,omitempty"`
}

type goldenLayer struct {
	Layers int      `json:"layers"`
	SHA256 string   `json:"sha256"`
	Values []string `json:"values"`
}

func floatsSHA(w []float32) string {
	s := sha256.Sum256(f32Bytes(w))
	return hex.EncodeToString(s[:])
}

func goldenDecode(t *testing.T, a *Archive) goldenValues {
	t.Helper()
	var g goldenValues
	for _, e := range a.Index().Tensors {
		gt := goldenTensor{Name: e.Name}
		if e.Passthrough {
			b, err := a.ReadPassthrough(e.Name)
			if err != nil {
				t.Fatal(err)
			}
			gt.RawSHA = hexSum(b)
		}
		for k := 1; k <= len(e.Layers); k++ {
			w, err := a.DecodeTensor(e.Name, k)
			if err != nil {
				t.Fatal(err)
			}
			gl := goldenLayer{Layers: k, SHA256: floatsSHA(w)}
			for _, x := range w {
				gl.Values = append(gl.Values, strconv.FormatFloat(float64(x), 'g', -1, 32))
			}
			gt.Decode = append(gt.Decode, gl)
		}
		g.Tensors = append(g.Tensors, gt)
	}
	return g
}

func TestGolden(t *testing.T) {
	if *update {
		os.Remove(goldenCurrent)
		writeArchive(t, goldenCurrent, goldenHeader(), goldenTensors())
	}
	var want goldenValues
	b, err := os.ReadFile(goldenExpected)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for _, path := range goldenPaths {
		t.Run(filepath.Base(path), func(t *testing.T) { checkGolden(t, path, want) })
	}
}

func checkGolden(t *testing.T, path string, want goldenValues) {
	a, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatalf("open golden archive: %v", err)
	}
	defer a.Close()
	if err := a.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := goldenDecode(t, a)
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("%d tensors, want %d", len(got.Tensors), len(want.Tensors))
	}
	for i, w := range want.Tensors {
		g := got.Tensors[i]
		if g.Name != w.Name || g.RawSHA != w.RawSHA || len(g.Decode) != len(w.Decode) {
			t.Errorf("tensor %d: %s raw %s %d decodes, want %s raw %s %d", i, g.Name, g.RawSHA, len(g.Decode), w.Name, w.RawSHA, len(w.Decode))
			continue
		}
		for k, wl := range w.Decode {
			gl := g.Decode[k]
			if gl.SHA256 != wl.SHA256 {
				t.Errorf("%s, %d layers: decoded floats hash %s, want %s", w.Name, wl.Layers, gl.SHA256, wl.SHA256)
			}
			// The listed values must agree with the hash (so neither can
			// drift alone) and with the decode.
			vals := make([]float32, len(wl.Values))
			for j, s := range wl.Values {
				x, err := strconv.ParseFloat(s, 32)
				if err != nil {
					t.Fatal(err)
				}
				vals[j] = float32(x)
			}
			if floatsSHA(vals) != wl.SHA256 {
				t.Errorf("%s: expected values do not match their own hash", w.Name)
			}
		}
	}
}

// TestGoldenInputsMatch: the golden archive's errors were measured on the
// formula inputs, so decoding and re-measuring reproduces them exactly.
// This also keeps goldenTensors honest as the documented input.
func TestGoldenInputsMatch(t *testing.T) {
	a := openArchive(t, goldenPath)
	for _, tt := range goldenTensors() {
		e, ok := a.Entry(tt.info.Name)
		if !ok {
			t.Fatalf("golden archive lacks %s", tt.info.Name)
		}
		if tt.raw != nil {
			b, _ := a.ReadPassthrough(tt.info.Name)
			if !bytes.Equal(b, tt.raw) {
				t.Errorf("%s: raw bytes differ from the formula input", tt.info.Name)
			}
			continue
		}
		for k := range e.Layers {
			w, err := a.DecodeTensor(tt.info.Name, k+1)
			if err != nil {
				t.Fatal(err)
			}
			if se := sqErr(tt.w, w); se != e.Layers[k].SqErr {
				t.Errorf("%s layer %d: measured error %v, index says %v", tt.info.Name, k, se, e.Layers[k].SqErr)
			}
		}
	}
}

// TestGoldenRewrite: writing the v1 golden archive's own layers again gives
// the current version's golden bytes, so the writer's encoding (layout,
// index JSON, header) stays stable independently of the encoder.
func TestGoldenRewrite(t *testing.T) {
	a := openArchive(t, goldenPath)
	out := filepath.Join(t.TempDir(), "re.seedlm")
	w, err := Create(out, a.Index().Header)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i := range a.Index().Tensors {
		e := &a.Index().Tensors[i]
		info := Info{Name: e.Name, DType: e.DType, Shape: e.Shape, Shard: e.Shard}
		if e.Passthrough {
			b, err := a.ReadPassthrough(e.Name)
			if err != nil {
				t.Fatal(err)
			}
			err = w.AddPassthroughRule(info, e.Rule, b)
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		res := &encoder.Result{Norm2: e.Norm2}
		for k, le := range e.Layers {
			p, err := a.readChunk(slot{i, k})
			if err != nil {
				t.Fatal(err)
			}
			res.Layers = append(res.Layers, &encoder.Layer{Params: le.Params, ExpBias: le.ExpBias, N: int(le.N), Payload: p})
			res.SqErr = append(res.SqErr, le.SqErr)
		}
		if err := w.AddCoded(info, e.Rule, res); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile(goldenCurrent)
	if !bytes.Equal(got, want) {
		t.Fatalf("rewritten golden archive differs (%d vs %d bytes)", len(got), len(want))
	}
}

// TestFormatWorkedExample keeps docs/FORMAT.md section 9 true: it re-derives
// the example's numbers by hand from the golden file's bytes, following the
// spec (not the encoder's decoder), and checks them against the archive.
func TestFormatWorkedExample(t *testing.T) {
	data, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1863 || binary.LittleEndian.Uint64(data[8:]) != 1669 || binary.LittleEndian.Uint64(data[16:]) != 1863 {
		t.Fatalf("golden header changed: the worked example in docs/FORMAT.md must be updated")
	}
	a := openArchive(t, goldenPath)
	e, _ := a.Entry("layers.0.attn.weight")
	if e.Layers[0].Chunk.Offset != 1733 || e.Layers[1].Chunk.Offset != 1839 || e.Layers[0].ExpBias != -12 || e.Layers[1].ExpBias != -14 {
		t.Fatalf("golden index changed: update docs/FORMAT.md")
	}
	// Spec decode of block 0 (K=8 taps 0,2,3,4; C=8, P=3, B=4, E=4).
	step := func(s uint32) uint32 {
		b := (s ^ s>>2 ^ s>>3 ^ s>>4) & 1
		return s>>1 | b<<7
	}
	block0 := func(chunk []byte, bias int) (seed uint32, ex int, q [3]int64, acc [8]int64) {
		seed = uint32(chunk[0])
		sx := func(v byte) int64 { return int64(int8(v<<4) >> 4) }
		ex = int(sx(chunk[1]&15)) + bias
		q = [3]int64{sx(chunk[1] >> 4), sx(chunk[2] & 15), sx(chunk[2] >> 4)}
		s := seed
		for c := 0; c < 8; c++ {
			for p := 0; p < 3; p++ {
				s = step(s)
				acc[c] += (int64(s) - 128) * q[p]
			}
		}
		return
	}
	seed, ex, q, acc := block0(data[1733:], -12)
	if seed != 212 || ex != -6 || q != [3]int64{-3, 4, -2} || acc != [8]int64{98, 347, 251, 431, 264, 50, 56, 152} {
		t.Errorf("layer 0 block 0: seed %d e %d q %v acc %v", seed, ex, q, acc)
	}
	w0 := float32(float64(acc[0]) * (math.Ldexp(1, ex) / 127))
	seed1, ex1, q1, acc1 := block0(data[1839:], -14)
	if seed1 != 60 || ex1 != -9 || q1 != [3]int64{6, 3, -7} || acc1[0] != -304 {
		t.Errorf("layer 1 block 0: seed %d e %d q %v acc %v", seed1, ex1, q1, acc1[0])
	}
	w1 := w0 + float32(float64(acc1[0])*(math.Ldexp(1, ex1)/127))
	if strconv.FormatFloat(float64(w0), 'g', -1, 32) != "0.012057086" || strconv.FormatFloat(float64(w1), 'g', -1, 32) != "0.0073818895" {
		t.Errorf("weight 0: %v after layer 0, %v after layer 1", w0, w1)
	}
	for k, want := range []float32{w0, w1} {
		got, err := a.DecodeTensor(e.Name, k+1)
		if err != nil || got[0] != want {
			t.Errorf("archive decodes weight 0 with %d layers to %v, the spec gives %v (%v)", k+1, got[0], want, err)
		}
	}
}
