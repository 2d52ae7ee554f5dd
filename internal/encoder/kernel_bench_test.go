package encoder

import (
	"fmt"
	"math"
	"testing"
)

// BenchmarkKernels times the two passes of the pruning scan alone on one
// tile with thresholds no seed reaches (so the whole cycle is walked), in
// ns per seed; with BenchmarkPeakFMA in the same run, cycles per seed.
func BenchmarkKernels(b *testing.B) {
	for _, p := range []Params{Paper4Bit, Paper3Bit, {32, 3, 16, 3, 3}} {
		bs, err := basisFor(p)
		if err != nil {
			b.Fatal(err)
		}
		qz := newQuantizer(p, bs, 0, true)
		s := newSearcher(qz, KernelAuto)
		ws := gaussBlocks(3, lanes, p.BlockSize, 1)
		s.t.np = (p.BlockSize + 1) / 2
		for l := range ws {
			s.t.setLane(l, ws[l])
			for c := range s.t.thr {
				s.t.thr[c][l] = float32(math.Inf(1))
				s.t.thrK[c][l] = float32(math.Inf(1))
			}
		}
		P := p.LatentDim
		b.Run(fmt.Sprintf("proj/%s", p), func(b *testing.B) {
			n := 0
			cpu0 := cpuSeconds()
			for b.Loop() {
				for k0 := 0; k0+chunkSeeds/P < bs.L/P; k0 += chunkSeeds / P {
					s.k.proj(bs.dec, s.t, k0, chunkSeeds/P+2, s.buf)
					n += chunkSeeds
				}
			}
			b.ReportMetric((cpuSeconds()-cpu0)*1e9/float64(n), "cpu-ns/seed")
		})
		b.Run(fmt.Sprintf("pair/%s", p), func(b *testing.B) {
			n := 0
			s.k.proj(bs.dec, s.t, 0, chunkSeeds/P+2, s.buf)
			cpu0 := cpuSeconds()
			for b.Loop() {
				for from := 0; from+chunkSeeds < bs.L; from += chunkSeeds {
					s.k.pair(P, s.buf, bs.pcoef[from/2*bs.pstride:], bs.pclass[from/2:], s.t, chunkSeeds/2)
					n += chunkSeeds
				}
			}
			b.ReportMetric((cpuSeconds()-cpu0)*1e9/float64(n), "cpu-ns/seed")
		})
		b.Run(fmt.Sprintf("scan/%s", p), func(b *testing.B) {
			n := 0
			cpu0 := cpuSeconds()
			for b.Loop() {
				s.c0, s.c1 = 0, 0
				s.scan(0, bs.L)
				n += bs.L
			}
			b.ReportMetric((cpuSeconds()-cpu0)*1e9/float64(n), "cpu-ns/seed")
		})
	}
}
