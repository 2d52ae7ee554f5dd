package archive

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/encoder"
)

func TestRoundTrip(t *testing.T) {
	ts, path, data := fixtureArchive(t, t.TempDir())
	a := openArchive(t, path)
	if err := a.Verify(context.Background()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if a.Size() != int64(len(data)) || a.FullSize() != a.Size() {
		t.Errorf("Size %d FullSize %d, file is %d bytes", a.Size(), a.FullSize(), len(data))
	}
	if m := a.Missing(); len(m) != 0 {
		t.Errorf("complete archive reports missing chunks %v", m)
	}
	ix := a.Index()
	if !reflect.DeepEqual(ix.Header, testHeader()) {
		t.Errorf("header = %+v, want %+v", ix.Header, testHeader())
	}
	if len(ix.Tensors) != len(ts) {
		t.Fatalf("%d tensors, want %d", len(ix.Tensors), len(ts))
	}
	for i, tt := range ts {
		e := &ix.Tensors[i]
		t.Run(tt.info.Name, func(t *testing.T) {
			if e.Name != tt.info.Name || e.DType != tt.info.DType || !reflect.DeepEqual(e.Shape, tt.info.Shape) || e.Rule != tt.rule {
				t.Errorf("entry %q %s %v %q, want %q %s %v %q", e.Name, e.DType, e.Shape, e.Rule, tt.info.Name, tt.info.DType, tt.info.Shape, tt.rule)
			}
			if tt.raw != nil {
				got, err := a.ReadPassthrough(tt.info.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tt.raw) {
					t.Errorf("passthrough bytes differ")
				}
				if e.RelErr(0) != 0 || e.Bytes() != int64(len(tt.raw)) || a.AvailableLayers(e.Name) != 1 {
					t.Errorf("passthrough: RelErr %v Bytes %d Available %d", e.RelErr(0), e.Bytes(), a.AvailableLayers(e.Name))
				}
				if _, err := a.DecodeTensor(tt.info.Name, 0); err == nil {
					t.Errorf("DecodeTensor of a passthrough tensor succeeded")
				}
				return
			}
			if len(e.Layers) != len(tt.layers) || e.Norm2 != tt.res.Norm2 {
				t.Fatalf("%d layers norm2 %v, want %d, %v", len(e.Layers), e.Norm2, len(tt.layers), tt.res.Norm2)
			}
			var bytesSum int64
			for k := range e.Layers {
				l := tt.res.Layers[k]
				le := e.Layers[k]
				if le.Params != l.Params || le.ExpBias != l.ExpBias || le.N != int64(l.N) || le.SqErr != tt.res.SqErr[k] {
					t.Errorf("layer %d entry %+v does not match the encoder's layer", k, le)
				}
				bytesSum += int64(len(l.Payload))
				got, err := a.DecodeTensor(tt.info.Name, k+1)
				if err != nil {
					t.Fatal(err)
				}
				if !equalF32(got, decodeRef(t, tt.res, k+1)) {
					t.Errorf("layers 0…%d decode differently from encoder.DecodeLayers", k)
				}
				// The recorded error is the error of what the archive decodes.
				if se := sqErr(tt.w, got); se != le.SqErr {
					t.Errorf("layer %d: decoded error %v, index says %v", k, se, le.SqErr)
				}
				if re := e.RelErr(k); math.Abs(re-tt.res.RelErr(k)) > 1e-15 {
					t.Errorf("RelErr(%d) = %v, encoder says %v", k, re, tt.res.RelErr(k))
				}
			}
			if e.Bytes() != bytesSum {
				t.Errorf("Bytes %d, payloads total %d", e.Bytes(), bytesSum)
			}
			all, err := a.DecodeTensor(tt.info.Name, 0)
			if err != nil || !equalF32(all, decodeRef(t, tt.res, len(tt.layers))) {
				t.Errorf("DecodeTensor(0) is not the all-layer decode (err %v)", err)
			}
			if _, err := a.DecodeTensor(tt.info.Name, len(tt.layers)+1); err == nil {
				t.Errorf("DecodeTensor beyond the last layer succeeded")
			}
			if e.RelErr(-1) != 1 {
				t.Errorf("RelErr(-1) = %v, want 1", e.RelErr(-1))
			}
		})
	}
	tot := a.Totals()
	var sq, n2 float64
	var coded int64
	for _, tt := range ts {
		if tt.res != nil {
			sq += tt.res.SqErr[len(tt.res.SqErr)-1]
			n2 += tt.res.Norm2
			coded += int64(len(tt.w))
		}
	}
	if tot.Tensors != len(ts) || tot.Coded != 4 || tot.Passthrough != 3 || tot.FileBytes != int64(len(data)) ||
		tot.SqErr != sq || tot.Norm2 != n2 || tot.CodedWeights != coded || tot.RelErr != math.Sqrt(sq/n2) {
		t.Errorf("Totals %+v (want sqerr %v norm2 %v file %d)", tot, sq, n2, len(data))
	}
	if _, err := a.DecodeTensor("nope", 0); err == nil {
		t.Errorf("unknown tensor decoded")
	}
}

// TestDeterministic: the same inputs give byte-identical archives, whatever
// the output name, folder or map insertion order.
func TestDeterministic(t *testing.T) {
	_, _, first := fixtureArchive(t, t.TempDir())
	ts := fixture()
	for _, tt := range ts {
		for _, s := range sharedFixture.ts {
			if s.info.Name == tt.info.Name {
				tt.res = s.res // same encoder output; the encoder's own determinism is its tests' job
			}
		}
	}
	h := testHeader()
	h.Metadata = map[string]string{"a": "1", "format": "pt", "b": "2"}
	p := filepath.Join(t.TempDir(), "other-name.seedlm")
	writeArchive(t, p, h, ts)
	second, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("two writes of the same input differ (%d vs %d bytes)", len(first), len(second))
	}
}

// TestLayout checks the embedded-progressive order directly from the index.
func TestLayout(t *testing.T) {
	_, path, data := fixtureArchive(t, t.TempDir())
	a := openArchive(t, path)
	type ch struct {
		name  string
		layer int
	}
	var got []ch
	var last int64 = HeaderSize + a.IndexBytes()
	for _, s := range a.Index().chunkOrder() {
		r := a.Index().ref(s)
		if r.Offset != last {
			t.Errorf("gap or overlap at %d (chunk starts at %d)", last, r.Offset)
		}
		last = r.Offset + r.Length
		got = append(got, ch{a.Index().Tensors[s.t].Name, s.layer})
	}
	want := []ch{
		{"model.embed.weight", 0}, {"model.norm.weight", -1}, {"model.mlp.weight", 0}, {"position_ids", -1},
		{"scale", -1}, {"model.out.weight", 0}, {"model.attn.weight", 0},
		{"model.embed.weight", 1}, {"model.mlp.weight", 1}, {"model.attn.weight", 1},
		{"model.embed.weight", 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("chunk order\n got %v\nwant %v", got, want)
	}
	if last != int64(len(data)) {
		t.Errorf("chunks end at %d, file is %d bytes", last, len(data))
	}
	if string(data[:6]) != "SEEDLM" || data[6] != Version || data[7] != 0 {
		t.Errorf("header starts %q", data[:8])
	}
}

func TestWriterOutputSafety(t *testing.T) {
	dir := t.TempDir()
	ts := fixture()[:2]
	encodeAll(t, ts)
	out := filepath.Join(dir, "m.seedlm")
	input := filepath.Join(dir, "model.safetensors")
	os.WriteFile(input, []byte("input"), 0o644)

	write := func(opt CreateOptions) error {
		w, err := CreateWith(out, testHeader(), opt)
		if err != nil {
			return err
		}
		defer w.Abort()
		if err := w.AddCoded(ts[0].info, "r", ts[0].res); err != nil {
			return err
		}
		return w.Commit()
	}
	if err := write(CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(out)
	var h interface{ Hint() string }
	if err := write(CreateOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") || !errors.As(err, &h) || h.Hint() == "" {
		t.Errorf("second write without Overwrite: %v, want an \"already exists\" error with a hint", err)
	}
	if err := write(CreateOptions{Overwrite: true}); err != nil {
		t.Errorf("Overwrite: %v", err)
	}
	after, _ := os.ReadFile(out)
	if !bytes.Equal(before, after) {
		t.Errorf("overwritten archive differs")
	}
	// Never the input, even with Overwrite.
	_, err := CreateWith(input, testHeader(), CreateOptions{Overwrite: true, Inputs: []string{input}})
	if err == nil {
		t.Errorf("Create over the input succeeded")
	}
	if b, _ := os.ReadFile(input); string(b) != "input" {
		t.Errorf("input was modified")
	}
	// An existing output appearing during encoding is caught at Commit.
	late := filepath.Join(dir, "late.seedlm")
	w, err := Create(late, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(late, []byte("someone else's"), 0o644)
	if err := w.AddCoded(ts[0].info, "r", ts[0].res); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil {
		t.Errorf("Commit replaced a file that appeared meanwhile")
	}
	if b, _ := os.ReadFile(late); string(b) != "someone else's" {
		t.Errorf("file that appeared meanwhile was replaced")
	}
	if names := listDir(t, dir); !reflect.DeepEqual(names, []string{"late.seedlm", "m.seedlm", "model.safetensors"}) {
		t.Errorf("folder holds %v (temp files left?)", names)
	}
}

// TestWriterErrorsLeaveNothing: every failure path removes all temp files
// and never creates the output.
func TestWriterErrorsLeaveNothing(t *testing.T) {
	ts := fixture()
	encodeAll(t, ts)
	coded, pass := ts[0], ts[1]
	badN := *coded.res
	badN.Layers = []*encoder.Layer{{Params: coded.res.Layers[0].Params, ExpBias: 0, N: 8, Payload: make([]byte, coded.res.Layers[0].Params.PayloadBytes(8))}}
	badN.SqErr = coded.res.SqErr[:1]
	badPayload := *coded.res
	l0 := *coded.res.Layers[0]
	l0.Payload = l0.Payload[:len(l0.Payload)-1]
	badPayload.Layers = []*encoder.Layer{&l0}
	badPayload.SqErr = coded.res.SqErr[:1]
	nanErr := *coded.res
	nanErr.SqErr = []float64{math.NaN(), 1, 1}

	cases := []struct {
		name string
		run  func(w *Writer) error
	}{
		{"duplicate name", func(w *Writer) error {
			w.AddPassthrough(pass.info, pass.raw)
			return w.AddPassthrough(pass.info, pass.raw)
		}},
		{"raw size vs dtype", func(w *Writer) error { return w.AddPassthrough(pass.info, pass.raw[:5]) }},
		{"N vs shape", func(w *Writer) error { return w.AddCoded(coded.info, "r", &badN) }},
		{"payload size", func(w *Writer) error { return w.AddCoded(coded.info, "r", &badPayload) }},
		{"NaN error", func(w *Writer) error { return w.AddCoded(coded.info, "r", &nanErr) }},
		{"nil result", func(w *Writer) error { return w.AddCoded(coded.info, "r", nil) }},
		{"negative dim", func(w *Writer) error {
			return w.AddPassthrough(Info{Name: "x", DType: "U8", Shape: []int64{-1}}, nil)
		}},
		{"overflowing shape", func(w *Writer) error {
			return w.AddPassthrough(Info{Name: "x", DType: "U8", Shape: []int64{1 << 32, 1 << 32}}, nil)
		}},
		{"abort", func(w *Writer) error {
			w.AddCoded(coded.info, "r", coded.res)
			w.Abort()
			return w.Commit()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.seedlm")
			w, err := Create(out, testHeader())
			if err != nil {
				t.Fatal(err)
			}
			if err := c.run(w); err == nil {
				t.Fatalf("no error")
			}
			if err := w.Commit(); err == nil {
				t.Errorf("Commit after an error succeeded")
			}
			w.Abort()
			if names := listDir(t, dir); len(names) != 0 {
				t.Errorf("left %v behind", names)
			}
		})
	}
}

func TestCreateRejectsBadOutput(t *testing.T) {
	dir := t.TempDir()
	for _, out := range []string{"", dir, filepath.Join(dir, "no", "such", "dir", "a.seedlm")} {
		if w, err := Create(out, Header{}); err == nil {
			w.Abort()
			t.Errorf("Create(%q) succeeded", out)
		}
	}
}

func TestEmptyArchive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e.seedlm")
	writeArchive(t, p, Header{SourceFormat: "torch"}, nil)
	a := openArchive(t, p)
	if err := a.Verify(context.Background()); err != nil || len(a.Index().Tensors) != 0 {
		t.Errorf("empty archive: %v, %d tensors", err, len(a.Index().Tensors))
	}
}
