package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seedlm/seedlm/internal/compress"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/safetensors"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func eightBits() compress.Settings {
	return compress.Settings{Flags: presets.Config{Codec: presets.Codec{SeedBits: 8}}}
}

// Cancelling compress between tensors leaves nothing at OUT and no temp
// files, and maps to exit 130.
func TestCompressCancelLeavesNothing(t *testing.T) {
	dir, in := testModelIn(t, nil)
	for _, at := range []int{0, 3, 6} { // after the first, a middle and the last tensor
		ctx, cancel := context.WithCancel(context.Background())
		o := &compressOptions{Output: filepath.Join(dir, "m.seedlm"), Quiet: true, Settings: eightBits(),
			afterTensor: func(i int) {
				if i == at {
					cancel()
				}
			}}
		var out, errb bytes.Buffer
		err := runCompress(ctx, o, []string{in}, &out, &errb)
		cancel()
		if !errors.Is(err, context.Canceled) || exitCode(err) != ExitInterrupted {
			t.Fatalf("cancel after tensor %d: err %v (exit %d), want context.Canceled (130)", at, err, exitCode(err))
		}
		if got := dirNames(t, dir); strings.Join(got, " ") != "m.safetensors" {
			t.Fatalf("cancel after tensor %d left %v", at, got)
		}
	}
}

// Cancelling inside a long encode stops it promptly.
func TestCompressCancelDuringEncode(t *testing.T) {
	dir, in := testModelIn(t, map[string]string{"big": ""})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelledAt time.Time
	var once sync.Once
	o := &compressOptions{Output: filepath.Join(dir, "m.seedlm"), Quiet: true, // K=16, 4 layers: seconds of work
		Settings: compress.Settings{Flags: presets.Config{Layers: 4}},
		onBlocks: func() {
			once.Do(func() {
				cancelledAt = time.Now()
				cancel()
			})
		}}
	err := runCompress(ctx, o, []string{in}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if d := time.Since(cancelledAt); d > 2*time.Second {
		t.Fatalf("compress took %v to stop after the cancel", d)
	}
	if got := dirNames(t, dir); strings.Join(got, " ") != "m.safetensors" {
		t.Fatalf("left %v", got)
	}
}

func TestDecompressCancelLeavesNothing(t *testing.T) {
	dir, in := testModelIn(t, nil)
	arc := filepath.Join(dir, "m.seedlm")
	if err := runCompress(context.Background(), &compressOptions{Output: arc, Quiet: true, Settings: eightBits()},
		[]string{in}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := &decompressOptions{Output: filepath.Join(dir, "back.safetensors"), Quiet: true,
		afterTensor: func(i int) {
			if i == 2 {
				cancel()
			}
		}}
	err := runDecompress(ctx, o, []string{arc}, &bytes.Buffer{}, &bytes.Buffer{})
	if exitCode(err) != ExitInterrupted {
		t.Fatalf("err %v, want interrupted", err)
	}
	if got := dirNames(t, dir); strings.Join(got, " ") != "m.safetensors m.seedlm" {
		t.Fatalf("left %v", got)
	}
}

// A real SIGINT to a running seedlm process: exit 130, nothing left.
func TestCompressSIGINT(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "m.safetensors")
	var stderr bytes.Buffer
	cmd := startSlowCompress(t, in, &stderr)
	time.Sleep(20 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
		t.Fatalf("exit: %v, want status 130; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "seedlm: error: interrupted; no output was written") {
		t.Errorf("stderr: %q", stderr.String())
	}
	if got := dirNames(t, dir); strings.Join(got, " ") != "m.safetensors" {
		t.Fatalf("SIGINT left %v", got)
	}
}

func TestExitCodesAndErrorStyle(t *testing.T) {
	var b bytes.Buffer
	code := run(context.Background(), []string{"compress", "--seed-bits", "3", "x"}, &b, &b)
	if code != ExitUsage {
		t.Fatalf("exit %d, want %d", code, ExitUsage)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if !strings.HasPrefix(lines[0], "seedlm: error: flags: seed_bits=3: seed bits K=3 out of range") {
		t.Fatalf("first line %q", lines[0])
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "seedlm: hint: ") {
			t.Fatalf("line %q is neither error nor hint", l)
		}
	}
}

// Hints travel as typed errors (interface{ Hint() string }) through any
// wrapping, innermost first; messages never carry "hint:" text.
func TestHintsAreTyped(t *testing.T) {
	inner := &safetensors.Error{File: "x.safetensors", Tensor: "a", Msg: "bad", Advice: "fix it"}
	err := withHint(fmt.Errorf("compress: %w", inner), "outer advice")
	if strings.Contains(err.Error(), "hint") || strings.Contains(err.Error(), "fix it") {
		t.Errorf("message carries its hint: %q", err)
	}
	if got := hints(err); len(got) != 2 || got[0] != "fix it" || got[1] != "outer advice" {
		t.Errorf("hints %q, want [fix it, outer advice]", got)
	}
	var b bytes.Buffer
	printError(&b, err)
	want := "seedlm: error: compress: x.safetensors: tensor \"a\": bad\nseedlm: hint: fix it\nseedlm: hint: outer advice\n"
	if b.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", b.String(), want)
	}
}

// Slow settings are announced, with the estimate, before encoding starts.
func TestCompressWarnsSlowSettings(t *testing.T) {
	dir, in := testModelIn(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	var once sync.Once
	var warned bool
	o := &compressOptions{Output: filepath.Join(dir, "m.seedlm"), Quiet: true,
		Settings: compress.Settings{Flags: presets.Config{Codec: presets.Codec{BlockSize: 3}}},
		onBlocks: func() {
			once.Do(func() { // the first block: encoding has started
				warned = strings.Contains(stderr.String(), "these settings are slow")
				cancel()
			})
		}}
	err := runCompress(ctx, o, []string{in}, &bytes.Buffer{}, &stderr)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if !warned {
		t.Fatalf("no warning before encoding started; stderr %q", stderr.String())
	}
}
