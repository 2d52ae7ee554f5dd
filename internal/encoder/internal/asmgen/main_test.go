package main

import (
	"bytes"
	"os"
	"testing"
)

// The committed kernels must be exactly what the generator writes: edit
// the generator and run `go generate ./internal/encoder`, never the output.
func TestGeneratedFilesUpToDate(t *testing.T) {
	asm, decl := generate()
	for _, f := range []struct {
		path string
		want []byte
	}{{"../../scan_amd64.s", asm}, {"../../scan_amd64_decl.go", decl}} {
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) {
			t.Errorf("%s differs from the generator's output; run `go generate ./internal/encoder`", f.path)
		}
	}
}
