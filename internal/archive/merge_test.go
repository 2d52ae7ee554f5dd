package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var testPlanHash = strings.Repeat("ab", 32)

// writeParts writes the fixture split into parts (tensor positions per
// part) and returns their paths.
func writeParts(t *testing.T, dir string, h Header, ts []*testTensor, split [][]int, plan string) []string {
	t.Helper()
	var paths []string
	for i, pos := range split {
		ph := h
		ph.Part = &Part{Index: i, Count: len(split), PlanSHA256: plan, Tensors: len(ts), Positions: pos}
		var sub []*testTensor
		for _, p := range pos {
			sub = append(sub, ts[p])
		}
		p := filepath.Join(dir, fmt.Sprintf("m.part-%d-of-%d.seedlm", i, len(split)))
		writeArchive(t, p, ph, sub)
		paths = append(paths, p)
	}
	return paths
}

// Merging parts gives exactly the archive written in one go, whatever the
// split and the order the parts are named in.
func TestMergeIsByteIdentical(t *testing.T) {
	dir := t.TempDir()
	ts := fixture()
	whole := filepath.Join(dir, "whole.seedlm")
	writeArchive(t, whole, testHeader(), ts)
	want, _ := os.ReadFile(whole)
	for k, split := range [][][]int{
		{{0, 1, 2, 3, 4, 5, 6}},
		{{0, 2, 4, 6}, {1, 3, 5}},
		{{5}, {0, 1}, {2, 3, 4, 6}},
		{{}, {0, 1, 2, 3, 4, 5, 6}}, // an empty part
	} {
		sub := filepath.Join(dir, fmt.Sprint(k))
		os.Mkdir(sub, 0o755)
		paths := writeParts(t, sub, testHeader(), ts, split, testPlanHash)
		// Reverse order on the command line.
		for i, j := 0, len(paths)-1; i < j; i, j = i+1, j-1 {
			paths[i], paths[j] = paths[j], paths[i]
		}
		out := filepath.Join(sub, "merged.seedlm")
		rep, err := Merge(context.Background(), out, paths, CreateOptions{})
		if err != nil {
			t.Fatalf("split %v: %v", split, err)
		}
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, want) {
			t.Fatalf("split %v: merged archive differs from the one-go archive (%d vs %d bytes)", split, len(got), len(want))
		}
		if rep.Tensors != len(ts) || rep.Parts != len(split) || rep.Bytes != int64(len(want)) {
			t.Errorf("report %+v", rep)
		}
	}
}

// Every refusal names what is wrong, and nothing is written.
func TestMergeRefusals(t *testing.T) {
	dir := t.TempDir()
	ts := fixture()
	split := [][]int{{0, 2, 4, 6}, {1, 3}, {5}}
	paths := writeParts(t, dir, testHeader(), ts, split, testPlanHash)
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	otherPlan := writeParts(t, other, testHeader(), ts, split, strings.Repeat("cd", 32))
	hdr2 := testHeader()
	hdr2.SourceBytes++
	otherSrc := filepath.Join(dir, "src")
	os.Mkdir(otherSrc, 0o755)
	otherSource := writeParts(t, otherSrc, hdr2, ts, split, testPlanHash)
	twoWay := filepath.Join(dir, "two")
	os.Mkdir(twoWay, 0o755)
	twoParts := writeParts(t, twoWay, testHeader(), ts, [][]int{{0, 1, 2}, {3, 4, 5, 6}}, testPlanHash)
	whole := filepath.Join(dir, "whole.seedlm")
	writeArchive(t, whole, testHeader(), ts)

	cases := []struct {
		name  string
		parts []string
		want  string
	}{
		{"missing one", []string{paths[0], paths[2]}, "missing part(s) 1 of 3 (have 2)"},
		{"missing two", []string{paths[1]}, "missing part(s) 0, 2 of 3"},
		{"duplicate", []string{paths[0], paths[1], paths[1], paths[2]}, "part 1 of 3 is given twice"},
		{"other plan", []string{paths[0], otherPlan[1], paths[2]}, "come from different plans"},
		{"other source", []string{paths[0], otherSource[1], paths[2]}, "record a different source or settings"},
		{"other count", []string{paths[0], twoParts[1], paths[2]}, "part 0 of 3"},
		{"whole archive", []string{whole}, "is a whole archive, not a part"},
		{"nothing", nil, "no part archives given"},
	}
	for _, c := range cases {
		out := filepath.Join(dir, "out.seedlm")
		_, err := Merge(context.Background(), out, c.parts, CreateOptions{})
		var me *MergeError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), c.want) || me.Hint() == "" {
			t.Errorf("%s: %v, want a *MergeError with a hint containing %q", c.name, err, c.want)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("%s: wrote %s", c.name, out)
		}
	}
	// A damaged chunk in a part is an integrity error naming that part,
	// and no output (or temp file) is left.
	sub := filepath.Join(dir, "bad")
	os.Mkdir(sub, 0o755)
	bad := writeParts(t, sub, testHeader(), ts, split, testPlanHash)
	a, err := Open(bad[2], OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := a.Entry("model.out.weight")
	off := e.Layers[0].Chunk.Offset + 3
	a.Close()
	data, _ := os.ReadFile(bad[2])
	data[off] ^= 0x40
	os.WriteFile(bad[2], data, 0o644)
	out := filepath.Join(sub, "m.seedlm")
	_, err = Merge(context.Background(), out, bad, CreateOptions{})
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Path != bad[2] || ie.Tensor != "model.out.weight" {
		t.Fatalf("damaged part: %v, want an *IntegrityError naming %s and model.out.weight", err, bad[2])
	}
	if got := listDir(t, sub); len(got) != 3 {
		t.Errorf("damaged part left %v", got)
	}
}

// A part record is checked like every other index field.
func TestPartRecordValidation(t *testing.T) {
	good := Part{Index: 1, Count: 3, PlanSHA256: testPlanHash, Tensors: 5, Positions: []int{0, 3}}
	if err := good.check(2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(p *Part)
	}{
		{"index past count", func(p *Part) { p.Index = 3 }},
		{"negative index", func(p *Part) { p.Index = -1 }},
		{"zero count", func(p *Part) { p.Count = 0 }},
		{"positions not increasing", func(p *Part) { p.Positions = []int{3, 0} }},
		{"position out of range", func(p *Part) { p.Positions = []int{0, 5} }},
		{"fewer tensors than held", func(p *Part) { p.Tensors = 1 }},
		{"positions count", func(p *Part) { p.Positions = []int{0} }},
		{"bad hash", func(p *Part) { p.PlanSHA256 = "xyz" }},
	} {
		p := good
		p.Positions = append([]int(nil), good.Positions...)
		c.edit(&p)
		if err := p.check(2); err == nil {
			t.Errorf("%s: accepted %+v", c.name, p)
		}
	}
}

// rewriteVersion1 turns a version-2 archive without a part record into the
// version-1 file an older seedlm would have written for the same index: the
// index's source_index moves into settings, and the index is laid out
// unpadded (layoutV1), version 1.
func rewriteVersion1(t *testing.T, path, out string) {
	t.Helper()
	a := openArchive(t, path)
	ix := *a.Index()
	ix.Tensors = append([]TensorEntry(nil), ix.Tensors...)
	ix.Header = cloneHeader(ix.Header)
	if ix.Header.SourceIndex != "" {
		if ix.Header.Settings == nil {
			ix.Header.Settings = map[string]string{}
		}
		ix.Header.Settings["source_index"] = ix.Header.SourceIndex
		ix.Header.SourceIndex = ""
	}
	old := make([]int64, 0)
	for _, s := range ix.chunkOrder() {
		old = append(old, ix.ref(s).Offset)
	}
	ib, fileLen, err := layoutV1(&ix)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var buf bytes.Buffer
	h := fixedHeader{version: 1, indexLen: uint64(len(ib)), fileLen: uint64(fileLen), indexHash: sha256.Sum256(ib)}
	buf.Write(h.marshal())
	buf.Write(ib)
	for k, s := range ix.chunkOrder() {
		r := ix.ref(s)
		buf.Write(data[old[k] : old[k]+r.Length])
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// layoutV1 is version 1's layout: the canonical index with no padding.
func layoutV1(ix *Index) ([]byte, int64, error) {
	_, fileLen, err := fixLayout(ix, func(ix *Index) (int64, error) {
		b, err := marshalIndex(ix)
		return int64(len(b)), err
	})
	if err != nil {
		return nil, 0, err
	}
	b, err := marshalIndex(ix)
	return b, fileLen, err
}

// Version 1 kept a sharded source's index name in settings; it reads as
// Header.SourceIndex, and version-2 fields in a version-1 file are refused.
func TestReadsVersion1(t *testing.T) {
	dir := t.TempDir()
	ts := fixture()
	for i, tt := range ts {
		tt.info.Shard = fmt.Sprintf("model-%05d-of-00002.safetensors", 1+i%2)
	}
	h := testHeader()
	h.SourceFormat = "safetensors-sharded"
	h.SourceFiles = []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
	h.SourceIndex = "model.safetensors.index.json"
	v2 := filepath.Join(dir, "v2.seedlm")
	writeArchive(t, v2, h, ts)
	v1 := filepath.Join(dir, "v1.seedlm")
	rewriteVersion1(t, v2, v1)
	data, _ := os.ReadFile(v1)
	if binary.LittleEndian.Uint16(data[6:]) != 1 || !bytes.Contains(data, []byte(`"source_index":"model.safetensors.index.json"`)) {
		t.Fatal("fixture is not a version-1 archive with settings.source_index")
	}
	a := openArchive(t, v1)
	if err := a.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := a.Index().Header
	if got.SourceIndex != h.SourceIndex || got.Settings["source_index"] != "" || len(got.Settings) != len(h.Settings) {
		t.Errorf("version-1 header read as %+v", got)
	}
	for _, tt := range ts {
		if tt.raw != nil {
			continue
		}
		w, err := a.DecodeTensor(tt.info.Name, 0)
		if err != nil || !equalF32(w, decodeRef(t, tt.res, len(tt.layers))) {
			t.Errorf("%s decodes differently from version 1: %v", tt.info.Name, err)
		}
	}

	// The same index with a version-2 field but version 1 in the header.
	bad := append([]byte(nil), data...)
	ib := bad[HeaderSize : HeaderSize+binary.LittleEndian.Uint64(bad[8:])]
	patched := bytes.Replace(ib, []byte(`"settings":{`), []byte(`"source_index":"x","settings":{`), 1)
	if bytes.Equal(patched, ib) {
		t.Fatal("no settings in the index")
	}
	h1 := fixedHeader{version: 1, indexLen: uint64(len(patched)), fileLen: uint64(len(bad) + len(patched) - len(ib)), indexHash: sha256.Sum256(patched)}
	// Offsets move with the index length; only the header check matters
	// here, and it runs before the layout check.
	var buf bytes.Buffer
	buf.Write(h1.marshal())
	buf.Write(patched)
	buf.Write(bad[HeaderSize+len(ib):])
	p := filepath.Join(dir, "mixed.seedlm")
	os.WriteFile(p, buf.Bytes(), 0o644)
	_, err := Open(p, OpenOptions{})
	var ie *IntegrityError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "version-2 fields") {
		t.Errorf("version 1 with source_index: %v", err)
	}
}
