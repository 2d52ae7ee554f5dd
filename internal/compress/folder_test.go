package compress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/archive"
)

// tiedModel writes a model folder: model.safetensors with lm_head.weight a
// copy of embed.weight and a second norm equal to the first, config and
// tokenizer files, and things compress leaves out.
func tiedModel(t *testing.T, dir string) {
	t.Helper()
	writeModel(t, filepath.Join(dir, "m.tmp"))
	src := open(t, filepath.Join(dir, "m.tmp"))
	embed, _ := src.ReadFloat32("embed.weight")
	norm, _ := src.ReadFloat32("layers.0.norm.weight")
	src.Close()
	os.Remove(filepath.Join(dir, "m.tmp"))
	writeModel(t, filepath.Join(dir, "model.safetensors"),
		tensor{"lm_head.weight", []int64{64, 32}, embed},
		tensor{"final.norm.weight", []int64{32}, norm})
	for name, data := range map[string]string{
		"config.json":           `{"tie_word_embeddings": true}` + "\n",
		"tokenizer.json":        `{"model": {"type": "BPE"}}`,
		"tokenizer_config.json": `{"chat_template": "{{ x }}"}`,
		"README.md":             "# model card\n",
		".gitattributes":        "*.safetensors filter=lfs\n",
		"notes.txt":             "not a sidecar\n",
		"big.jinja":             strings.Repeat("x", 300),
	} {
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	os.Mkdir(filepath.Join(dir, "onnx"), 0o755)
}

// A model folder's sidecars are stored byte for byte, the rest listed as
// skipped; tied weights are stored once; parts and merge give the same
// archive as one run.
func TestFolderSidecarsAndDuplicates(t *testing.T) {
	defer func(v int64) { MaxSidecarBytes = v }(MaxSidecarBytes)
	MaxSidecarBytes = 256
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	os.Mkdir(model, 0o755)
	tiedModel(t, model)
	src := open(t, model)
	ctx := context.Background()
	plan, err := MakePlan(ctx, src, k8, PlanOptions{HashTensors: true})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range plan.Sidecars {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "README.md config.json tokenizer.json tokenizer_config.json" {
		t.Errorf("sidecars %q", got)
	}
	skipped := strings.Join(plan.SkippedFiles, "\n")
	for _, want := range []string{".gitattributes: a hidden file", "notes.txt: not a model sidecar", "onnx/: a folder", "big.jinja: 300 bytes, over the 256-byte limit"} {
		if !strings.Contains(skipped, want) {
			t.Errorf("skipped files %q lack %q", plan.SkippedFiles, want)
		}
	}
	dups := map[string]string{}
	for _, tp := range plan.Tensors {
		if tp.DuplicateOf != "" {
			dups[tp.Name] = tp.DuplicateOf
		}
	}
	if fmt.Sprint(dups) != "map[final.norm.weight:layers.0.norm.weight lm_head.weight:embed.weight]" {
		t.Errorf("duplicates %v", dups)
	}
	whole := filepath.Join(dir, "whole.seedlm")
	rep, err := Run(ctx, src, plan, Part{}, whole, RunOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DuplicateTensors != 2 || rep.DuplicateWeights != 64*32+32 || len(rep.Files) != 4 || rep.FileBytes == 0 {
		t.Errorf("report: %d duplicates, %d weights, files %v", rep.DuplicateTensors, rep.DuplicateWeights, rep.Files)
	}
	a, err := archive.Open(whole, archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !a.Index().Header.SourceFolder {
		t.Error("no source_folder in the header")
	}
	if rep.DuplicateBytesSaved != func() int64 {
		e, _ := a.Entry("embed.weight")
		n, _ := a.Entry("layers.0.norm.weight")
		return e.Bytes() + n.Bytes()
	}() {
		t.Errorf("bytes saved %d", rep.DuplicateBytesSaved)
	}
	cfg, err := a.ReadFile("config.json")
	want, _ := os.ReadFile(filepath.Join(model, "config.json"))
	if err != nil || !bytes.Equal(cfg, want) {
		t.Errorf("config.json: %q, %v", cfg, err)
	}
	e, _ := a.DecodeTensor("embed.weight", 0)
	h, err := a.DecodeTensor("lm_head.weight", 0)
	if err != nil || fmt.Sprint(e) != fmt.Sprint(h) {
		t.Errorf("lm_head.weight: %v", err)
	}
	wantBytes, _ := os.ReadFile(whole)
	for _, n := range []int{2, 3} {
		var parts []string
		for i := range n {
			p := filepath.Join(dir, fmt.Sprintf("p%d-%d.seedlm", i, n))
			if _, err := Run(ctx, src, plan, Part{Index: i, Count: n}, p, RunOptions{Workers: 1}); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
		out := filepath.Join(dir, fmt.Sprintf("merged%d.seedlm", n))
		if _, err := archive.Merge(ctx, out, parts, archive.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, wantBytes) {
			t.Errorf("%d parts merged differ from one run", n)
		}
	}
	// A sidecar changed after planning is caught before any work.
	os.WriteFile(filepath.Join(model, "config.json"), []byte(`{}`), 0o644)
	var me *MismatchError
	if _, err := Run(ctx, src, plan, Part{}, filepath.Join(dir, "x.seedlm"), RunOptions{}); !errors.As(err, &me) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("changed sidecar: %v", err)
	}
	// The same weights named as a file: no folder, no sidecars.
	one := open(t, filepath.Join(model, "model.safetensors"))
	p1, err := MakePlan(ctx, one, k8, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.Sidecars) != 0 || len(p1.SkippedFiles) != 0 {
		t.Errorf("a single file got sidecars %v / %v", p1.Sidecars, p1.SkippedFiles)
	}
}

// Finding duplicates reads samples of same-shaped tensors only, and reads
// whole tensors only when their samples agree.
func TestFindDuplicatesCost(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	other := make([]float32, 32*32)
	for i := range other {
		other[i] = float32(i)
	}
	writeModel(t, p, tensor{"other.weight", []int64{32, 32}, other})
	src := open(t, p)
	dups, st, err := findDuplicates(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	// Two [32 32] tensors, which differ: sampled, never read whole.
	for _, d := range dups {
		if d != "" {
			t.Errorf("duplicates in a model without any: %v", dups)
		}
	}
	if st.Sampled != 2 || st.Hashed != 0 || st.BytesRead != 2*32*32*4 {
		t.Errorf("%+v: want 2 tensors sampled (4 KiB each), none hashed", st)
	}
	// A PyTorch file that saves lm_head as the embedding's storage: found
	// without reading.
	ck := filepath.Join("..", "..", "testdata", "torch", "checkpoint.pt")
	tsrc := open(t, ck)
	dups, st, err = findDuplicates(context.Background(), tsrc)
	if err != nil {
		t.Fatal(err)
	}
	if dups[3] != "model.embed_tokens.weight" || st.BytesRead != 0 {
		t.Errorf("checkpoint.pt: %v, %+v", dups, st)
	}
	// Shards saved separately: byte-identical copies, found by hashing.
	hs := open(t, filepath.Join("..", "..", "testdata", "torch", "hf-sharded"))
	dups, st, err = findDuplicates(context.Background(), hs)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, d := range dups {
		if d != "" {
			names = append(names, hs.Tensors()[i].Name+"="+d)
		}
	}
	if fmt.Sprint(names) != "[lm_head.weight=model.embed_tokens.weight]" || st.Hashed != 2 {
		t.Errorf("hf-sharded: %v, %+v", names, st)
	}
}
