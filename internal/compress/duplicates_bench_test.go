package compress

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/seedlm/seedlm/internal/checkpoint"
)

// BenchmarkFindDuplicates measures what finding tied tensors costs on the
// real models in ../shared/data: time, and the share of the model's bytes
// it reads (read/model).
//
//	go test ./internal/compress -run '^$' -bench FindDuplicates
func BenchmarkFindDuplicates(b *testing.B) {
	for _, m := range []struct{ name, path string }{
		{"stories260K-f32", "stories260K/stories260K.f32.safetensors"},
		{"stories260K-pt", "stories260K/stories260K.pt"},
		{"ppocrv4", "ppocrv4-rec/ch_PP-OCRv4_rec.f32.safetensors"},
	} {
		b.Run(m.name, func(b *testing.B) {
			p := filepath.Join("..", "..", "..", "shared", "data", m.path)
			st, err := os.Stat(p)
			if err != nil {
				b.Skipf("%s absent (../shared/data is beside the repository on the development machine only): %v", p, err)
			}
			src, err := checkpoint.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			var s DuplicateStats
			var found int
			for b.Loop() {
				dups, stats, err := findDuplicates(context.Background(), src)
				if err != nil {
					b.Fatal(err)
				}
				s, found = stats, 0
				for _, d := range dups {
					if d != "" {
						found++
					}
				}
			}
			b.ReportMetric(float64(s.BytesRead)/float64(st.Size()), "read/model")
			b.ReportMetric(float64(found), "duplicates")
			b.ReportMetric(float64(s.Sampled), "sampled")
			b.ReportMetric(float64(s.Hashed), "hashed")
		})
	}
}
