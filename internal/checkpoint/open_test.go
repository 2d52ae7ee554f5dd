package checkpoint

import (
	"bytes"
	"github.com/seedlm/seedlm/internal/dtype"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/safetensors"
)

const (
	stFixtures    = "../../testdata/safetensors"
	torchFixtures = "../../testdata/torch"
	shared        = "../../../shared/data"
)

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readAll reads every tensor raw, checking lengths against dtype and shape.
func readAll(t *testing.T, s Source) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, ti := range s.Tensors() {
		b, err := s.ReadRaw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		n, err := dtype.ByteLen(ti.DType, ti.Shape)
		if err != nil || int64(len(b)) != n {
			t.Fatalf("%s: %d bytes for %s %v (%v)", ti.Name, len(b), ti.DType, ti.Shape, err)
		}
		out[ti.Name] = b
	}
	return out
}

func TestOpenDispatch(t *testing.T) {
	dir := t.TempDir()
	single := filepath.Join(stFixtures, "numpy_written.safetensors")
	oneDir := filepath.Join(dir, "one")
	os.Mkdir(oneDir, 0o755)
	copyTo(t, single, filepath.Join(oneDir, "model.safetensors"))
	ckpt := filepath.Join(dir, "model.ckpt")
	copyTo(t, filepath.Join(torchFixtures, "views.pt"), ckpt)
	legacyOdd := filepath.Join(dir, "legacy.weights")
	copyTo(t, filepath.Join(torchFixtures, "legacy.pt"), legacyOdd)
	stOdd := filepath.Join(dir, "model.weights")
	copyTo(t, single, stOdd)
	shardDir := filepath.Join(dir, "sharded")
	os.Mkdir(shardDir, 0o755)
	writeShardedFrom(t, single, shardDir)

	cases := []struct {
		path, format string
		n            int
	}{
		{single, "safetensors", 24},
		{oneDir, "safetensors", 24},
		{stOdd, "safetensors", 24},
		{shardDir, "safetensors-sharded", 24},
		{filepath.Join(shardDir, safetensors.IndexName), "safetensors-sharded", 24},
		{filepath.Join(torchFixtures, "dtypes.pt"), "torch", 14},
		{filepath.Join(torchFixtures, "legacy.pt"), "torch", 4},
		{ckpt, "torch", 9},
		{legacyOdd, "torch", 4},
	}
	for _, c := range cases {
		s, err := Open(c.path)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if s.Format() != c.format || len(s.Tensors()) != c.n || s.Path() != c.path && c.path != oneDir {
			t.Errorf("%s: format %s, %d tensors, path %s", c.path, s.Format(), len(s.Tensors()), s.Path())
		}
		readAll(t, s)
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
}

func writeShardedFrom(t *testing.T, src, dir string) {
	t.Helper()
	f, err := safetensors.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var a, b []safetensors.TensorHeader
	for i, ts := range f.Tensors() {
		if i < len(f.Tensors())/2 {
			a = append(a, ts.TensorHeader)
		} else {
			b = append(b, ts.TensorHeader)
		}
	}
	sw, err := safetensors.NewShardedWriter(dir, []safetensors.Shard{
		{Name: "model-00001-of-00002.safetensors", Tensors: a, Metadata: map[string]string{"part": "1"}},
		{Name: "model-00002-of-00002.safetensors", Tensors: b, Metadata: map[string]string{"part": "2"}},
	}, safetensors.ShardedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range f.Tensors() {
		raw, err := f.ReadRaw(ts.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.WriteTensor(ts.Name, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	two := filepath.Join(dir, "two")
	os.Mkdir(two, 0o755)
	copyTo(t, filepath.Join(stFixtures, "numpy_written.safetensors"), filepath.Join(two, "a.safetensors"))
	copyTo(t, filepath.Join(stFixtures, "numpy_written.safetensors"), filepath.Join(two, "b.safetensors"))
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	binIdx := filepath.Join(dir, "pytorch_model.bin.index.json")
	os.WriteFile(binIdx, []byte(`{}`), 0o644)
	junk := filepath.Join(dir, "notes.txt")
	os.WriteFile(junk, []byte("just some text"), 0o644)
	badST := filepath.Join(dir, "bad.safetensors")
	os.WriteFile(badST, []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, 0o644)
	cases := map[string]string{
		filepath.Join(dir, "missing.safetensors"): "cannot open",
		two:    "2 .safetensors files but no index",
		empty:  "folder holds no weights",
		binIdx: "no weight_map",
		junk:   "unrecognised checkpoint format",
		badST:  "runs past the end",
		filepath.Join(torchFixtures, "evil_global.pt"): "posix.system",
	}
	for p, want := range cases {
		s, err := Open(p)
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", p)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), filepath.Base(p)) {
			t.Errorf("%s: %v (want %q and the path)", p, err, want)
		}
	}
}

// The .pt and .safetensors copies of stories260K must hold identical tensors.
func TestRealTorchMatchesSafetensors(t *testing.T) {
	pt := filepath.Join(shared, "stories260K/stories260K.pt")
	sf := filepath.Join(shared, "stories260K/stories260K.f32.safetensors")
	if _, err := os.Stat(pt); err != nil {
		t.Skipf("needs the real models in ../shared/data beside the repository (on the development machine only), absent here: %v", err)
	}
	a, err := Open(pt)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(sf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ra, rb := readAll(t, a), readAll(t, b)
	if len(ra) != 48 || len(rb) != 48 {
		t.Fatalf("%d and %d tensors", len(ra), len(rb))
	}
	for name, x := range ra {
		if !bytes.Equal(x, rb[name]) {
			t.Errorf("%s differs between .pt and .safetensors", name)
		}
	}
	var buf []float32
	for _, ti := range a.Tensors() {
		v, err := ReadFloat32Into(a, ti.Name, buf)
		if err != nil {
			t.Fatal(err)
		}
		if cap(v) >= cap(buf) {
			buf = v[:0]
		}
		if int64(len(v)) != ti.NumElements() {
			t.Fatalf("%s: %d values", ti.Name, len(v))
		}
	}
}

func TestShardLayoutMirrors(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	out := filepath.Join(dir, "out")
	os.Mkdir(in, 0o755)
	os.Mkdir(out, 0o755)
	writeShardedFrom(t, filepath.Join(stFixtures, "numpy_written.safetensors"), in)
	src, err := Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	layout := ShardLayout(src)
	if len(layout) != 2 || layout[1].Metadata["part"] != "2" {
		t.Fatalf("layout %+v", layout)
	}
	sw, err := safetensors.NewShardedWriter(out, layout, safetensors.ShardedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range src.Tensors() {
		raw, _ := src.ReadRaw(ti.Name)
		if err := sw.WriteTensor(ti.Name, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", safetensors.IndexName} {
		x, _ := os.ReadFile(filepath.Join(in, name))
		y, _ := os.ReadFile(filepath.Join(out, name))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s: mirrored copy differs", name)
		}
	}
	single, _ := Open(filepath.Join(stFixtures, "numpy_written.safetensors"))
	defer single.Close()
	if ShardLayout(single) != nil {
		t.Error("layout for an unsharded source")
	}
}
