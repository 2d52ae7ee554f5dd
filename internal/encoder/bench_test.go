package encoder

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// BenchmarkPeakFMA measures the machine's peak float32 multiply-add rate
// (lane-FMAs per second, all cores): the roofline for the search kernels.
func BenchmarkPeakFMA(b *testing.B) { benchPeak(b, peakLaneFMAs, "GFMA") }

// BenchmarkPeakMAC16 measures the peak int16 multiply-add rate of
// VPMADDWD (16 products per instruction, accumulated in int32), the
// projection kernels' instruction. On AMD Zen 3 it issues on the same two
// pipes as the float32 multiply-adds.
func BenchmarkPeakMAC16(b *testing.B) { benchPeak(b, peakMAC16s, "GMAC16") }

func benchPeak(b *testing.B, run func(int) float64, unit string) {
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			const n = 1 << 22
			var total float64
			var mu sync.Mutex
			cpu0 := cpuSeconds()
			for b.Loop() {
				var wg sync.WaitGroup
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						f := run(n)
						mu.Lock()
						total += f
						mu.Unlock()
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(total/b.Elapsed().Seconds()/1e9, unit+"/s")
			if cpu := cpuSeconds() - cpu0; cpu > 0 {
				b.ReportMetric(total/cpu/1e9, unit+"/cpu-s")
			}
		})
	}
}

// scanMulSlots is the multiply-pipe instructions the pruning scan issues
// per (block, seed), in 8-lane units comparable with BenchmarkPeakFMA's
// lane-FMAs: ⌈C/2⌉ VPMADDWD for the new projection, and half of a pair's
// bound (pair.go): (P−1)P/2 + 2P coefficient multiplies and P + 1 squares
// (10.5 for the 4-bit configuration, 15.5 for the 3-bit one).
func scanMulSlots(p Params) float64 {
	P := p.LatentDim
	return float64((p.BlockSize+1)/2) + float64((P-1)*P/2+2*P+P+1)/2
}

// BenchmarkEncode is the exhaustive K=16 search on standard-normal weights,
// reported as weights/s and as the scan's multiply-pipe rate over the whole
// encode (Gmul/s, lane units: compare with BenchmarkPeakFMA's GFMA/s).
func BenchmarkEncode(b *testing.B) {
	for _, p := range []Params{Paper4Bit, Paper3Bit} {
		w := gaussTensor(1, 4096*p.BlockSize/8*2, 1)
		if _, err := basisFor(p); err != nil {
			b.Fatal(err)
		}
		for _, workers := range []int{1, 2} {
			for _, k := range []Kernel{KernelAuto} {
				b.Run(fmt.Sprintf("%s/workers=%d", p, workers), func(b *testing.B) {
					var n float64
					cpu0 := cpuSeconds()
					for b.Loop() {
						if _, err := EncodeLayer(context.Background(), "bench", w, p, Options{Workers: workers, Kernel: k}); err != nil {
							b.Fatal(err)
						}
						n += float64(len(w))
					}
					sec := b.Elapsed().Seconds()
					b.ReportMetric(n/sec, "weights/s")
					b.ReportMetric(n/float64(p.BlockSize)*65535*scanMulSlots(p)/sec/1e9, "Gmul/s")
					if cpu := cpuSeconds() - cpu0; cpu > 0 {
						b.ReportMetric(n/cpu, "weights/cpu-s")
					}
				})
			}
		}
	}
}

func BenchmarkBasisBuild(b *testing.B) {
	for _, p := range []Params{Paper4Bit, Paper3Bit} {
		b.Run(p.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := buildBasis(p.SeedBits, p.BlockSize, p.LatentDim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode reports decoded weights/s (and MB/s of float32 output).
func BenchmarkDecode(b *testing.B) {
	p := Paper4Bit
	w := gaussTensor(2, 1<<16, 1)
	l, err := EncodeLayer(context.Background(), "bench", w, Params{8, 3, 16, 4, 4}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	_ = p
	// Tile the coded layer to a larger tensor so decode time dominates.
	const reps = 64
	big := &Layer{Params: l.Params, ExpBias: l.ExpBias, N: l.N * reps}
	for range reps {
		big.Payload = append(big.Payload, l.Payload...)
	}
	dst := make([]float32, big.N)
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(int64(4 * big.N))
			cpu0 := cpuSeconds()
			for b.Loop() {
				if err := big.DecodeParallel(dst, false, workers); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(big.N)*float64(b.N)/b.Elapsed().Seconds(), "weights/s")
			if cpu := cpuSeconds() - cpu0; cpu > 0 {
				b.ReportMetric(float64(big.N)*float64(b.N)/cpu, "weights/cpu-s")
			}
		})
	}
}
