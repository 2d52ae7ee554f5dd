package archive

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/encoder"
)

// A planned archive, a spilled one and one whose plan changed on the way
// are the same bytes: the layout depends only on the final index.
func TestPlannedSpilledAndChangedPlanAgree(t *testing.T) {
	dir := t.TempDir()
	ts := fixture()
	encodeAll(t, ts)
	planned := filepath.Join(dir, "planned.seedlm")
	spilled := filepath.Join(dir, "spilled.seedlm")
	writeArchive(t, planned, testHeader(), ts)
	writeArchiveWith(t, spilled, testHeader(), ts, CreateOptions{})
	a, _ := os.ReadFile(planned)
	b, _ := os.ReadFile(spilled)
	if !bytes.Equal(a, b) {
		t.Fatalf("planned (%d bytes) and spilled (%d bytes) archives differ", len(a), len(b))
	}

	// The plan said "code tensor 0 with one layer" and "store tensor 2
	// exactly"; the writer got three layers and a coded tensor instead
	// (e.g. an encoder that stores a tensor exactly when coding fails).
	plan := planOf(ts)
	plan[0].Layers = plan[0].Layers[:1]
	plan[0].Rule = "was planned otherwise"
	plan[2].Layers = nil
	changed := filepath.Join(dir, "changed.seedlm")
	writeArchiveWith(t, changed, testHeader(), ts, CreateOptions{Plan: plan})
	c, _ := os.ReadFile(changed)
	if !bytes.Equal(a, c) {
		t.Fatalf("archive whose plan changed (%d bytes) differs from the planned one (%d bytes)", len(c), len(a))
	}
	if names := listDir(t, dir); strings.Join(names, " ") != "changed.seedlm planned.seedlm spilled.seedlm" {
		t.Errorf("folder holds %v", names)
	}
}

// With a plan, the archive is written in place in one temp file: while
// tensors are being added, that file is all there is beside the output,
// and out of order adds land where the plan put them.
func TestPlannedWritesOneFileInPlace(t *testing.T) {
	dir := t.TempDir()
	ts := fixture()
	encodeAll(t, ts)
	out := filepath.Join(dir, "a.seedlm")
	w, err := CreateWith(out, testHeader(), CreateOptions{Plan: planOf(ts)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	temp := regexp.MustCompile(`^\.a\.seedlm\.seedlm-tmp-[0-9]+$`)
	for i := len(ts) - 1; i >= 0; i-- { // reverse order
		tt := ts[i]
		if err := addTensor(w, tt); err != nil {
			t.Fatal(err)
		}
		names := listDir(t, dir)
		if len(names) != 1 || !temp.MatchString(names[0]) {
			t.Fatalf("after adding %s the folder holds %v, want one temp file", tt.info.Name, names)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	_, _, want := fixtureArchive(t, t.TempDir())
	if !bytes.Equal(got, want) {
		t.Fatalf("archive added in reverse order differs")
	}
	if names := listDir(t, dir); strings.Join(names, " ") != "a.seedlm" {
		t.Errorf("folder holds %v", names)
	}
}

// Additions that contradict the plan's tensor (dtype, shape, shard) or
// were never planned are errors, and so is a plan left incomplete.
func TestPlannedWriterRefusals(t *testing.T) {
	ts := fixture()
	encodeAll(t, ts)
	coded, pass := ts[0], ts[1]
	cases := []struct {
		name string
		run  func(w *Writer) error
	}{
		{"not planned", func(w *Writer) error {
			return w.AddPassthroughRule(Info{Name: "new", DType: "U8", Shape: []int64{1}}, "r", []byte{1})
		}},
		{"other dtype", func(w *Writer) error {
			i := pass.info
			i.DType = "I32"
			return w.AddPassthroughRule(i, pass.rule, pass.raw)
		}},
		{"other shape", func(w *Writer) error {
			i := coded.info
			i.Shape = []int64{192}
			return w.AddCoded(i, coded.rule, coded.res)
		}},
		{"twice", func(w *Writer) error {
			w.AddPassthroughRule(pass.info, pass.rule, pass.raw)
			return w.AddPassthroughRule(pass.info, pass.rule, pass.raw)
		}},
		{"incomplete", func(w *Writer) error { return w.Commit() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			w, err := CreateWith(filepath.Join(dir, "o.seedlm"), testHeader(), CreateOptions{Plan: planOf(ts)})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.run(w); err == nil {
				t.Fatal("no error")
			}
			w.Abort()
			if names := listDir(t, dir); len(names) != 0 {
				t.Errorf("left %v", names)
			}
		})
	}
	// A plan the reader would refuse is refused before any work.
	bad := planOf(ts)
	bad[0].Info.Name = "__metadata__"
	if _, err := CreateWith(filepath.Join(t.TempDir(), "o.seedlm"), testHeader(), CreateOptions{Plan: bad}); err == nil || !strings.Contains(err.Error(), "__metadata__") {
		t.Errorf("plan with a reserved name: %v", err)
	}
}

// The reserved index length is exact for EstimateOverheadBytes and an upper
// bound for any values of the fields it does not know (errors, biases).
func TestIndexReserve(t *testing.T) {
	_, path, _ := fixtureArchive(t, t.TempDir())
	a := openArchive(t, path)
	var plan []TensorEntry
	for _, e := range a.Index().Tensors {
		e.Raw, e.Norm2 = nil, 0
		plan = append(plan, e)
	}
	if est, got := EstimateOverheadBytes(a.Index().Header, plan, nil), a.Totals().OverheadBytes; est != got {
		t.Errorf("estimated %d bytes of header and index, the archive has %d", est, got)
	}
	ix := *a.Index()
	ix.Tensors = append([]TensorEntry(nil), ix.Tensors...)
	reserve, _, err := planLayout(&ix)
	if err != nil {
		t.Fatal(err)
	}
	// The widest values there are.
	for _, wide := range []float64{0.0000012345678901234567, 1.2345678901234567e-308, 1.2345678901234567e+308, 123456789012345680000} {
		for i := range ix.Tensors {
			t2 := &ix.Tensors[i]
			if t2.Passthrough {
				continue
			}
			t2.Norm2 = wide
			ls := append([]LayerEntry(nil), t2.Layers...)
			for k := range ls {
				ls[k].SqErr, ls[k].ExpBias = wide, -encoder.MaxExpBias
			}
			t2.Layers = ls
		}
		b, err := marshalIndex(&ix)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) > reserve {
			t.Errorf("index with values %v is %d bytes, over the %d reserved", wide, len(b), reserve)
		}
	}
}

// DecodeTensorTo gives exactly DecodeTensor's floats (and the reference
// decoder's), across step boundaries and for layers with different block
// sizes, and allocates the same whatever the tensor's size.
func TestDecodeTensorToIsBoundedAndExact(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 2M weights")
	}
	const n = 2*DecodeStep + 12345
	ps := []encoder.Params{
		{BlockSize: 8, LatentDim: 3, SeedBits: 8, CoeffBits: 4, ExpBits: 4},
		{BlockSize: 7, LatentDim: 2, SeedBits: 9, CoeffBits: 3, ExpBits: 3},
		{BlockSize: 256, LatentDim: 1, SeedBits: 8, CoeffBits: 2, ExpBits: 1},
	}
	res := &encoder.Result{Norm2: 1}
	r := rand.New(rand.NewPCG(3, 4))
	for k, p := range ps {
		b := make([]byte, p.PayloadBytes(n))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		for blk := 0; blk < p.Blocks(n); blk++ {
			bit := blk * p.BlockBits()
			b[bit/8] |= 1 << (bit % 8)
		}
		res.Layers = append(res.Layers, &encoder.Layer{Params: p, ExpBias: -k, N: n, Payload: b})
		res.SqErr = append(res.SqErr, 0.5)
	}
	info := Info{Name: "w", DType: "F32", Shape: []int64{n}}
	path := filepath.Join(t.TempDir(), "d.seedlm")
	tt := &testTensor{info: info, rule: "r", layers: ps, res: res}
	writeArchive(t, path, Header{SourceFormat: "safetensors"}, []*testTensor{tt})
	a := openArchive(t, path)
	for layers := 1; layers <= len(ps); layers++ {
		want, err := encoder.DecodeLayers(res.Layers[:layers], n)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := a.DecodeTensor("w", layers)
		if err != nil || !equalF32(whole, want) {
			t.Fatalf("%d layers: DecodeTensor differs from the reference decoder (%v)", layers, err)
		}
		var got []float32
		calls := 0
		err = a.DecodeTensorTo("w", layers, func(w []float32) error {
			if len(w) > DecodeStep {
				t.Fatalf("slice of %d weights", len(w))
			}
			calls++
			got = append(got, w...)
			return nil
		})
		if err != nil || !equalF32(got, want) || calls != 3 {
			t.Fatalf("%d layers: DecodeTensorTo differs (%d calls, %v)", layers, calls, err)
		}
	}
	// Allocation does not grow with the tensor: 2^24 weights (64 MiB as
	// float32) in the cheapest codec.
	const big = 1 << 24
	p := encoder.Params{BlockSize: 256, LatentDim: 1, SeedBits: 8, CoeffBits: 2, ExpBits: 1}
	pay := make([]byte, p.PayloadBytes(big))
	for blk := 0; blk < p.Blocks(big); blk++ {
		bit := blk * p.BlockBits()
		pay[bit/8] |= 1 << (bit % 8)
	}
	bt := &testTensor{info: Info{Name: "big", DType: "F32", Shape: []int64{big}}, rule: "r", layers: []encoder.Params{p},
		res: &encoder.Result{Norm2: 1, SqErr: []float64{1}, Layers: []*encoder.Layer{{Params: p, N: big, Payload: pay}}}}
	bigPath := filepath.Join(t.TempDir(), "big.seedlm")
	writeArchive(t, bigPath, Header{SourceFormat: "safetensors"}, []*testTensor{bt})
	b := openArchive(t, bigPath)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if err := b.DecodeTensorTo("big", 0, func([]float32) error { return nil }); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	alloc := m1.TotalAlloc - m0.TotalAlloc
	t.Logf("DecodeTensorTo of %d weights: %.1f MiB allocated (the tensor is %.0f MiB as float32)", big, float64(alloc)/(1<<20), 4.0*big/(1<<20))
	if alloc > 16<<20 {
		t.Errorf("allocated %.1f MiB: more than a few slices", float64(alloc)/(1<<20))
	}
}

// A chunk changed after Verify is caught by the streaming reads too.
func TestStreamingReadsCheckHashes(t *testing.T) {
	ts, path, data := fixtureArchive(t, t.TempDir())
	a := openArchive(t, path)
	if err := a.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	for _, tt := range ts[:2] {
		e, _ := a.Entry(tt.info.Name)
		r := e.Raw
		if r == nil {
			r = &e.Layers[0].Chunk
		}
		f.WriteAt([]byte{data[r.Offset] ^ 1}, r.Offset)
	}
	f.Close()
	err := a.DecodeTensorTo(ts[0].info.Name, 0, func([]float32) error { return nil })
	if ie, ok := err.(*IntegrityError); !ok || ie.Tensor != ts[0].info.Name || ie.Chunk != "layer 0" {
		t.Errorf("DecodeTensorTo after a change: %v", err)
	}
	err = a.ReadPassthroughTo(ts[1].info.Name, func([]byte) error { return nil })
	if ie, ok := err.(*IntegrityError); !ok || ie.Tensor != ts[1].info.Name || ie.Chunk != "raw" {
		t.Errorf("ReadPassthroughTo after a change: %v", err)
	}
}

// The writer itself never replaces a link or other special file, even with
// Overwrite (the CLI checks first; this is the library's own guard).
func TestWriterRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	link := filepath.Join(dir, "link.seedlm")
	if err := os.Symlink(target, link); err != nil {
		t.Skip(err)
	}
	if w, err := CreateWith(link, testHeader(), CreateOptions{Overwrite: true}); err == nil {
		w.Abort()
		t.Fatal("Create over a symbolic link succeeded")
	}
	if st, _ := os.Lstat(link); st.Mode()&os.ModeSymlink == 0 {
		t.Error("link replaced")
	}
}

// A plan is checked against the free space before anything is encoded: a
// plan for 2^40 weights at 4 bits (512 GiB) does not fit this disk.
func TestPlannedChecksFreeSpace(t *testing.T) {
	dir := t.TempDir()
	plan := []PlannedTensor{{Info: Info{Name: "huge", DType: "F32", Shape: []int64{1 << 20, 1 << 20}}, Rule: "r", Layers: []encoder.Params{encoder.Paper4Bit}}}
	w, err := CreateWith(filepath.Join(dir, "h.seedlm"), Header{SourceFormat: "safetensors"}, CreateOptions{Plan: plan})
	if err == nil {
		w.Abort()
		t.Skip("this file system has 512 GiB free")
	}
	if !regexp.MustCompile(`not enough free space for .*h\.seedlm: the archive needs [0-9]+ bytes, .* has [0-9]+ bytes free`).MatchString(err.Error()) {
		t.Errorf("error %q does not state both sizes", err)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("left %v", names)
	}
}
