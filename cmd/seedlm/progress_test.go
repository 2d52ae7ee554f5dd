package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// On a terminal, compress draws a bar on stderr (never stdout); with
// --quiet or --json, or when stderr is not a terminal, it draws nothing.
func TestProgressOnlyOnTerminal(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.safetensors")
	if err := writeTestModel(in, map[string]string{"dtype": "F32", "shards": "1"}); err != nil {
		t.Fatal(err)
	}
	old := isTerminal
	defer func() { isTerminal = old }()
	for _, c := range []struct {
		name        string
		term        bool
		quiet, json bool
		wantBar     bool
	}{
		{"terminal", true, false, false, true},
		{"terminal quiet", true, true, false, false},
		{"terminal json", true, false, true, false},
		{"pipe", false, false, false, false},
	} {
		isTerminal = func(io.Writer) bool { return c.term }
		var stdout, stderr bytes.Buffer
		o := &compressOptions{Output: filepath.Join(dir, "m.seedlm"), Force: true, Quiet: c.quiet, JSON: c.json, Settings: eightBits()}
		if err := runCompress(context.Background(), o, []string{in}, &stdout, &stderr); err != nil {
			t.Fatal(err)
		}
		gotBar := strings.Contains(stderr.String(), "weights")
		if gotBar != c.wantBar {
			t.Errorf("%s: progress on stderr = %v, want %v (stderr %q)", c.name, gotBar, c.wantBar, stderr.String())
		}
		if strings.Contains(stdout.String(), "\r") || strings.Contains(stdout.String(), "\x1b[") {
			t.Errorf("%s: progress leaked to stdout: %q", c.name, stdout.String())
		}
		if c.quiet && stdout.Len() != 0 {
			t.Errorf("%s: stdout %q, want nothing", c.name, stdout.String())
		}
	}
}
