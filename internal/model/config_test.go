package model

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	base := `"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8, "vocab_size": 512`
	for _, tc := range []struct {
		name, json, wantErr string
		check               func(*Config) bool
	}{
		{"llama defaults", `{"model_type": "llama", ` + base + `}`, "", func(c *Config) bool {
			return c.KVHeads == 8 && c.HeadDim == 8 && c.RopeTheta == 10000 && c.BOS == 1 && !c.Tied && c.SlidingWindow == 0 && c.MaxPos == 2048
		}},
		{"from architectures", `{"architectures": ["llama"], ` + base + `, "num_key_value_heads": 4, "tie_word_embeddings": true}`, "", func(c *Config) bool {
			return c.Arch == "llama" && c.KVHeads == 4 && c.Tied
		}},
		{"mistral window", `{"model_type": "mistral", ` + base + `, "sliding_window": 4096}`, "", func(c *Config) bool { return c.SlidingWindow == 4096 }},
		{"qwen2 window off", `{"model_type": "qwen2", ` + base + `, "sliding_window": 4096, "use_sliding_window": false}`, "", func(c *Config) bool { return c.SlidingWindow == 0 }},
		{"head_dim", `{"model_type": "qwen2", ` + base + `, "head_dim": 16}`, "", func(c *Config) bool { return c.HeadDim == 16 && c.QDim() == 128 }},
		{"bos null", `{"model_type": "llama", ` + base + `, "bos_token_id": null}`, "", func(c *Config) bool { return c.BOS == 1 }},
		{"unsupported", `{"model_type": "gpt2", ` + base + `}`, `architecture "gpt2" is not supported`, nil},
		{"no type", `{` + base + `}`, "no model_type is not supported", nil},
		{"gqa", `{"model_type": "llama", ` + base + `, "num_key_value_heads": 3}`, "must divide", nil},
		{"act", `{"model_type": "llama", ` + base + `, "hidden_act": "gelu"}`, `hidden_act "gelu"`, nil},
		{"rope scaling", `{"model_type": "llama", ` + base + `, "rope_scaling": {"type": "llama3"}}`, "rope_scaling", nil},
		{"sizes", `{"model_type": "llama", "hidden_size": 0}`, "must all be positive", nil},
		{"json", `{"model_type": `, "not a valid config.json", nil},
	} {
		c, err := ParseConfig("config.json", []byte(tc.json))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "config.json: ") {
				t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErr)
			}
			var ce *ConfigError
			if tc.name == "unsupported" && (!errors.As(err, &ce) || ce.Hint() != "seedlm's forward pass runs model_type llama, mistral, qwen2 (Llama-family decoders)") {
				t.Errorf("unsupported: hint %q", ce.Hint())
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.check(c):
			t.Errorf("%s: %+v", tc.name, c)
		}
	}
}
