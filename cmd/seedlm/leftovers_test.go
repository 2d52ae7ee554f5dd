package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startSlowCompress writes the big test model at in and starts a
// compress of it (K=16, six layers, one worker: seconds of work) as a
// separate seedlm process, returning once its temp file exists.
func startSlowCompress(t *testing.T, in string, stderr io.Writer) *exec.Cmd {
	t.Helper()
	if err := writeTestModel(in, map[string]string{"dtype": "F32", "shards": "1", "big": ""}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(in)
	cmd := exec.Command(os.Args[0], "compress", "--workers", "1", "--layers", "6", in)
	cmd.Env = append(os.Environ(), "SEEDLM_TEST_MAIN=1")
	cmd.Dir = dir
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(dirNames(t, dir)) < 2 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("compress never started writing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd
}

// kill -9 during compress leaves exactly one temp file (the archive being
// written in place, not spill files plus a final copy), and the next run in
// that folder removes it once it is provably abandoned: unlocked (the
// kernel dropped the dead process's lock) and untouched for the stale age.
func TestCompressKillLeavesOneTempFileAndNextRunRemovesIt(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "m.safetensors")
	cmd := startSlowCompress(t, in, nil)
	time.Sleep(300 * time.Millisecond) // some tensors written
	cmd.Process.Kill()
	cmd.Wait()
	names := dirNames(t, dir)
	if len(names) != 2 || names[1] != "m.safetensors" || !regexp.MustCompile(`^\.m\.seedlm\.seedlm-tmp-[0-9]+$`).MatchString(names[0]) {
		t.Fatalf("kill -9 left %v, want one temp file .m.seedlm.seedlm-tmp-N", names)
	}
	tmp := filepath.Join(dir, names[0])

	// A fresh leftover is reported, not removed (its writer might be on
	// another machine sharing the folder).
	var stdout, stderr bytes.Buffer
	args := []string{"compress", "--quiet", "--seed-bits", "8", in, "-o", filepath.Join(dir, "other.seedlm")}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "seedlm: note: "+tmp) || !strings.Contains(stderr.String(), "looks like a leftover of an interrupted run") {
		t.Errorf("fresh leftover not reported: %q", stderr.String())
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("fresh leftover removed: %v", err)
	}
	// Once stale, the next run removes it and says so.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(tmp, old, old)
	stderr.Reset()
	args = []string{"compress", "--quiet", "--seed-bits", "8", in}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("third run: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "seedlm: note: removed "+tmp) {
		t.Errorf("stale leftover removal not reported: %q", stderr.String())
	}
	if got := strings.Join(dirNames(t, dir), " "); got != "m.safetensors m.seedlm other.seedlm" {
		t.Fatalf("folder holds %s", got)
	}
}
