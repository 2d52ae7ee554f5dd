package model

import (
	"context"
	"fmt"
	"math/rand"
	"runtime"
	"testing"
)

// BenchmarkLinear measures the matmul kernel on linear-layer shapes: a batch
// of 2048 tokens (the default evaluation text, 16 × 128) through a weight of
// [out, in]. GMA/s is useful multiply-adds per second, comparable with the
// peak float32 multiply-add rate of encoder's BenchmarkPeakFMA (GFMA/s):
//
//	go test -p 1 -run XXX -bench 'PeakFMA|Linear' ./internal/encoder ./internal/model
func BenchmarkLinear(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	for _, sh := range []struct{ rows, in, out int }{{2048, 768, 768}, {2048, 768, 2048}, {2048, 2048, 768}, {16, 768, 2048}} {
		for _, dt := range []string{"F32", "BF16"} {
			x := randFloats(rng, sh.rows*sh.in)
			w := NewTensorRounded("w", dt, []int64{int64(sh.out), int64(sh.in)}, randFloats(rng, sh.out*sh.in))
			y := make([]float32, sh.rows*sh.out)
			for _, nw := range []int{1, runtime.GOMAXPROCS(0)} {
				b.Run(fmt.Sprintf("%dx%dx%d/%s/workers=%d", sh.rows, sh.in, sh.out, dt, nw), func(b *testing.B) {
					cpu0 := cpuSeconds()
					for b.Loop() {
						linear(y, x, sh.rows, w, nil, nw)
					}
					mas := float64(sh.rows*sh.in*sh.out) * float64(b.N)
					b.ReportMetric(mas/b.Elapsed().Seconds()/1e9, "GMA/s")
					if cpu := cpuSeconds() - cpu0; cpu > 0 {
						b.ReportMetric(mas/cpu/1e9, "GMA/cpu-s")
					}
				})
			}
		}
	}
}

// BenchmarkKernel is the row kernel alone on L1-resident rows (3 x rows
// against 4 tiles of weight rows, 512 elements): its ceiling.
func BenchmarkKernel(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	const n8, tiles = 64, 4
	x := randFloats(rng, 3*8*n8)
	w := randFloats(rng, 3*tiles*8*n8)
	d := make([]float32, 3*3*tiles)
	cpu0 := cpuSeconds()
	for b.Loop() {
		for k := 0; k < 100; k++ {
			dotRows(x, x[8*n8:], x[16*n8:], w, 8*n8, tiles, n8, d, d[3*tiles:], d[6*tiles:])
		}
	}
	mas := 9 * 8 * n8 * tiles * 100 * float64(b.N)
	b.ReportMetric(mas/b.Elapsed().Seconds()/1e9, "GMA/s")
	if cpu := cpuSeconds() - cpu0; cpu > 0 {
		b.ReportMetric(mas/cpu/1e9, "GMA/cpu-s")
	}
}

// hundredM is a Llama-shaped config of about 100 M parameters (GPT-2-small
// widths with a 32 K vocabulary).
var hundredM = &Config{Arch: "llama", Hidden: 768, Intermediate: 2048, Layers: 12, Heads: 12, KVHeads: 12, HeadDim: 64,
	Vocab: 32000, MaxPos: 2048, RMSEps: 1e-5, RopeTheta: 10000, Tied: false, BOS: 1}

// BenchmarkForward is teacher-forced scoring of 16 sequences × 128 tokens
// (tokens/s, and GMA/s counting weight multiply-adds only).
func BenchmarkForward(b *testing.B) {
	for _, name := range []string{"stories260K", "100M"} {
		for _, dt := range []string{"F32", "BF16"} {
			b.Run(name+"/"+dt, func(b *testing.B) {
				var m *Model
				if name == "stories260K" {
					file := map[string]string{"F32": "stories260K.f32.safetensors", "BF16": "stories260K.bf16.safetensors"}[dt]
					m = loadStories(b, file)
				} else {
					var err error
					if m, err = Load(context.Background(), hundredM, randomModel(hundredM, 1, dt, false)); err != nil {
						b.Fatal(err)
					}
				}
				rng := rand.New(rand.NewSource(1))
				seqs := make([][]int, 16)
				for i := range seqs {
					seqs[i] = make([]int, 128)
					for j := range seqs[i] {
						seqs[i][j] = rng.Intn(m.Cfg.Vocab)
					}
				}
				b.ResetTimer()
				cpu0 := cpuSeconds()
				for b.Loop() {
					if err := m.Forward(context.Background(), seqs, func(int, int, []float32) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
				reportTokens(b, m, float64(16*128*b.N), cpuSeconds()-cpu0)
			})
		}
	}
}

// BenchmarkDecode is KV-cached sampling's model cost: 16 sequences stepped
// together for 128 positions (tokens/s over all sequences).
func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"stories260K", "100M"} {
		b.Run(name+"/BF16", func(b *testing.B) {
			var m *Model
			if name == "stories260K" {
				m = loadStories(b, "stories260K.bf16.safetensors")
			} else {
				var err error
				if m, err = Load(context.Background(), hundredM, randomModel(hundredM, 1, "BF16", false)); err != nil {
					b.Fatal(err)
				}
			}
			toks := make([]int, 16)
			b.ResetTimer()
			cpu0 := cpuSeconds()
			for b.Loop() {
				dec, err := m.NewDecoder(16, 128)
				if err != nil {
					b.Fatal(err)
				}
				for p := 0; p < 128; p++ {
					for i := range toks {
						toks[i] = (p*31 + i*7) % m.Cfg.Vocab
					}
					if _, err := dec.Step(context.Background(), toks); err != nil {
						b.Fatal(err)
					}
				}
			}
			reportTokens(b, m, float64(16*128*b.N), cpuSeconds()-cpu0)
		})
	}
}

// reportTokens reports tokens/s and weight multiply-adds per second, per
// wall second and per CPU-second (steadier on a shared machine).
func reportTokens(b *testing.B, m *Model, tokens, cpu float64) {
	b.ReportMetric(tokens/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(tokens*m.Cfg.MatMulMAs()/b.Elapsed().Seconds()/1e9, "GMA/s")
	if cpu > 0 {
		b.ReportMetric(tokens/cpu, "tokens/cpu-s")
		b.ReportMetric(tokens*m.Cfg.MatMulMAs()/cpu/1e9, "GMA/cpu-s")
	}
}
