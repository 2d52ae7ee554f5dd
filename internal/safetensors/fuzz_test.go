package safetensors

import (
	"bytes"
	"github.com/seedlm/seedlm/internal/dtype"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadHeader feeds arbitrary files to the reader. Accepted files must be
// self-consistent (every tensor readable, re-encoding the header gives the
// same tensors); rejected ones must give an error naming the file.
func FuzzReadHeader(f *testing.F) {
	for _, name := range []string{"numpy_written.safetensors", "go_written.safetensors"} {
		if b, err := os.ReadFile(filepath.Join(fixtures, name)); err == nil {
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	f.Add(file(`{}`, 0))
	f.Add(file(`{"__metadata__":{"a":"b"},"x":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}`, 8))
	f.Add(file(`{"a":{"dtype":"F4","shape":[3,2],"data_offsets":[0,3]},"b":{"dtype":"F8_E4M3","shape":[],"data_offsets":[3,4]}}`, 4))
	f.Add(file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader("fuzz.safetensors", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.safetensors: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		var hdrs []TensorHeader
		var body []byte
		for _, ts := range r.Tensors() {
			raw, err := r.ReadRaw(ts.Name)
			if err != nil {
				t.Fatalf("%s: accepted but unreadable: %v", ts.Name, err)
			}
			if int64(len(raw)) != ts.End-ts.Begin {
				t.Fatalf("%s: %d bytes for [%d, %d)", ts.Name, len(raw), ts.Begin, ts.End)
			}
			if dtype.CanFloat32(ts.DType) {
				v, err := r.ReadFloat32(ts.Name)
				n, _ := dtype.NumElements(ts.Shape)
				if err != nil || int64(len(v)) != n {
					t.Fatalf("%s: ReadFloat32 gave %d values, %v", ts.Name, len(v), err)
				}
			}
			hdrs = append(hdrs, ts.TensorHeader)
			body = append(body, raw...)
		}
		// Re-encode and re-read: the writer's header must round-trip.
		hdr, _, err := EncodeHeader("re", hdrs, r.Metadata())
		if err != nil {
			t.Fatalf("accepted header does not re-encode: %v", err)
		}
		r2, err := ParseHeader("re", hdr, int64(len(body)))
		if err != nil {
			t.Fatalf("re-encoded header rejected: %v", err)
		}
		if len(r2.Tensors) != len(hdrs) || len(r2.Metadata) != len(r.Metadata()) {
			t.Fatalf("round trip changed the header")
		}
		for i, ts := range r2.Tensors {
			if ts.Name != hdrs[i].Name || ts.DType != hdrs[i].DType || len(ts.Shape) != len(hdrs[i].Shape) {
				t.Fatalf("round trip changed tensor %d", i)
			}
		}
	})
}

// FuzzParseIndex feeds arbitrary JSON to the sharded index parser.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":28},"weight_map":{"a":"model-00001-of-00002.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../x"}}`))
	f.Add([]byte(`{"weight_map":{"a":"x","a":"y"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := ParseIndex("fuzz.index.json", data)
		if err != nil {
			return
		}
		for name, shard := range ix.WeightMap {
			if shard == "" || filepath.Base(shard) != shard || strings.ContainsAny(shard, `/\`) {
				t.Fatalf("%s: unsafe shard name %q accepted", name, shard)
			}
		}
	})
}
