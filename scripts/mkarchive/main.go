// Command mkarchive writes a large .seedlm archive without encoding
// anything: every coded tensor gets a random payload (non-zero seeds, so it
// decodes). It is for measuring decompress's time and memory on archives of
// any size (docs/PERFORMANCE.md, "Decompress memory"); the weights it
// decodes to are noise.
//
//	go run ./scripts/mkarchive -o out/big.seedlm -tensors 16 -rows 4096 -cols 4096
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/encoder"
)

func main() {
	out := flag.String("o", "", "archive to write")
	tensors := flag.Int("tensors", 16, "coded tensors")
	rows := flag.Int64("rows", 4096, "rows per tensor")
	cols := flag.Int64("cols", 4096, "columns per tensor")
	dtype := flag.String("dtype", "F32", "source dtype recorded for every tensor")
	layers := flag.Int("layers", 1, "progressive layers per tensor (each C8 P3 K16 B4 E4)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkarchive: -o is required")
		os.Exit(2)
	}
	if err := run(*out, *tensors, *rows, *cols, *dtype, *layers); err != nil {
		fmt.Fprintln(os.Stderr, "mkarchive:", err)
		os.Exit(1)
	}
}

func run(out string, tensors int, rows, cols int64, dtype string, layers int) error {
	p := encoder.Paper4Bit
	var plan []archive.PlannedTensor
	for i := 0; i < tensors; i++ {
		ls := make([]encoder.Params, layers)
		for k := range ls {
			ls[k] = p
		}
		plan = append(plan, archive.PlannedTensor{
			Info: archive.Info{Name: fmt.Sprintf("layers.%d.weight", i), DType: dtype, Shape: []int64{rows, cols}},
			Rule: "mkarchive", Layers: ls})
	}
	w, err := archive.CreateWith(out, archive.Header{SourceFormat: archive.FormatSafetensors,
		Metadata: map[string]string{"generator": "seedlm scripts/mkarchive: random payloads"}}, archive.CreateOptions{Plan: plan})
	if err != nil {
		return err
	}
	defer w.Abort()
	rng := rand.New(rand.NewSource(1))
	n := int(rows * cols)
	for _, pt := range plan {
		res := &encoder.Result{Norm2: 1}
		for k := 0; k < layers; k++ {
			b := make([]byte, p.PayloadBytes(n))
			rng.Read(b)
			for blk := 0; blk < p.Blocks(n); blk++ {
				bit := blk * p.BlockBits()
				b[bit/8] |= 1 << (bit % 8) // seed ≠ 0
			}
			res.Layers = append(res.Layers, &encoder.Layer{Params: p, ExpBias: -14, N: n, Payload: b})
			res.SqErr = append(res.SqErr, 0.5/float64(k+1))
		}
		if err := w.AddCoded(pt.Info, pt.Rule, res); err != nil {
			return err
		}
	}
	return w.Commit()
}
