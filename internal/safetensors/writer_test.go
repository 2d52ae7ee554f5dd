package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func hdrs() []TensorHeader {
	return []TensorHeader{
		{Name: "a", DType: "F32", Shape: []int64{2}},
		{Name: "b", DType: "U8", Shape: []int64{3}},
		{Name: "s", DType: "BF16", Shape: nil},
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriterMisuse(t *testing.T) {
	type step struct {
		name string
		n    int
	}
	cases := []struct {
		name  string
		steps []step
		want  string
	}{
		{"out of order", []step{{"b", 3}}, `expected "a" next`},
		{"wrong size", []step{{"a", 7}}, "got 7 bytes, but F32 [2] is 8 bytes"},
		{"unknown tensor", []step{{"a", 8}, {"b", 3}, {"s", 2}, {"x", 1}}, "more tensors written than declared"},
		{"commit early", []step{{"a", 8}}, `tensor "b": commit after 1 of 3 tensors`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "o.safetensors")
			os.WriteFile(out, []byte("previous"), 0o644)
			w, err := NewWriter(out, hdrs(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got error
			for _, s := range c.steps {
				if got = w.WriteTensor(s.name, make([]byte, s.n)); got != nil {
					break
				}
			}
			if got == nil {
				got = w.Commit()
			}
			if got == nil || !strings.Contains(got.Error(), c.want) || !strings.Contains(got.Error(), out) {
				t.Fatalf("err = %v, want one naming %s and containing %q", got, out, c.want)
			}
			w.Abort()
			// The previous file is untouched and no temp file is left behind.
			if b, _ := os.ReadFile(out); string(b) != "previous" {
				t.Errorf("target changed to %q", b)
			}
			if names := listDir(t, dir); len(names) != 1 {
				t.Errorf("folder holds %v", names)
			}
		})
	}
}

func TestWriterBadDeclarations(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		ts   []TensorHeader
		want string
	}{
		{[]TensorHeader{{"a", "F32", nil}, {"a", "F32", nil}}, "declared twice"},
		{[]TensorHeader{{"__metadata__", "F32", nil}}, "reserved"},
		{[]TensorHeader{{"a", "F33", nil}}, "unknown dtype"},
		{[]TensorHeader{{"a", "F4", []int64{3}}}, "whole bytes"},
		{[]TensorHeader{{"bad\xff", "F32", nil}}, "UTF-8"},
	} {
		_, err := NewWriter(filepath.Join(dir, "x.safetensors"), c.ts, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.ts, err, c.want)
		}
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("left files: %v", names)
	}
	if _, err := NewWriter(filepath.Join(dir, "missing", "x.safetensors"), hdrs(), nil); err == nil {
		t.Error("writer into a missing folder succeeded")
	}
}

func TestWriterRoundTripAndReplace(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "o.safetensors")
	os.WriteFile(out, []byte("old"), 0o644)
	w, err := NewWriter(out, hdrs(), map[string]string{"k": "v \"quoted\""})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Fatal("target replaced before Commit")
	}
	data := map[string][]byte{"a": {0, 0, 128, 63, 0, 0, 0, 64}, "b": {1, 2, 3}, "s": {0x80, 0x3f}}
	for _, h := range hdrs() {
		if err := w.WriteTensor(h.Name, data[h.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	w.Abort() // no-op after Commit
	if err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	f, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata()["k"] != `v "quoted"` {
		t.Errorf("metadata = %v", f.Metadata())
	}
	if (f.Header().DataStart-8)%8 != 0 {
		t.Errorf("header length %d not a multiple of 8", f.Header().DataStart-8)
	}
	v, err := f.ReadFloat32("a")
	if err != nil || v[0] != 1 || v[1] != 2 {
		t.Errorf("a = %v, %v", v, err)
	}
	s, err := f.ReadFloat32("s")
	if err != nil || len(s) != 1 || s[0] != 1 {
		t.Errorf("s = %v, %v", s, err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	if names := listDir(t, dir); len(names) != 1 {
		t.Errorf("folder holds %v", names)
	}
}

func TestSameFile(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.safetensors")
	os.WriteFile(a, []byte("x"), 0o644)
	hard := filepath.Join(dir, "hard.safetensors")
	sym := filepath.Join(dir, "sym.safetensors")
	other := filepath.Join(dir, "other.safetensors")
	os.WriteFile(other, []byte("x"), 0o644)
	if err := os.Link(a, hard); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(a, sym); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	rel, _ := filepath.Rel(wd, a)
	cases := []struct {
		p    string
		same bool
	}{{a, true}, {hard, true}, {sym, true}, {rel, true}, {filepath.Join(dir, ".", "a.safetensors"), true},
		{other, false}, {filepath.Join(dir, "missing"), false}}
	for _, c := range cases {
		if got := SameFile(c.p, a); got != c.same {
			t.Errorf("SameFile(%s, a) = %v", c.p, got)
		}
	}
	err := CheckNotInput(sym, other, a)
	var se *Error
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "output is the input") {
		t.Errorf("CheckNotInput = %v", err)
	}
	if err := CheckNotInput(filepath.Join(dir, "new.safetensors"), a); err != nil {
		t.Errorf("new path refused: %v", err)
	}
}

func TestWriterRefusesOpenInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	w, err := NewWriter(in, hdrs()[:1], nil)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteTensor("a", make([]byte, 8))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.safetensors")
	os.Symlink(in, link)
	f, err := Open(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{in, link} {
		if _, err := NewWriter(p, hdrs(), nil); err == nil || !strings.Contains(err.Error(), "open as an input") {
			t.Errorf("%s: err = %v", p, err)
		}
	}
	f.Close()
	w2, err := NewWriter(in, hdrs(), nil)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	w2.Abort()
}

func TestWriterNamesRoundTrip(t *testing.T) {
	out := filepath.Join(t.TempDir(), "n.safetensors")
	names := []string{"<a&b>", "ünï.cødé", "quote\"back\\slash", "", "tab\tnl\n"}
	var hs []TensorHeader
	for _, n := range names {
		hs = append(hs, TensorHeader{Name: n, DType: "U8", Shape: []int64{1}})
	}
	md := map[string]string{"k<&>": "v\u0000\x7f"}
	w, err := NewWriter(out, hs, md)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		if err := w.WriteTensor(n, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(out)
	if !strings.Contains(string(raw), `"<a&b>"`) {
		t.Errorf("header escapes HTML characters: %s", raw)
	}
	f, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i, ts := range f.Tensors() {
		if ts.Name != names[i] {
			t.Errorf("name %d = %q, want %q", i, ts.Name, names[i])
		}
		if b, _ := f.ReadRaw(ts.Name); len(b) != 1 || b[0] != byte(i) {
			t.Errorf("%q = %v", ts.Name, b)
		}
	}
	if f.Metadata()["k<&>"] != md["k<&>"] {
		t.Errorf("metadata %q", f.Metadata())
	}
}
