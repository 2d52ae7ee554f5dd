package checkpoint

import (
	"github.com/seedlm/seedlm/internal/dtype"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/safetensors"
)

// FuzzOpen runs Open on arbitrary bytes saved under each kind of name the
// dispatcher knows (kind%4: .safetensors, .pt, a sharded folder whose index
// is the data, an unknown extension), then reads every tensor.
func FuzzOpen(f *testing.F) {
	for _, p := range []string{
		filepath.Join(stFixtures, "numpy_written.safetensors"),
		filepath.Join(torchFixtures, "views.pt"),
		filepath.Join(torchFixtures, "legacy.pt"),
	} {
		if b, err := os.ReadFile(p); err == nil {
			for k := byte(0); k < 4; k++ {
				f.Add(b, k)
			}
		}
	}
	f.Add([]byte(`{"weight_map":{"t_f32":"shard.safetensors"}}`), byte(2))
	f.Add([]byte(`{"weight_map":{"t_f32":"missing.safetensors"}}`), byte(2))
	shard, err := os.ReadFile(filepath.Join(stFixtures, "numpy_written.safetensors"))
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, kind byte) {
		var path string
		switch kind % 4 {
		case 0:
			path = filepath.Join(dir, "m.safetensors")
		case 1:
			path = filepath.Join(dir, "m.pt")
		case 2:
			path = filepath.Join(dir, "sharded")
			os.MkdirAll(path, 0o755)
			os.WriteFile(filepath.Join(path, "shard.safetensors"), shard, 0o644)
			os.WriteFile(filepath.Join(path, safetensors.IndexName), data, 0o644)
		case 3:
			path = filepath.Join(dir, "m.weights")
		}
		if kind%4 != 2 {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(path)
		if err != nil {
			if !strings.Contains(err.Error(), filepath.Base(path)) && !strings.Contains(err.Error(), "shard") {
				t.Fatalf("error names neither the file nor a shard: %v", err)
			}
			return
		}
		defer s.Close()
		for _, ti := range s.Tensors() {
			if ti.NumElements() < 0 {
				t.Fatalf("%s: negative element count", ti.Name)
			}
			raw, err := s.ReadRaw(ti.Name)
			if err != nil {
				continue
			}
			if n, err := dtype.ByteLen(ti.DType, ti.Shape); err != nil || n != int64(len(raw)) {
				t.Fatalf("%s: %d bytes for %s %v", ti.Name, len(raw), ti.DType, ti.Shape)
			}
			if dtype.CanFloat32(ti.DType) {
				if v, err := s.ReadFloat32(ti.Name); err == nil && int64(len(v)) != ti.NumElements() {
					t.Fatalf("%s: %d values", ti.Name, len(v))
				}
			}
		}
	})
}
