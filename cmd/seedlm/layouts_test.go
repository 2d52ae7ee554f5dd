package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every input layout × every kind of settings compresses and decompresses
// (issue: a sharded folder or index with no setting recorded crashed with
// a nil-map panic, which Go reports as exit 2).
func TestLayoutMatrix(t *testing.T) {
	dir := t.TempDir()
	mk := func(rel string, opt map[string]string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeTestModel(p, opt); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f32 := map[string]string{"dtype": "F32", "shards": "1"}
	pt, _ := filepath.Abs("../../testdata/torch/model.pt")
	hf := mk("hf/model.safetensors", f32)
	if err := os.WriteFile(filepath.Join(filepath.Dir(hf), "config.json"), []byte(`{"model_type": "llama"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sharded := mk("sharded", map[string]string{"dtype": "F32", "shards": "3"})
	layouts := []struct{ name, input string }{
		{"single", mk("single/m.safetensors", f32)},
		{"bf16", mk("bf16/m.safetensors", map[string]string{"dtype": "BF16", "shards": "1"})},
		{"sharded folder", sharded},
		{"sharded index", filepath.Join(sharded, "model.safetensors.index.json")},
		{"torch", pt},
		{"hf folder", filepath.Dir(hf)},
	}
	rules := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rules, []byte("seed_bits: 8\nlayer_specific:\n  \"*.self_attn.*\":\n    seed_bits: 9\n    layers: 2\n  \"*.mlp.*\":\n    passthrough: true\n"), 0o644)
	settings := []struct {
		name string
		args []string
	}{
		{"no flags", nil},
		{"preset", []string{"--preset", "fast"}},
		{"target", []string{"--target-bpw", "8", "--seed-bits", "8"}},
		{"rule file", []string{"--config", rules}},
	}
	n := 0
	for _, l := range layouts {
		for _, s := range settings {
			n++
			arc := filepath.Join(dir, "out", strings.ReplaceAll(l.name+"-"+s.name, " ", "_")+".seedlm")
			back := strings.TrimSuffix(arc, ".seedlm") + ".back"
			os.MkdirAll(filepath.Dir(arc), 0o755)
			var stderr bytes.Buffer
			args := append([]string{"compress", "--quiet", l.input, "-o", arc}, s.args...)
			if code := run(context.Background(), args, io.Discard, &stderr); code != 0 {
				t.Errorf("%s × %s: compress exit %d: %s", l.name, s.name, code, stderr.String())
				continue
			}
			if strings.HasSuffix(l.input, ".pt") || !strings.Contains(l.name, "sharded") {
				back += ".safetensors"
			}
			stderr.Reset()
			if code := run(context.Background(), []string{"decompress", "--quiet", arc, "-o", back}, io.Discard, &stderr); code != 0 {
				t.Errorf("%s × %s: decompress exit %d: %s", l.name, s.name, code, stderr.String())
				continue
			}
			if _, err := compareCheckpoints(l.input, back, 0.5, "", arc); err != nil {
				t.Errorf("%s × %s: %v", l.name, s.name, err)
			}
		}
	}
	if n != 24 {
		t.Fatalf("%d cells", n)
	}
}

// A panic is reported as an internal error with exit 1: Go's own status for
// a panic, 2, would claim a usage error.
func TestPanicIsNotUsage(t *testing.T) {
	dir, in := testModelIn(t, nil)
	saved := isTerminal
	defer func() { isTerminal = saved }()
	isTerminal = func(io.Writer) bool { panic("injected") }
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"compress", "--seed-bits", "8", in}, io.Discard, &stderr)
	if code != ExitFailure || !strings.HasPrefix(stderr.String(), "seedlm: error: internal error: injected") ||
		!strings.Contains(stderr.String(), "seedlm: hint: this is a bug") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "m.seedlm")); err == nil {
		t.Error("left an archive")
	}
}
