package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/encoder"
)

// bombParams is the cheapest codec per weight: 11 bits per 256 weights, so
// a few megabytes of payload declare a billion weights.
var bombParams = encoder.Params{BlockSize: 256, LatentDim: 1, SeedBits: 8, CoeffBits: 2, ExpBits: 1}

// randomLayer is a valid layer of n weights with random fields (every seed
// non-zero), made without encoding anything.
func randomLayer(p encoder.Params, n int, seed int64) *encoder.Layer {
	rng := rand.New(rand.NewSource(seed))
	b := make([]byte, p.PayloadBytes(n))
	rng.Read(b)
	for blk := 0; blk < p.Blocks(n); blk++ {
		bit := blk * p.BlockBits()
		b[bit/8] |= 1 << (bit % 8) // seed ≠ 0
	}
	return &encoder.Layer{Params: p, N: n, Payload: b}
}

// craftArchive writes an archive of one coded tensor with random payloads
// (layers of params ps), through the archive writer.
func craftArchive(t testing.TB, path, dtype string, shape []int64, ps ...encoder.Params) {
	t.Helper()
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	w, err := archive.Create(path, archive.Header{SourceFormat: "safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	res := &encoder.Result{Norm2: 1}
	for k, p := range ps {
		res.Layers = append(res.Layers, randomLayer(p, int(n), int64(k)))
		res.SqErr = append(res.SqErr, 0.5)
	}
	if err := w.AddCoded(archive.Info{Name: "big.weight", DType: dtype, Shape: shape}, "crafted", res); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// writeSparseBomb writes a valid-looking archive whose one tensor declares
// shape (C256 P1 K8: ~0.043 bits/weight) with a payload that is a hole in
// a sparse file: tiny on disk, huge as declared. Its chunk hash is not the
// payload's, so only a reader that hashes the payload would notice.
func writeSparseBomb(t *testing.T, path string, shape []int64) int64 {
	t.Helper()
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	blocks := (n + 255) / 256
	length := (blocks*int64(bombParams.BlockBits()) + 7) / 8
	const indexLen = 1024
	ix := map[string]any{
		"header": map[string]any{"source_format": "safetensors", "source_bytes": 0},
		"tensors": []any{map[string]any{
			"name": "bomb.weight", "dtype": "F32", "shape": shape, "rule": "crafted", "passthrough": false, "norm2": 1,
			"layers": []any{map[string]any{
				"params": bombParams, "exp_bias": 0, "n": n, "sq_err": 1,
				"chunk": map[string]any{"offset": 64 + indexLen, "length": length, "sha256": strings.Repeat("0", 64)},
			}},
		}},
	}
	b, err := json.Marshal(ix)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, bytes.Repeat([]byte(" "), indexLen-len(b))...)
	fileLen := int64(64+indexLen) + length
	hdr := make([]byte, 64)
	copy(hdr, "SEEDLM")
	binary.LittleEndian.PutUint16(hdr[6:], 1) // read by every version
	binary.LittleEndian.PutUint64(hdr[8:], indexLen)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(fileLen))
	sum := sha256.Sum256(b)
	copy(hdr[24:], sum[:])
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(hdr)
	f.Write(b)
	if err := f.Truncate(fileLen); err != nil {
		t.Skipf("no sparse file of %d bytes here: %v", fileLen, err)
	}
	return 4 * n
}

// A small archive declaring 2^40 weights (4 TiB of float32 output): decompress
// refuses it up front, stating what it needs and what is free, and writes
// nothing. (It does not read the 6 GB payload first: the check comes before
// the hashes.)
func TestDecompressChecksFreeSpace(t *testing.T) {
	dir := t.TempDir()
	arc := filepath.Join(dir, "bomb.seedlm")
	need := writeSparseBomb(t, arc, []int64{1 << 20, 1 << 20})
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"decompress", arc, "-o", filepath.Join(dir, "out.safetensors")}, &stdout, &stderr)
	if code != ExitFailure {
		t.Fatalf("exit %d, want %d: %s", code, ExitFailure, stderr.String())
	}
	re := regexp.MustCompile(`^seedlm: error: not enough free space for .*out\.safetensors: it needs ([0-9,]+) bytes, .* has ([0-9,]+) bytes free\n`)
	m := re.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr %q does not state both sizes", stderr.String())
	}
	got, _ := strconv.ParseInt(strings.ReplaceAll(m[1], ",", ""), 10, 64)
	free, _ := strconv.ParseInt(strings.ReplaceAll(m[2], ",", ""), 10, 64)
	if got < need || free >= got {
		t.Errorf("needs %s bytes with %s free; want at least the %d bytes of float32 data, more than is free", m[1], m[2], need)
	}
	if names := dirNames(t, dir); fmt.Sprint(names) != "[bomb.seedlm]" {
		t.Errorf("left %v", names)
	}
}

// peakHeap runs f while sampling the Go heap, and returns the largest heap
// in use seen (live and not-yet-collected objects).
func peakHeap(f func()) uint64 {
	var peak uint64
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak
}

// decompress decodes and writes in bounded slices: the Go heap stays far
// below the tensor's size (64 MiB as float32 here, 32 MiB as BF16 output).
func TestDecompressMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 16M weights")
	}
	dir := t.TempDir()
	arc := filepath.Join(dir, "big.seedlm")
	const n = 1 << 24
	craftArchive(t, arc, "BF16", []int64{1 << 12, 1 << 12}, bombParams, bombParams)
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	runtime.GC()
	var code int
	var stderr bytes.Buffer
	peak := peakHeap(func() {
		code = run(context.Background(), []string{"decompress", "--quiet", arc, "-o", filepath.Join(dir, "out.safetensors")}, &bytes.Buffer{}, &stderr)
	})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	t.Logf("peak Go heap %.1f MiB while decompressing %d weights (%.0f MiB as float32)", float64(peak)/(1<<20), n, 4.0*n/(1<<20))
	if peak > 48<<20 {
		t.Errorf("peak heap %.1f MiB: decompress holds the tensor in memory", float64(peak)/(1<<20))
	}
	fi, err := os.Stat(filepath.Join(dir, "out.safetensors"))
	if err != nil || fi.Size() < 2*n {
		t.Fatalf("output: %v, %v", fi, err)
	}
}
