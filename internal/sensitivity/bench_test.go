package sensitivity

import (
	"context"
	"fmt"
	"testing"

	"github.com/seedlm/seedlm/internal/eval"
	"github.com/seedlm/seedlm/internal/model"
)

// hundredM is a Llama-shaped config of about 110 M parameters.
var hundredM = &model.Config{Arch: "llama", Hidden: 768, Intermediate: 2048, Layers: 12, Heads: 12, KVHeads: 12, HeadDim: 64,
	Vocab: 32000, MaxPos: 2048, RMSEps: 1e-5, RopeTheta: 10000, BOS: 1}

// BenchmarkMeasure times the probes (not the reference text) on a random
// 110 M-parameter Llama with 4 × 128 probe tokens, per-tensor and pooled.
// probe-passes/s × (forward passes each design needs) is what the 7B
// projection in docs/QUALITY.md scales from.
func BenchmarkMeasure(b *testing.B) {
	m, err := model.Load(context.Background(), hundredM, model.Random(hundredM, 1, "BF16"))
	if err != nil {
		b.Fatal(err)
	}
	txt, err := eval.Sample(context.Background(), m, eval.SampleOptions{Samples: 4, Tokens: 128, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	ref, err := eval.NewReference(context.Background(), m, txt, nil)
	if err != nil {
		b.Fatal(err)
	}
	// One clean forward pass over the same tokens, in CPU-seconds: the
	// unit the probes' cost is reported in ("passes").
	c0 := cpuSeconds()
	if err := m.Forward(context.Background(), ref.Inputs(), func(int, int, []float32) error { return nil }); err != nil {
		b.Fatal(err)
	}
	pass := cpuSeconds() - c0
	for _, pooled := range []bool{false, true} {
		b.Run(fmt.Sprintf("pooled=%v", pooled), func(b *testing.B) {
			var probes int
			c0 := cpuSeconds()
			for b.Loop() {
				res, err := Measure(context.Background(), m, ref, Options{Rel: 0.1, Pooled: pooled})
				if err != nil {
					b.Fatal(err)
				}
				probes = res.Probes
			}
			cpu := (cpuSeconds() - c0) / float64(b.N)
			b.ReportMetric(float64(probes), "probes")
			b.ReportMetric(cpu, "cpu-s/op")
			b.ReportMetric(pass, "cpu-s/pass")
			b.ReportMetric(cpu/pass, "passes")
		})
	}
}
