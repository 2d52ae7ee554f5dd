package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// compressFixture writes the test model (opt as for mkmodel) and
// compresses it with 8-bit seeds; it returns the archive's bytes.
func compressFixture(t *testing.T, dir, name string, opt map[string]string) []byte {
	t.Helper()
	o := map[string]string{"dtype": "F32", "shards": "1"}
	for k, v := range opt {
		o[k] = v
	}
	model := filepath.Join(dir, name+".model")
	if o["shards"] == "1" {
		model += ".safetensors"
	}
	if err := writeTestModel(model, o); err != nil {
		t.Fatal(err)
	}
	arc := filepath.Join(dir, name+".seedlm")
	var stdout, stderr bytes.Buffer
	args := append([]string{"compress", "--quiet", "--seed-bits", "8", model, "-o", arc}, strings.Fields(o["flags"])...)
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("compress: exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(arc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rewriteIndex applies mutate to an archive's decoded index and writes it
// back with a valid header and hash: only the index's meaning is hostile.
// Chunk offsets move with the index length (a shorter index is padded with
// spaces, which every archive version's reader accepts as JSON whitespace).
func rewriteIndex(t *testing.T, data []byte, mutate func(ix map[string]any)) []byte {
	t.Helper()
	const hdr = 64
	indexLen := int64(binary.LittleEndian.Uint64(data[8:]))
	dec := json.NewDecoder(bytes.NewReader(data[hdr : hdr+indexLen]))
	dec.UseNumber()
	var ix map[string]any
	if err := dec.Decode(&ix); err != nil {
		t.Fatal(err)
	}
	mutate(ix)
	for iter := 0; ; iter++ {
		nb, err := json.Marshal(ix)
		if err != nil {
			t.Fatal(err)
		}
		delta := int64(len(nb)) - indexLen
		if delta <= 0 {
			nb = append(nb, bytes.Repeat([]byte(" "), int(-delta))...)
			chunks := data[hdr+indexLen:]
			out := append([]byte(nil), data[:hdr]...)
			binary.LittleEndian.PutUint64(out[8:], uint64(len(nb)))
			binary.LittleEndian.PutUint64(out[16:], uint64(hdr+len(nb)+len(chunks)))
			sum := sha256.Sum256(nb)
			copy(out[24:56], sum[:])
			return append(append(out, nb...), chunks...)
		}
		if iter > 4 {
			t.Fatal("rewriteIndex: offsets do not settle")
		}
		// Make room: move every chunk by the growth (and some slack, so the
		// offsets' own digits fit) by inserting spaces after the index.
		grow := delta + 16
		shiftChunks(ix, grow)
		pad := append(append([]byte(nil), data[:hdr+indexLen]...), bytes.Repeat([]byte(" "), int(grow))...)
		data = append(pad, data[hdr+indexLen:]...)
		indexLen += grow
	}
}

// shiftChunks moves every chunk offset of an index by d.
func shiftChunks(ix map[string]any, d int64) {
	ts, _ := ix["tensors"].([]any)
	for _, t := range ts {
		tm := t.(map[string]any)
		var refs []map[string]any
		if r, ok := tm["raw"].(map[string]any); ok {
			refs = append(refs, r)
		}
		if ls, ok := tm["layers"].([]any); ok {
			for _, l := range ls {
				refs = append(refs, l.(map[string]any)["chunk"].(map[string]any))
			}
		}
		for _, r := range refs {
			n, _ := r["offset"].(json.Number).Int64()
			r["offset"] = n + d
		}
	}
}

func ixTensor(ix map[string]any, i int) map[string]any {
	return ix["tensors"].([]any)[i].(map[string]any)
}

func ixHeader(ix map[string]any) map[string]any { return ix["header"].(map[string]any) }

// firstTensor is the index of the first passthrough (or coded) tensor.
func firstTensor(ix map[string]any, passthrough bool) int {
	for i, t := range ix["tensors"].([]any) {
		if t.(map[string]any)["passthrough"] == passthrough {
			return i
		}
	}
	panic("no such tensor")
}

// hostileArchives is the hostile-archive corpus: archives whose hashes are
// all valid but whose index lies in a way only the structure checks catch.
func hostileArchives(t *testing.T, dir string) map[string][]byte {
	single := compressFixture(t, dir, "single", nil)
	sharded := compressFixture(t, dir, "sharded", map[string]string{"shards": "3"})
	shardOf := func(ix map[string]any, i int) string { return ixTensor(ix, i)["shard"].(string) }
	cases := []struct {
		name   string
		base   []byte
		mutate func(ix map[string]any)
	}{
		// Name collisions in a sharded model's folder.
		{"source_index equals a shard", sharded, func(ix map[string]any) { ixHeader(ix)["source_index"] = shardOf(ix, 0) }},
		{"shard named like the index", sharded, func(ix map[string]any) {
			s := shardOf(ix, 0)
			for i := range ix["tensors"].([]any) {
				if shardOf(ix, i) == s {
					ixTensor(ix, i)["shard"] = "model.safetensors.index.json"
				}
			}
		}},
		{"shard named like a custom index", sharded, func(ix map[string]any) {
			ixHeader(ix)["source_index"] = "weights.safetensors"
		}},
		{"shards differing only in case", sharded, func(ix map[string]any) {
			ixTensor(ix, 0)["shard"] = strings.ToUpper(shardOf(ix, 1)[:1]) + shardOf(ix, 1)[1:]
		}},
		{"shard with ..", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = "../evil.safetensors" }},
		{"shard is ..", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = ".." }},
		{"shard in a subfolder", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = "sub/evil.safetensors" }},
		{"absolute shard path", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = "/tmp/evil.safetensors" }},
		{"backslash shard path", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = `..\evil.safetensors` }},
		{"hidden shard", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = ".evil.safetensors" }},
		{"control character in shard", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = "a\nb.safetensors" }},
		{"shard not a safetensors file", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = "config.json" }},
		{"empty shard in a sharded archive", sharded, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = "" }},
		{"source_index with a path", sharded, func(ix map[string]any) { ixHeader(ix)["source_index"] = "../model.safetensors.index.json" }},
		{"source_index not json", sharded, func(ix map[string]any) { ixHeader(ix)["source_index"] = "index" }},
		// What decompress writes into safetensors headers.
		{"tensor named __metadata__", single, func(ix map[string]any) { ixTensor(ix, 0)["name"] = "__metadata__" }},
		{"unknown dtype", single, func(ix map[string]any) { ixTensor(ix, firstTensor(ix, true))["dtype"] = "X99" }},
		{"coded tensor with an integer dtype", single, func(ix map[string]any) { ixTensor(ix, firstTensor(ix, false))["dtype"] = "I32" }},
		{"coded tensor of booleans", single, func(ix map[string]any) { ixTensor(ix, firstTensor(ix, false))["dtype"] = "BOOL" }},
		{"unknown source format", single, func(ix map[string]any) { ixHeader(ix)["source_format"] = "zip" }},
		{"shard in a single-file archive", single, func(ix map[string]any) { ixTensor(ix, 0)["shard"] = "x.safetensors" }},
		{"source_index in a single-file archive", single, func(ix map[string]any) { ixHeader(ix)["source_index"] = "m.index.json" }},
		{"negative source size", single, func(ix map[string]any) { ixHeader(ix)["source_bytes"] = -1 }},
	}
	out := map[string][]byte{}
	for _, c := range cases {
		out[c.name] = rewriteIndex(t, c.base, c.mutate)
	}
	// Valid rewrites (the identity, and a longer index that moves every
	// chunk) must stay valid, so each case fails for its own reason.
	out["valid: identity"] = rewriteIndex(t, sharded, func(map[string]any) {})
	out["valid: longer index"] = rewriteIndex(t, single, func(ix map[string]any) {
		ixHeader(ix)["metadata"].(map[string]any)["note"] = strings.Repeat("long ", 400)
	})
	return out
}

// TestHostileArchives: verify, inspect and decompress refuse every archive
// of the hostile corpus alike (exit 3: one validation for all of them), and
// decompress writes nothing.
func TestHostileArchives(t *testing.T) {
	dir := t.TempDir()
	corpus := hostileArchives(t, dir)
	t.Logf("hostile archive corpus: %d cases (+2 valid controls)", len(corpus)-2)
	for name, b := range corpus {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			d := t.TempDir()
			p := filepath.Join(d, "h.seedlm")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			want := 3
			if strings.HasPrefix(name, "valid: ") {
				want = 0
			}
			for _, args := range [][]string{
				{"verify", p},
				{"inspect", p},
				{"decompress", p, "-o", filepath.Join(d, "out")},
			} {
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), args, &stdout, &stderr)
				if code != want {
					t.Fatalf("%s: exit %d, want %d\n%s", args[0], code, want, stderr.String())
				}
				if want != 0 && !strings.Contains(stderr.String(), "seedlm: error:") {
					t.Errorf("%s: no error message: %s", args[0], stderr.String())
				}
			}
			if want != 0 {
				if names := dirNames(t, d); fmt.Sprint(names) != "[h.seedlm]" {
					t.Errorf("decompress left %v", names)
				}
			}
		})
	}
}
