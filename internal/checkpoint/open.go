package checkpoint

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/seedlm/seedlm/internal/safetensors"
	"github.com/seedlm/seedlm/internal/torchload"
)

// Open opens a checkpoint:
//   - a .safetensors file;
//   - a *.safetensors.index.json file (sharded safetensors) or a
//     *.bin.index.json file (sharded PyTorch, pytorch_model-*.bin);
//   - a model folder (see openDir);
//   - a torch.save file: .bin, .pt or .pth (zip format, or the legacy
//     pre-1.6 format).
//
// Other names are recognised by their first bytes. Every error names the
// path and says what to do.
func Open(path string) (Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, &safetensors.Error{File: path, Msg: "cannot open", Err: err}
	}
	if st.IsDir() {
		return openDir(path)
	}
	name := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasSuffix(name, ".safetensors"):
		return openSingle(path)
	case strings.HasSuffix(name, ".index.json"):
		switch {
		case strings.HasSuffix(name, safetensors.IndexSuffix):
			return openSharded(path)
		case strings.HasSuffix(name, TorchIndexSuffix):
			return openTorchSharded(path, "")
		}
		return nil, &safetensors.Error{File: path, Msg: "only sharded safetensors (*" + safetensors.IndexSuffix + ") and PyTorch (*" + TorchIndexSuffix + ") indexes are supported",
			Advice: "name the model's folder, its index, or one weights file"}
	case strings.HasSuffix(name, ".bin"), strings.HasSuffix(name, ".pt"), strings.HasSuffix(name, ".pth"):
		return openTorch(path)
	}
	return sniff(path)
}

// TorchIndexSuffix ends the name of a sharded PyTorch model's index file
// (pytorch_model.bin.index.json).
const TorchIndexSuffix = ".bin.index.json"

// trainingFiles are torch.save files a training checkpoint folder holds
// beside the model's weights; they are never the model.
var trainingFiles = map[string]bool{"training_args.bin": true, "optimizer.pt": true, "scheduler.pt": true, "scaler.pt": true}

// openDir opens a model folder (a Hugging Face model's, typically), looking
// for the weights in this order: one *.safetensors.index.json (sharded
// safetensors); else one .safetensors file; else one *.bin.index.json
// (sharded PyTorch); else pytorch_model.bin, or the one .bin/.pt/.pth that
// is not a training file (optimizer.pt, training_args.bin, rng_state*.pth,
// ...). The other files (configs, tokenizers) are the caller's business.
func openDir(dir string) (Source, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, &safetensors.Error{File: dir, Msg: "cannot list folder", Err: err}
	}
	var idx, single, tidx, torch []string
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		n := e.Name()
		low := strings.ToLower(n)
		switch {
		case strings.HasSuffix(n, safetensors.IndexSuffix):
			idx = append(idx, n)
		case strings.HasSuffix(n, ".safetensors"):
			single = append(single, n)
		case strings.HasSuffix(low, TorchIndexSuffix):
			tidx = append(tidx, n)
		case strings.HasSuffix(low, ".bin") || strings.HasSuffix(low, ".pt") || strings.HasSuffix(low, ".pth"):
			if !trainingFiles[low] && !strings.HasPrefix(low, "rng_state") {
				torch = append(torch, n)
			}
		}
	}
	many := func(what string, names []string, advice string) error {
		return &safetensors.Error{File: dir, Msg: fmt.Sprintf("folder holds %d %s %v", len(names), what, names), Advice: advice}
	}
	switch {
	case len(idx) == 1:
		s, err := openSharded(filepath.Join(dir, idx[0]))
		if err == nil {
			s.(*shardedSource).path = dir
		}
		return s, err
	case len(idx) > 1:
		return nil, many("index files", idx, "name the index file you mean")
	case len(single) == 1:
		s, err := openSingle(filepath.Join(dir, single[0]))
		if err == nil {
			s.(*stSource).dir = dir
		}
		return s, err
	case len(single) > 1:
		return nil, many(".safetensors files but no index", single, "name one file, or add the model's *.safetensors.index.json")
	case len(tidx) == 1:
		return openTorchSharded(filepath.Join(dir, tidx[0]), dir)
	case len(tidx) > 1:
		return nil, many("PyTorch index files", tidx, "name the index file you mean")
	case slices.Contains(torch, "pytorch_model.bin"):
		torch = []string{"pytorch_model.bin"}
		fallthrough
	case len(torch) == 1:
		s, err := openTorch(filepath.Join(dir, torch[0]))
		if err == nil {
			s.(*torchSource).dir = dir
		}
		return s, err
	case len(torch) > 1:
		return nil, many("PyTorch files but no pytorch_model.bin or index", torch, "name the weights file you mean")
	}
	return nil, &safetensors.Error{File: dir, Msg: "folder holds no weights: no .safetensors, *.safetensors.index.json, pytorch_model.bin or *.bin.index.json",
		Advice: "name a .safetensors, .bin, .pt or .pth file directly"}
}

// sniff opens a file with an unfamiliar name by its first bytes.
func sniff(path string) (Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &safetensors.Error{File: path, Msg: "cannot open", Err: err}
	}
	head := make([]byte, 16)
	n, _ := f.Read(head)
	f.Close()
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("PK")) || bytes.HasPrefix(head, []byte{0x80, 0x02, 0x8a}):
		return openTorch(path)
	case n >= 9 && head[8] == '{':
		return openSingle(path)
	}
	return nil, &safetensors.Error{File: path, Msg: "unrecognised checkpoint format",
		Advice: "seedlm reads .safetensors (single or sharded with an index) and torch.save .bin/.pt/.pth files"}
}

func openSingle(path string) (Source, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	s := &stSource{f: f}
	for _, t := range f.Tensors() {
		s.infos = append(s.infos, TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape})
	}
	return s, nil
}

func openSharded(path string) (Source, error) {
	sh, err := safetensors.OpenSharded(path)
	if err != nil {
		return nil, err
	}
	s := &shardedSource{sh: sh, path: path}
	for _, t := range sh.Tensors() {
		s.infos = append(s.infos, TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Shard: t.Shard})
	}
	return s, nil
}

func openTorch(path string) (Source, error) {
	f, err := torchload.Open(path)
	if err != nil {
		return nil, err
	}
	s := &torchSource{f: f}
	for _, t := range f.Tensors() {
		s.infos = append(s.infos, TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape})
	}
	return s, nil
}

type stSource struct {
	f     *safetensors.File
	infos []TensorInfo
	dir   string // the model folder it was found in ("" if named directly)
}

func (s *stSource) Path() string                            { return s.f.Path() }
func (s *stSource) Format() string                          { return "safetensors" }
func (s *stSource) Tensors() []TensorInfo                   { return s.infos }
func (s *stSource) Metadata() map[string]string             { return s.f.Metadata() }
func (s *stSource) ReadRaw(name string) ([]byte, error)     { return s.f.ReadRaw(name) }
func (s *stSource) ReadFloat32(n string) ([]float32, error) { return s.f.ReadFloat32(n) }
func (s *stSource) ReadFloat32Into(n string, dst []float32) ([]float32, error) {
	return s.f.ReadFloat32Into(n, dst)
}
func (s *stSource) Close() error   { return s.f.Close() }
func (s *stSource) Folder() string { return s.dir }
func (s *stSource) ReadRawAt(name string, b []byte, off int64) error {
	return s.f.ReadRawAt(name, b, off)
}

type shardedSource struct {
	sh    *safetensors.Sharded
	path  string
	infos []TensorInfo
}

func (s *shardedSource) Path() string                        { return s.path }
func (s *shardedSource) Format() string                      { return "safetensors-sharded" }
func (s *shardedSource) Tensors() []TensorInfo               { return s.infos }
func (s *shardedSource) Metadata() map[string]string         { return s.sh.Metadata() }
func (s *shardedSource) ReadRaw(name string) ([]byte, error) { return s.sh.ReadRaw(name) }
func (s *shardedSource) ReadFloat32(n string) ([]float32, error) {
	return s.sh.ReadFloat32Into(n, nil)
}
func (s *shardedSource) ReadFloat32Into(n string, dst []float32) ([]float32, error) {
	return s.sh.ReadFloat32Into(n, dst)
}
func (s *shardedSource) Close() error      { return s.sh.Close() }
func (s *shardedSource) IndexPath() string { return s.sh.IndexPath() }
func (s *shardedSource) ReadRawAt(name string, b []byte, off int64) error {
	return s.sh.ReadRawAt(name, b, off)
}
func (s *shardedSource) Folder() string {
	if st, err := os.Stat(s.path); err == nil && st.IsDir() {
		return s.path
	}
	return ""
}

type torchSource struct {
	f     *torchload.File
	infos []TensorInfo
	dir   string // the model folder it was found in ("" if named directly)
}

func (s *torchSource) Path() string                            { return s.f.Path() }
func (s *torchSource) Format() string                          { return "torch" }
func (s *torchSource) Tensors() []TensorInfo                   { return s.infos }
func (s *torchSource) Metadata() map[string]string             { return nil }
func (s *torchSource) ReadRaw(name string) ([]byte, error)     { return s.f.ReadRaw(name) }
func (s *torchSource) ReadFloat32(n string) ([]float32, error) { return s.f.ReadFloat32(n) }
func (s *torchSource) ReadFloat32Into(n string, dst []float32) ([]float32, error) {
	return s.f.ReadFloat32Into(n, dst)
}
func (s *torchSource) Close() error   { return s.f.Close() }
func (s *torchSource) Folder() string { return s.dir }
func (s *torchSource) ReadRawAt(name string, b []byte, off int64) error {
	return s.f.ReadRawAt(name, b, off)
}
func (s *torchSource) SameAs(name string) string { return s.f.SameAs(name) }
func (s *torchSource) NonTensorKeys() []string   { return s.f.NonTensorKeys() }

// ReadFloat32Into is src.ReadFloat32 reusing dst's storage when it is large
// enough, so a loop over tensors keeps one buffer instead of allocating one
// per tensor. The sources Open returns all support it; others fall back.
func ReadFloat32Into(src Source, name string, dst []float32) ([]float32, error) {
	if r, ok := src.(interface {
		ReadFloat32Into(string, []float32) ([]float32, error)
	}); ok {
		return r.ReadFloat32Into(name, dst)
	}
	return src.ReadFloat32(name)
}

// ShardLayout mirrors a sharded source's layout for
// safetensors.NewShardedWriter: one Shard per distinct TensorInfo.Shard, in
// order, each with its shard's metadata. It returns nil for unsharded sources.
func ShardLayout(src Source) []safetensors.Shard {
	md := func(shard string) map[string]string { return src.Metadata() }
	if ss, ok := src.(*shardedSource); ok { // each shard's own __metadata__
		byName := map[string]map[string]string{}
		for _, f := range ss.sh.Shards() {
			byName[filepath.Base(f.Path())] = f.Metadata()
		}
		md = func(shard string) map[string]string { return byName[shard] }
	}
	var out []safetensors.Shard
	pos := map[string]int{}
	for _, t := range src.Tensors() {
		if t.Shard == "" {
			return nil
		}
		i, ok := pos[t.Shard]
		if !ok {
			i = len(out)
			pos[t.Shard] = i
			out = append(out, safetensors.Shard{Name: t.Shard, Metadata: md(t.Shard)})
		}
		out[i].Tensors = append(out[i].Tensors, safetensors.TensorHeader{Name: t.Name, DType: t.DType, Shape: t.Shape})
	}
	return out
}
