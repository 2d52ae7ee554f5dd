package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// folderHeader is a model folder's header: the weights come back as
// model.safetensors beside the sidecar files.
func folderHeader() Header {
	h := testHeader()
	h.SourceFolder = true
	return h
}

var testFiles = []FileData{
	{Name: "tokenizer.json", Data: []byte(`{"version":"1.0","model":{"type":"BPE"}}`)},
	{Name: "config.json", Data: []byte("{\n  \"tie_word_embeddings\": true\n}\n")},
	{Name: "tokenizer.model", Data: []byte{0x0a, 0x00, 0xff, 0x80, 0x12}}, // binary
}

// tiedFixture is the fixture plus duplicates: a copy of a coded tensor (tied
// embeddings) and of a passthrough one.
func tiedFixture() ([]*testTensor, []PlannedTensor) {
	ts := fixture()
	ts = append(ts,
		&testTensor{info: Info{Name: "lm_head.weight", DType: "F32", Shape: []int64{12, 16}}, rule: `duplicate of "model.embed.weight"`},
		&testTensor{info: Info{Name: "final_norm.weight", DType: "F32", Shape: []int64{16}}, rule: `duplicate of "model.norm.weight"`})
	plan := planOf(ts)
	plan[7].DuplicateOf = "model.embed.weight"
	plan[8].DuplicateOf = "model.norm.weight"
	return ts, plan
}

func addAll(t testing.TB, w *Writer, ts []*testTensor, plan []PlannedTensor) {
	t.Helper()
	for i, tt := range ts {
		var err error
		if plan[i].DuplicateOf != "" {
			err = w.AddDuplicate(tt.info, tt.rule, plan[i].DuplicateOf)
		} else {
			err = addTensor(w, tt)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func writeTied(t testing.TB, path string, h Header, planned bool) {
	t.Helper()
	ts, plan := tiedFixture()
	encodeAll(t, ts)
	opt := CreateOptions{Files: testFiles}
	if planned {
		opt.Plan = plan
	}
	w, err := CreateWith(path, h, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	addAll(t, w, ts, plan)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// Sidecar files come back byte for byte, duplicates decode to their
// original, and both writers lay the archive out the same.
func TestFolderArchive(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "planned.seedlm"), filepath.Join(dir, "spilled.seedlm")
	writeTied(t, p1, folderHeader(), true)
	writeTied(t, p2, folderHeader(), false)
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if !bytes.Equal(b1, b2) {
		t.Fatal("planned and spilled writers differ")
	}
	a := openArchive(t, p1)
	if err := a.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range a.Files() {
		names = append(names, f.Name)
	}
	if fmt.Sprint(names) != "[config.json tokenizer.json tokenizer.model]" {
		t.Errorf("files %v, want name order", names)
	}
	for _, f := range testFiles {
		got, err := a.ReadFile(f.Name)
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Errorf("%s: %q, %v", f.Name, got, err)
		}
	}
	orig, _ := a.DecodeTensor("model.embed.weight", 0)
	dup, err := a.DecodeTensor("lm_head.weight", 0)
	if err != nil || !equalF32(orig, dup) {
		t.Errorf("lm_head.weight decodes differently from model.embed.weight: %v", err)
	}
	raw, _ := a.ReadPassthrough("model.norm.weight")
	rawDup, err := a.ReadPassthrough("final_norm.weight")
	if err != nil || !bytes.Equal(raw, rawDup) {
		t.Errorf("final_norm.weight: %v", err)
	}
	e, _ := a.Entry("lm_head.weight")
	if e.Bytes() != 0 || e.DuplicateOf != "model.embed.weight" || e.Passthrough || a.AvailableLayers("lm_head.weight") != 3 {
		t.Errorf("duplicate entry %+v", e)
	}
	tot := a.Totals()
	if tot.Duplicates != 2 || tot.Tensors != 9 || tot.Coded != 4 || tot.Passthrough != 3 {
		t.Errorf("totals %+v", tot)
	}
	// The duplicates cost their index entries only: the payload is the
	// fixture's plus the files.
	plain := filepath.Join(dir, "plain.seedlm")
	writeArchive(t, plain, testHeader(), fixture())
	pa, _ := Open(plain, OpenOptions{})
	defer pa.Close()
	var files int64
	for _, f := range testFiles {
		files += int64(len(f.Data))
	}
	if got, want := a.FullSize()-a.IndexBytes(), pa.FullSize()-pa.IndexBytes()+files; got != want {
		t.Errorf("payload %d bytes, want %d (the fixture's and the files')", got, want)
	}

	// A damaged file byte fails Verify and ReadFile, naming the file.
	f0 := a.Files()[0]
	bad := append([]byte(nil), b1...)
	bad[f0.Chunk.Offset+3] ^= 1
	pb := filepath.Join(dir, "bad.seedlm")
	os.WriteFile(pb, bad, 0o644)
	ab := openArchive(t, pb)
	var ie *IntegrityError
	if err := ab.Verify(context.Background()); !errors.As(err, &ie) || ie.File != "config.json" || !strings.Contains(err.Error(), `file "config.json", chunk "file"`) {
		t.Errorf("Verify: %v", err)
	}
	if _, err := ab.ReadFile("config.json"); !errors.As(err, &ie) {
		t.Errorf("ReadFile: %v", err)
	}
	// The files are part of the base: a cut inside them is not a usable
	// partial file.
	if _, err := OpenReader(bytes.NewReader(b1), f0.Chunk.Offset+2, "cut", OpenOptions{AllowPartial: true}); !errors.As(err, &ie) || ie.File != "config.json" {
		t.Errorf("cut in the files: %v", err)
	}
}

// Parts of a folder archive each hold the files; merged they give the
// one-go archive, byte for byte. Parts whose files differ are refused.
func TestMergeFolderArchive(t *testing.T) {
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.seedlm")
	writeTied(t, whole, folderHeader(), true)
	want, _ := os.ReadFile(whole)
	ts, plan := tiedFixture()
	encodeAll(t, ts)
	// A duplicate travels with its original.
	split := [][]int{{0, 2, 7}, {1, 3, 4, 5, 6, 8}}
	writeParts := func(files [][]FileData) []string {
		var paths []string
		for i, pos := range split {
			h := folderHeader()
			h.Part = &Part{Index: i, Count: len(split), PlanSHA256: testPlanHash, Tensors: len(ts), Positions: pos}
			var sub []*testTensor
			var sp []PlannedTensor
			for _, p := range pos {
				sub = append(sub, ts[p])
				sp = append(sp, plan[p])
			}
			p := filepath.Join(dir, fmt.Sprintf("m.part-%d-of-2.seedlm", i))
			os.Remove(p)
			w, err := CreateWith(p, h, CreateOptions{Plan: sp, Files: files[i]})
			if err != nil {
				t.Fatal(err)
			}
			addAll(t, w, sub, sp)
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		return paths
	}
	paths := writeParts([][]FileData{testFiles, testFiles})
	out := filepath.Join(dir, "merged.seedlm")
	if _, err := Merge(context.Background(), out, paths, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("merged folder archive differs from the one-go archive")
	}
	other := append([]FileData(nil), testFiles...)
	other[1] = FileData{Name: "config.json", Data: []byte("{}")}
	paths = writeParts([][]FileData{testFiles, other})
	var me *MergeError
	if _, err := Merge(context.Background(), filepath.Join(dir, "m2.seedlm"), paths, CreateOptions{}); !errors.As(err, &me) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("parts with different files: %v", err)
	}
}

// Stream keeps the files and the duplicates whatever the budget.
func TestStreamFolderArchive(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.seedlm")
	writeTied(t, src, folderHeader(), true)
	out := filepath.Join(dir, "small.seedlm")
	rep, err := Stream(context.Background(), src, out, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(out)
	rep, err = Stream(context.Background(), src, out, rep.MinBytes)
	if err != nil {
		t.Fatal(err)
	}
	a := openArchive(t, out)
	if len(a.Files()) != 3 {
		t.Fatalf("files %v", a.Files())
	}
	if got, _ := a.ReadFile("tokenizer.model"); !bytes.Equal(got, testFiles[2].Data) {
		t.Error("tokenizer.model changed")
	}
	orig, _ := a.DecodeTensor("model.embed.weight", 0)
	dup, err := a.DecodeTensor("lm_head.weight", 0)
	if err != nil || !equalF32(orig, dup) || a.AvailableLayers("lm_head.weight") != 1 {
		t.Errorf("duplicate after stream: %v", err)
	}
}

// The one validation refuses files and duplicates no writer could have
// made: Open fails on the index, and the writer will not commit them.
func TestFolderValidation(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.seedlm")
	writeTied(t, src, folderHeader(), true)
	data, _ := os.ReadFile(src)
	file := func(ix map[string]any, i int) map[string]any { return ix["files"].([]any)[i].(map[string]any) }
	hdr := func(ix map[string]any) map[string]any { return ix["header"].(map[string]any) }
	// Tensors: 0 embed (coded, 3 layers), 1 norm (passthrough), ..., 7
	// lm_head (duplicate of 0), 8 final_norm (duplicate of 1).
	cases := []struct {
		name   string
		mutate func(ix map[string]any)
	}{
		{"files without source_folder", func(ix map[string]any) { delete(hdr(ix), "source_folder") }},
		{"file name with a slash", func(ix map[string]any) { file(ix, 0)["name"] = "../config.json" }},
		{"hidden file", func(ix map[string]any) { file(ix, 0)["name"] = ".config.json" }},
		{"empty file name", func(ix map[string]any) { file(ix, 0)["name"] = "" }},
		{"control character", func(ix map[string]any) { file(ix, 0)["name"] = "con\x01fig.json" }},
		{"files out of order", func(ix map[string]any) { file(ix, 0)["name"] = "zzz.json" }},
		{"files equal ignoring case", func(ix map[string]any) { file(ix, 1)["name"] = "CONFIG.json" }},
		{"file named like the weights", func(ix map[string]any) { file(ix, 0)["name"] = "Model.safetensors" }},
		{"file with a bad hash", func(ix map[string]any) { file(ix, 0)["chunk"].(map[string]any)["sha256"] = "xyz" }},
		{"two weights files", func(ix map[string]any) { hdr(ix)["source_files"] = []any{"a.safetensors", "b.safetensors"} }},
		{"weights file not safetensors", func(ix map[string]any) { hdr(ix)["source_files"] = []any{"model.bin"} }},
		{"duplicate of a later tensor", func(ix map[string]any) { tensor(ix, 7)["duplicate_of"] = "final_norm.weight" }},
		{"duplicate of itself", func(ix map[string]any) { tensor(ix, 7)["duplicate_of"] = "lm_head.weight" }},
		{"duplicate of nothing", func(ix map[string]any) { tensor(ix, 7)["duplicate_of"] = "nope" }},
		{"chain of duplicates", func(ix map[string]any) {
			tensor(ix, 8)["duplicate_of"] = "lm_head.weight"
			tensor(ix, 8)["shape"] = []any{12, 16}
			tensor(ix, 8)["passthrough"] = false
		}},
		{"duplicate of another shape", func(ix map[string]any) { tensor(ix, 7)["shape"] = []any{16, 12} }},
		{"duplicate of another dtype", func(ix map[string]any) {
			tensor(ix, 8)["duplicate_of"] = "position_ids"
			tensor(ix, 8)["shape"] = []any{3}
		}},
		{"duplicate with another passthrough flag", func(ix map[string]any) { tensor(ix, 7)["passthrough"] = true }},
		{"duplicate with chunks", func(ix map[string]any) { tensor(ix, 8)["raw"] = tensor(ix, 1)["raw"] }},
		{"duplicate with norm2", func(ix map[string]any) { tensor(ix, 7)["norm2"] = 1.5 }},
	}
	p := filepath.Join(dir, "h.seedlm")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := rewrite(t, data, c.mutate, 0)
			oldLen := int64(binary.LittleEndian.Uint64(data[8:]))
			newLen := int64(binary.LittleEndian.Uint64(b[8:]))
			b = rewrite(t, data, func(ix map[string]any) { c.mutate(ix); shiftOffsets(ix, newLen-oldLen) }, 0)
			os.WriteFile(p, b, 0o644)
			var ie *IntegrityError
			if _, err := Open(p, OpenOptions{}); !errors.As(err, &ie) || ie.Chunk != "index" {
				t.Fatalf("Open = %v, want an index *IntegrityError", err)
			}
		})
	}
	b := rewrite(t, data, func(map[string]any) {}, 0)
	os.WriteFile(p, b, 0o644)
	if err := openAndCheck(p, OpenOptions{}); err != nil {
		t.Fatalf("identity rewrite: %v", err)
	}

	// The writer refuses the same things before writing.
	for _, c := range []struct {
		name  string
		h     Header
		files []FileData
	}{
		{"files without source_folder", testHeader(), testFiles},
		{"file named like the weights", folderHeader(), []FileData{{Name: "model.safetensors", Data: []byte("x")}}},
		{"two files of one name", folderHeader(), []FileData{{Name: "a.json"}, {Name: "A.json"}}},
		{"a path", folderHeader(), []FileData{{Name: "sub/a.json"}}},
	} {
		ts, plan := tiedFixture()
		if _, err := CreateWith(filepath.Join(dir, "w.seedlm"), c.h, CreateOptions{Plan: plan, Files: c.files}); err == nil {
			t.Errorf("%s: CreateWith accepted it", c.name)
		}
		_ = ts
	}
	// A duplicate added before its original is refused.
	ts, plan := tiedFixture()
	encodeAll(t, ts)
	w, err := CreateWith(filepath.Join(dir, "d.seedlm"), folderHeader(), CreateOptions{Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.AddDuplicate(ts[7].info, ts[7].rule, "model.embed.weight"); err == nil {
		t.Error("a duplicate added before its original was accepted")
	}
}

// Version 1 had no files, duplicates or source_folder: a version-1 file
// that has them is corrupt.
func TestVersion1HasNoFolderFields(t *testing.T) {
	for _, c := range []struct {
		name string
		ix   Index
	}{
		{"source_folder", Index{Header: Header{SourceFormat: FormatSafetensors, SourceFiles: []string{"m.safetensors"}, SourceFolder: true}}},
		{"torch-sharded", Index{Header: Header{SourceFormat: FormatTorchSharded}}},
	} {
		if err := checkIndex(&c.ix, 1); err == nil {
			t.Errorf("%s: accepted in version 1", c.name)
		}
		if err := checkIndex(&c.ix, 2); err != nil {
			t.Errorf("%s: refused in version 2: %v", c.name, err)
		}
	}
}

// Every byte of a folder archive with duplicates is covered: flipping any
// one is caught by opening and reading it all.
func TestFolderFlipEveryByte(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.seedlm")
	writeTied(t, p, folderHeader(), true)
	data, _ := os.ReadFile(p)
	b := append([]byte(nil), data...)
	for i := range b {
		b[i] ^= 0x10
		if err := checkBytes(b, OpenOptions{}); err == nil {
			t.Fatalf("flipped byte %d went unnoticed", i)
		}
		b[i] ^= 0x10
	}
}
