package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/seedlm/seedlm/internal/safetensors"
	"github.com/seedlm/seedlm/internal/torchload"
)

// torchShardedSource is a sharded PyTorch checkpoint: shards
// pytorch_model-0000I-of-0000N.bin listed by pytorch_model.bin.index.json
// (the same weight_map format as safetensors' index). Tensors come in
// shard order (sorted file names), then each shard's own order.
type torchShardedSource struct {
	path, index string
	dir         string // the model folder it was found in ("" if named directly)
	shards      []*torchload.File
	names       []string // shard base names, parallel to shards
	where       map[string]int
	infos       []TensorInfo
}

// openTorchSharded opens the shards of a PyTorch index; dir is the folder
// the user named ("" when they named the index).
func openTorchSharded(indexPath, dir string) (Source, error) {
	ix, err := safetensors.ReadIndex(indexPath)
	if err != nil {
		return nil, err
	}
	s := &torchShardedSource{path: indexPath, index: indexPath, dir: dir, where: map[string]int{}}
	if dir != "" {
		s.path = dir
	}
	byShard := map[string][]string{}
	for name, shard := range ix.WeightMap {
		byShard[shard] = append(byShard[shard], name)
	}
	for shard, names := range byShard {
		s.names = append(s.names, shard)
		sort.Strings(names)
	}
	sort.Strings(s.names)
	folder := filepath.Dir(indexPath)
	for i, shard := range s.names {
		f, err := torchload.Open(filepath.Join(folder, shard))
		if err != nil {
			s.Close()
			if errors.Is(err, os.ErrNotExist) {
				return nil, &safetensors.Error{File: indexPath, Tensor: byShard[shard][0],
					Msg: "shard " + quoteName(shard) + " named in weight_map does not exist", Err: err,
					Advice: "download every shard into the index's folder"}
			}
			return nil, err
		}
		s.shards = append(s.shards, f)
		for _, t := range f.Tensors() {
			owner, ok := ix.WeightMap[t.Name]
			switch {
			case !ok:
				s.Close()
				return nil, &safetensors.Error{File: f.Path(), Tensor: t.Name, Msg: "tensor is in the shard but not in the index's weight_map",
					Advice: "the index does not match the shards; regenerate it or download it again"}
			case owner != shard:
				s.Close()
				return nil, &safetensors.Error{File: f.Path(), Tensor: t.Name, Msg: "tensor is in this shard, but the index maps it to " + quoteName(owner),
					Advice: "the index does not match the shards"}
			}
			s.where[t.Name] = i
			s.infos = append(s.infos, TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Shard: shard})
		}
	}
	for name, shard := range ix.WeightMap {
		if _, ok := s.where[name]; !ok {
			s.Close()
			return nil, &safetensors.Error{File: indexPath, Tensor: name, Msg: "weight_map puts the tensor in " + quoteName(shard) + ", which lacks it",
				Advice: "the index does not match the shards"}
		}
	}
	return s, nil
}

func quoteName(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func (s *torchShardedSource) Path() string                { return s.path }
func (s *torchShardedSource) Format() string              { return "torch-sharded" }
func (s *torchShardedSource) Tensors() []TensorInfo       { return s.infos }
func (s *torchShardedSource) Metadata() map[string]string { return nil }
func (s *torchShardedSource) IndexPath() string           { return s.index }
func (s *torchShardedSource) Folder() string              { return s.dir }

func (s *torchShardedSource) file(name string) (*torchload.File, error) {
	i, ok := s.where[name]
	if !ok {
		return nil, &safetensors.Error{File: s.index, Tensor: name, Msg: "no such tensor",
			Advice: "tensor names are case-sensitive; `seedlm inspect` lists them"}
	}
	return s.shards[i], nil
}

func (s *torchShardedSource) ReadRaw(name string) ([]byte, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.ReadRaw(name)
}

func (s *torchShardedSource) ReadRawAt(name string, b []byte, off int64) error {
	f, err := s.file(name)
	if err != nil {
		return err
	}
	return f.ReadRawAt(name, b, off)
}

func (s *torchShardedSource) ReadFloat32(name string) ([]float32, error) {
	return s.ReadFloat32Into(name, nil)
}

func (s *torchShardedSource) ReadFloat32Into(name string, dst []float32) ([]float32, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.ReadFloat32Into(name, dst)
}

// SameAs finds tied weights within one shard (torch.save shares storage
// only inside one file).
func (s *torchShardedSource) SameAs(name string) string {
	f, err := s.file(name)
	if err != nil {
		return ""
	}
	return f.SameAs(name)
}

// NonTensorKeys lists every shard's non-tensor entries, prefixed by its
// file name.
func (s *torchShardedSource) NonTensorKeys() []string {
	var out []string
	for i, f := range s.shards {
		for _, k := range f.NonTensorKeys() {
			out = append(out, s.names[i]+": "+k)
		}
	}
	return out
}

func (s *torchShardedSource) Close() error {
	var first error
	for _, f := range s.shards {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
