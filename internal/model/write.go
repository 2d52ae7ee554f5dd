package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/safetensors"
)

// WriteCheckpoint writes w as dir/model.safetensors (every tensor in its
// stored dtype) and c as dir/config.json, a Hugging Face checkpoint folder
// seedlm and the forward pass read back: for generated test and benchmark
// models (Random).
func WriteCheckpoint(dir string, c *Config, w Weights) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	infos := w.Tensors()
	hs := make([]safetensors.TensorHeader, len(infos))
	for i, t := range infos {
		hs[i] = safetensors.TensorHeader{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	sw, err := safetensors.NewWriter(filepath.Join(dir, "model.safetensors"), hs, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	for _, info := range infos {
		t, err := w.Tensor(info.Name)
		if err == nil {
			var b []byte
			if b, err = dtype.FromFloat32(info.DType, t.Float32()); err == nil {
				err = sw.WriteTensor(info.Name, b)
			}
		}
		if err != nil {
			sw.Abort()
			return fmt.Errorf("tensor %q: %w", info.Name, err)
		}
	}
	if err := sw.Commit(); err != nil {
		return err
	}
	cfg := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": c.Arch,
		"hidden_size": c.Hidden, "intermediate_size": c.Intermediate, "num_hidden_layers": c.Layers,
		"num_attention_heads": c.Heads, "num_key_value_heads": c.KVHeads, "vocab_size": c.Vocab,
		"max_position_embeddings": c.MaxPos, "rms_norm_eps": c.RMSEps, "rope_theta": c.RopeTheta,
		"hidden_act": "silu", "tie_word_embeddings": c.Tied, "bos_token_id": c.BOS, "eos_token_id": 2}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644)
}
