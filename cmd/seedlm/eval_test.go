package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/model"
)

// TestEvalScripts runs testdata/script/eval/*.txtar: seedlm eval on small
// generated Llama-family models (mkllama).
func TestEvalScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "../../testdata/script/eval",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("SHARED", sharedData)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "shared" {
				_, err := os.Stat(filepath.Join(sharedData, "stories260K"))
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkllama":  cmdMkLlama,
			"exitcode": cmdExitCode,
			"cut":      cmdCut,
			"samejson": cmdSameJSON,
		},
	})
}

// tinyLlama is the shape mkllama writes (about 77 K parameters).
func tinyLlama(arch string) *model.Config {
	return &model.Config{Arch: arch, Hidden: 64, Intermediate: 96, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16,
		Vocab: 128, MaxPos: 64, RMSEps: 1e-5, RopeTheta: 10000, BOS: 1}
}

// mkllama DIR [arch=llama|mistral|qwen2|gpt2] [dtype=F32|BF16|F16] [seed=N]
// [intermediate=N] [nan=TENSOR] [noconfig] [tied]: write
// DIR/model.safetensors, a random Llama-family model, and DIR/config.json
// describing it (arch gpt2 writes a config of an unsupported architecture;
// tied stores lm_head with embed_tokens' bytes, as tied checkpoints do).
func cmdMkLlama(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: mkllama DIR [arch=..] [dtype=..] [seed=N] [intermediate=N] [nan=TENSOR] [noconfig] [tied]")
	}
	opt := map[string]string{"arch": "llama", "dtype": "F32", "seed": "1"}
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		opt[k] = v
	}
	dir := ts.MkAbs(args[0])
	ts.Check(writeLlama(dir, opt))
}

func writeLlama(dir string, opt map[string]string) error {
	arch := opt["arch"]
	c := tinyLlama(arch)
	if arch == "gpt2" {
		c.Arch = "llama"
	}
	if v, ok := opt["intermediate"]; ok {
		c.Intermediate, _ = strconv.Atoi(v)
	}
	seed, _ := strconv.ParseInt(opt["seed"], 10, 64)
	w := model.Random(c, seed, opt["dtype"])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var ts []testTensor
	_, tied := opt["tied"]
	for _, info := range w.Tensors() {
		name := info.Name
		if tied && name == "lm_head.weight" {
			name = "model.embed_tokens.weight"
		}
		t, err := w.Tensor(name)
		if err != nil {
			return err
		}
		v := t.Float32()
		if info.Name == opt["nan"] {
			v = append([]float32(nil), v...)
			v[len(v)/2] = float32(math.NaN())
		}
		dt := info.DType
		if len(info.Shape) == 1 {
			dt = "F32"
		}
		b, err := dtype.FromFloat32(dt, v)
		if err != nil {
			return err
		}
		ts = append(ts, testTensor{info.Name, dt, info.Shape, b})
	}
	if err := writeST(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	if _, ok := opt["noconfig"]; ok {
		return nil
	}
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": arch,
		"hidden_size": c.Hidden, "intermediate_size": c.Intermediate, "num_hidden_layers": c.Layers,
		"num_attention_heads": c.Heads, "num_key_value_heads": c.KVHeads, "vocab_size": c.Vocab,
		"max_position_embeddings": c.MaxPos, "rms_norm_eps": c.RMSEps, "rope_theta": c.RopeTheta,
		"hidden_act": "silu", "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2,
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644)
}

// samejson A B KEY...: the JSON objects in files A and B have equal values
// at every KEY (! samejson: some KEY differs). A KEY may be a dotted path,
// "PATH_A=PATH_B" when the two name it differently, and end in "~D" to
// compare numbers rounded to D significant digits.
func cmdSameJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: samejson A B KEY...")
	}
	read := func(p string) map[string]any {
		var m map[string]any
		ts.Check(json.Unmarshal([]byte(ts.ReadFile(p)), &m))
		return m
	}
	get := func(m map[string]any, path, file string) any {
		var v any = m
		for _, k := range strings.Split(path, ".") {
			o, ok := v.(map[string]any)
			if !ok {
				ts.Fatalf("%s: %q is not an object", file, path)
			}
			if v, ok = o[k]; !ok {
				ts.Fatalf("%s has no key %q", file, path)
			}
		}
		return v
	}
	a, b := read(args[0]), read(args[1])
	same := true
	for _, k := range args[2:] {
		k, digits, rounded := strings.Cut(k, "~")
		ka, kb, ok := strings.Cut(k, "=")
		if !ok {
			kb = ka
		}
		va, vb := fmt.Sprint(get(a, ka, args[0])), fmt.Sprint(get(b, kb, args[1]))
		if rounded {
			d, _ := strconv.Atoi(digits)
			for _, v := range []*string{&va, &vb} {
				if x, err := strconv.ParseFloat(*v, 64); err == nil {
					*v = strconv.FormatFloat(x, 'g', d, 64)
				}
			}
		}
		if va != vb {
			same = false
			ts.Logf("%s: %v vs %v", k, va, vb)
		}
	}
	if same == neg {
		ts.Fatalf("samejson %v: same=%v", args[2:], same)
	}
}

func evalJSON(t *testing.T, args ...string) (map[string]any, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"eval", "--json"}, args...), &out, &errb)
	var m map[string]any
	if code == ExitOK || code == ExitQuality {
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("eval %v: %v\n%s\n%s", args, err, out.String(), errb.String())
		}
	}
	return m, code
}

// More progressive layers of the same archive: lower KL, higher agreement.
// The gate follows the mean KL exactly.
func TestEvalLayersOrderAndGate(t *testing.T) {
	dir := t.TempDir()
	if err := writeLlama(filepath.Join(dir, "m"), map[string]string{"arch": "llama", "dtype": "F32", "seed": "3"}); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "m", "model.safetensors")
	arc := filepath.Join(dir, "m.seedlm")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"compress", "-q", "--seed-bits", "10", "--layers", "2", "--min-elements", "1", in, "-o", arc}, &out, &errb); code != 0 {
		t.Fatalf("compress: exit %d: %s", code, errb.String())
	}
	one, _ := evalJSON(t, "--samples", "4", "--tokens-per-sample", "32", "--layers", "1", in, arc)
	two, _ := evalJSON(t, "--samples", "4", "--tokens-per-sample", "32", in, arc)
	k1, k2 := one["kl_mean"].(float64), two["kl_mean"].(float64)
	if !(k2 > 0 && k1 > 2*k2) || one["top1_agreement"].(float64) > two["top1_agreement"].(float64) {
		t.Fatalf("1 layer: KL %g top-1 %v; 2 layers: KL %g top-1 %v", k1, one["top1_agreement"], k2, two["top1_agreement"])
	}
	t.Logf("1 layer: KL %.4g, top-1 %v; 2 layers: KL %.4g, top-1 %v", k1, one["top1_agreement"], k2, two["top1_agreement"])
	_, code := evalJSON(t, "--samples", "4", "--tokens-per-sample", "32", "--max-kl", strconv.FormatFloat(k2, 'g', -1, 64), in, arc)
	if code != ExitOK {
		t.Fatalf("--max-kl equal to the KL: exit %d, want 0", code)
	}
	res, code := evalJSON(t, "--samples", "4", "--tokens-per-sample", "32", "--max-kl", strconv.FormatFloat(k2*0.999, 'g', -1, 64), in, arc)
	if code != ExitQuality || res["passed"] != false {
		t.Fatalf("--max-kl just below the KL: exit %d, passed %v; want 5, false", code, res["passed"])
	}
}

// Ctrl-C during an evaluation: context.Canceled, exit 130.
func TestEvalCancel(t *testing.T) {
	dir := t.TempDir()
	if err := writeLlama(filepath.Join(dir, "m"), map[string]string{"arch": "qwen2", "dtype": "BF16", "seed": "1"}); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "m", "model.safetensors")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := &evalOptions{Samples: 2, TokensPer: 8, MaxKL: -1, Quiet: true}
	err := runEval(ctx, o, []string{in, in}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) || exitCode(err) != ExitInterrupted {
		t.Fatalf("cancelled eval: %v (exit %d), want context.Canceled (130)", err, exitCode(err))
	}
}
