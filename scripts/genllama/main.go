// Command genllama writes a random Llama-shaped model (model.safetensors and
// config.json) for timing seedlm eval on a model larger than the shared
// ones; nothing it writes belongs in the repository.
//
//	go run ./scripts/genllama -o /tmp/llama100m            # ≈ 110 M parameters, BF16
//	go run ./scripts/genllama -o /tmp/x -hidden 256 -layers 4 -vocab 4096 -dtype F32
//
// Weights are model.Random's: matrices N(0, 1/in), embeddings N(0, 1),
// norms near 1 (deterministic in -seed).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/seedlm/seedlm/internal/model"
)

func main() {
	out := flag.String("o", "", "output folder (created)")
	hidden := flag.Int("hidden", 768, "hidden_size")
	inter := flag.Int("intermediate", 2048, "intermediate_size")
	layers := flag.Int("layers", 12, "num_hidden_layers")
	heads := flag.Int("heads", 12, "num_attention_heads")
	kv := flag.Int("kv-heads", 12, "num_key_value_heads")
	vocab := flag.Int("vocab", 32000, "vocab_size")
	dt := flag.String("dtype", "BF16", "F32, BF16 or F16")
	seed := flag.Int64("seed", 1, "random seed")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "genllama: -o FOLDER is required")
		os.Exit(2)
	}
	c := &model.Config{Arch: "llama", Hidden: *hidden, Intermediate: *inter, Layers: *layers, Heads: *heads, KVHeads: *kv,
		HeadDim: *hidden / *heads, Vocab: *vocab, MaxPos: 2048, RMSEps: 1e-5, RopeTheta: 10000, BOS: 1}
	if err := write(*out, c, *dt, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "genllama:", err)
		os.Exit(1)
	}
}

func write(dir string, c *model.Config, dt string, seed int64) error {
	w := model.Random(c, seed, dt)
	var params int64
	for _, t := range w.Tensors() {
		params += t.NumElements()
	}
	if err := model.WriteCheckpoint(dir, c, w); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d parameters, %s\n", dir, params, dt)
	return nil
}
