package torchload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzTorchLoad feeds arbitrary bytes to the torch.save reader: no panics,
// errors name the file, accepted files have readable tensors of the size
// their dtype and shape imply.
func FuzzTorchLoad(f *testing.F) {
	ents, _ := os.ReadDir(fixtures)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".pt") {
			if b, err := os.ReadFile(filepath.Join(fixtures, e.Name())); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte{0x80, 2, 0x8a, 0, '.'})
	f.Add(append([]byte{0x80, 4, 0x95}, 0, 0, 0, 0, 0, 1, 0, 0, '.'))
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := open("fuzz.pt", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.pt") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for i, ts := range tf.Tensors() {
			raw, err := tf.ReadRaw(ts.Name)
			if err != nil {
				continue // a short file can fail here, by error
			}
			if want := tf.refs[i].nbytes(); int64(len(raw)) != want {
				t.Fatalf("%s: %d bytes, want %d", ts.Name, len(raw), want)
			}
			if v, err := tf.ReadFloat32(ts.Name); err == nil && int64(len(v)) != tf.refs[i].numel() {
				t.Fatalf("%s: %d values", ts.Name, len(v))
			}
		}
	})
}
