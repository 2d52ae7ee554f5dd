package safetensors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeSharded writes two shards and an index into a new folder.
func writeSharded(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	shards := []Shard{
		{Name: "model-00001-of-00002.safetensors", Metadata: map[string]string{"format": "pt"},
			Tensors: []TensorHeader{{"x.w", "F32", []int64{2, 2}}, {"x.b", "BF16", []int64{2}}}},
		{Name: "model-00002-of-00002.safetensors", Metadata: map[string]string{"format": "pt"},
			Tensors: []TensorHeader{{"a.w", "I64", []int64{1}}, {"e", "F16", []int64{0}}}},
	}
	data := map[string][]byte{
		"x.w": {0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64},
		"x.b": {0x80, 0x3f, 0x80, 0xbf}, "a.w": {7, 0, 0, 0, 0, 0, 0, 0}, "e": {},
	}
	sw, err := NewShardedWriter(dir, shards, ShardedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Interleave shards: each shard only needs its own order.
	for _, n := range []string{"a.w", "x.w", "e", "x.b"} {
		if err := sw.WriteTensor(n, data[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.WriteTensor("nope", nil); err == nil {
		t.Error("undeclared tensor accepted")
	}
	if err := sw.Commit(); err != nil {
		t.Fatal(err)
	}
	return dir, data
}

func TestShardedRoundTrip(t *testing.T) {
	dir, data := writeSharded(t)
	idx := filepath.Join(dir, IndexName)
	var ix struct {
		Metadata  map[string]int64
		WeightMap map[string]string `json:"weight_map"`
	}
	b, _ := os.ReadFile(idx)
	if err := json.Unmarshal(b, &ix); err != nil {
		t.Fatal(err)
	}
	if ix.Metadata["total_size"] != 16+4+8 || len(ix.WeightMap) != 4 || ix.WeightMap["e"] != "model-00002-of-00002.safetensors" {
		t.Errorf("index = %s", b)
	}
	for _, p := range []string{dir, idx} {
		s, err := OpenSharded(p)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, ts := range s.Tensors() {
			names = append(names, ts.Shard+":"+ts.Name)
			raw, err := s.ReadRaw(ts.Name)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != string(data[ts.Name]) {
				t.Errorf("%s: %v", ts.Name, raw)
			}
		}
		want := "model-00001-of-00002.safetensors:x.w model-00001-of-00002.safetensors:x.b model-00002-of-00002.safetensors:a.w model-00002-of-00002.safetensors:e"
		if strings.Join(names, " ") != want {
			t.Errorf("order %v", names)
		}
		v, err := s.ReadFloat32Into("x.b", nil)
		if err != nil || v[0] != 1 || v[1] != -1 {
			t.Errorf("x.b = %v %v", v, err)
		}
		if s.Metadata()["format"] != "pt" || s.Index().Metadata["total_size"] != "28" {
			t.Errorf("metadata %v / %v", s.Metadata(), s.Index().Metadata)
		}
		if _, err := s.ReadRaw("X.W"); err == nil {
			t.Error("case-insensitive lookup")
		}
		s.Close()
	}
}

func TestShardedValidation(t *testing.T) {
	s1 := "model-00001-of-00002.safetensors"
	s2 := "model-00002-of-00002.safetensors"
	cases := []struct {
		name   string
		mutate func(dir string)
		want   []string
	}{
		{"missing shard", func(d string) { os.Remove(filepath.Join(d, s2)) }, []string{"does not exist", "download"}},
		{"tensor missing from shard", func(d string) {
			writeIndex(d, `{"weight_map":{"x.w":"`+s1+`","x.b":"`+s1+`","a.w":"`+s2+`","e":"`+s2+`","ghost":"`+s1+`"}}`)
		}, []string{`tensor "ghost"`, "header lacks it"}},
		{"tensor missing from index", func(d string) {
			writeIndex(d, `{"weight_map":{"x.w":"`+s1+`","x.b":"`+s1+`","a.w":"`+s2+`"}}`)
		}, []string{`tensor "e"`, "not in the index"}},
		{"tensor in the wrong shard", func(d string) {
			writeIndex(d, `{"weight_map":{"x.w":"`+s1+`","x.b":"`+s1+`","a.w":"`+s1+`","e":"`+s2+`"}}`)
		}, []string{`tensor "a.w"`}},
		{"tensor in two shards", func(d string) {
			w, _ := NewWriter(filepath.Join(d, s2), []TensorHeader{{"x.w", "F32", []int64{2, 2}}, {"z", "U8", nil}}, nil)
			w.WriteTensor("x.w", make([]byte, 16))
			w.WriteTensor("z", []byte{1})
			w.Commit()
			writeIndex(d, `{"weight_map":{"x.w":"`+s1+`","x.b":"`+s1+`","z":"`+s2+`"}}`)
		}, []string{`tensor "x.w"`, "index maps it to"}},
		{"duplicate weight_map key", func(d string) {
			writeIndex(d, `{"weight_map":{"x.w":"`+s1+`","x.w":"`+s2+`"}}`)
		}, []string{"listed twice"}},
		{"path traversal", func(d string) {
			writeIndex(d, `{"weight_map":{"x.w":"../`+s1+`"}}`)
		}, []string{"not a plain file name"}},
		{"no weight_map", func(d string) { writeIndex(d, `{"metadata":{}}`) }, []string{"no weight_map"}},
		{"index not json", func(d string) { writeIndex(d, `{"weight_map":`) }, []string{"invalid index"}},
		{"two indexes", func(d string) {
			os.WriteFile(filepath.Join(d, "other.safetensors.index.json"), []byte(`{}`), 0o644)
		}, []string{"2 index files"}},
		{"no index", func(d string) { os.Remove(filepath.Join(d, IndexName)) }, []string{"no *.safetensors.index.json"}},
		{"corrupt shard", func(d string) { os.WriteFile(filepath.Join(d, s2), []byte("garbage!!"), 0o644) }, []string{s2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := writeSharded(t)
			c.mutate(dir)
			s, err := OpenSharded(dir)
			if err == nil {
				s.Close()
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if msg := errorAndHint(err); !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func writeIndex(dir, s string) { os.WriteFile(filepath.Join(dir, IndexName), []byte(s), 0o644) }
