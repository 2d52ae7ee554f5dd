package checkpoint

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A Hugging Face folder of PyTorch weights opens like a safetensors one:
// pytorch_model.bin (beside training files that are not the model), or
// shards with their pytorch_model.bin.index.json, named by the folder or
// by the index.
func TestTorchFolders(t *testing.T) {
	var want []struct {
		Name  string
		DType string
		Shape []int64
		Raw   string
	}
	b, err := os.ReadFile(filepath.Join(torchFixtures, "hf-sharded.expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &want)
	sharded := filepath.Join(torchFixtures, "hf-sharded")
	for _, p := range []string{sharded, filepath.Join(sharded, "pytorch_model.bin.index.json")} {
		s, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if s.Format() != "torch-sharded" || len(s.Tensors()) != len(want) {
			t.Fatalf("%s: %s, %d tensors", p, s.Format(), len(s.Tensors()))
		}
		for i, ti := range s.Tensors() {
			w := want[i]
			raw, err := s.ReadRaw(ti.Name)
			exp, _ := base64.StdEncoding.DecodeString(w.Raw)
			if ti.Name != w.Name || ti.DType != w.DType || !slices.Equal(ti.Shape, w.Shape) || err != nil || !bytes.Equal(raw, exp) {
				t.Errorf("%s tensor %d: %+v (%v), want %s %s %v", p, i, ti, err, w.Name, w.DType, w.Shape)
			}
			wantShard := "pytorch_model-00001-of-00002.bin"
			if i >= 3 {
				wantShard = "pytorch_model-00002-of-00002.bin"
			}
			if ti.Shard != wantShard {
				t.Errorf("%s: shard %q, want %q", ti.Name, ti.Shard, wantShard)
			}
		}
		if got := filepath.Base(IndexPath(s)); got != "pytorch_model.bin.index.json" {
			t.Errorf("index %q", got)
		}
		if (Folder(s) != "") != (p == sharded) {
			t.Errorf("%s: folder %q", p, Folder(s))
		}
		s.Close()
	}

	dir := t.TempDir()
	copyTo(t, filepath.Join(torchFixtures, "checkpoint.pt"), filepath.Join(dir, "pytorch_model.bin"))
	copyTo(t, filepath.Join(torchFixtures, "tied.pt"), filepath.Join(dir, "training_args.bin"))
	copyTo(t, filepath.Join(torchFixtures, "tied.pt"), filepath.Join(dir, "optimizer.pt"))
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Format() != "torch" || Folder(s) != dir || len(s.Tensors()) != 4 {
		t.Fatalf("folder: %s, folder %q, %d tensors", s.Format(), Folder(s), len(s.Tensors()))
	}
	if got := SameAs(s, "lm_head.weight"); got != "model.embed_tokens.weight" {
		t.Errorf("SameAs(lm_head.weight) = %q", got)
	}
	keys := NonTensorKeys(s)
	slices.Sort(keys)
	if got := strings.Join(keys, ","); got != "epoch,optimizer.param_groups.0.betas.0,optimizer.param_groups.0.betas.1,optimizer.param_groups.0.lr,scheduler" {
		t.Errorf("non-tensor keys %q", got)
	}
	// Two candidate weights files and no pytorch_model.bin: ambiguous.
	two := t.TempDir()
	copyTo(t, filepath.Join(torchFixtures, "tied.pt"), filepath.Join(two, "a.pt"))
	copyTo(t, filepath.Join(torchFixtures, "tied.pt"), filepath.Join(two, "b.bin"))
	if _, err := Open(two); err == nil || !strings.Contains(err.Error(), "2 PyTorch files") {
		t.Errorf("two .pt files: %v", err)
	}
	// A shard the index names but the folder lacks.
	bad := t.TempDir()
	copyTo(t, filepath.Join(sharded, "pytorch_model.bin.index.json"), filepath.Join(bad, "pytorch_model.bin.index.json"))
	copyTo(t, filepath.Join(sharded, "pytorch_model-00001-of-00002.bin"), filepath.Join(bad, "pytorch_model-00001-of-00002.bin"))
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing shard: %v", err)
	}
}

// Samples read at an offset are the bytes ReadRaw gives, for every format.
func TestReadRawAt(t *testing.T) {
	for _, p := range []string{filepath.Join(stFixtures, "numpy_written.safetensors"), filepath.Join(torchFixtures, "hf-sharded"), filepath.Join(torchFixtures, "views.pt")} {
		s, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range s.Tensors() {
			raw, _ := s.ReadRaw(ti.Name)
			if len(raw) < 3 {
				continue
			}
			b := make([]byte, len(raw)/2)
			if err := ReadRawAt(s, ti.Name, b, 1); err != nil || !bytes.Equal(b, raw[1:1+len(b)]) {
				t.Errorf("%s %s: %v", p, ti.Name, err)
			}
		}
		s.Close()
	}
}
