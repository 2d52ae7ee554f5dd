package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// IndexSuffix ends the name of a sharded model's index file.
const IndexSuffix = ".safetensors.index.json"

// Index is a parsed *.safetensors.index.json.
type Index struct {
	// WeightMap maps each tensor name to the base name of its shard file.
	WeightMap map[string]string
	// Metadata is the index's "metadata" object; non-string values (such as
	// total_size) are kept as their JSON text.
	Metadata map[string]string
}

// FindIndex returns the one *.safetensors.index.json in dir.
func FindIndex(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", &Error{File: dir, Msg: "cannot list folder", Err: err}
	}
	var found []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), IndexSuffix) {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 1:
		return filepath.Join(dir, found[0]), nil
	case 0:
		return "", &Error{File: dir, Msg: "no *" + IndexSuffix + " in folder",
			Advice: "name the index file or the .safetensors file directly"}
	}
	return "", &Error{File: dir, Msg: fmt.Sprintf("%d index files in folder: %v", len(found), found),
		Advice: "name the index file you mean"}
}

// ReadIndex parses an index file strictly: duplicate keys are rejected and
// every shard name must be a plain file name in the index's folder.
func ReadIndex(path string) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot open", Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxHeaderSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read", Err: err}
	}
	if len(data) > MaxHeaderSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("index is larger than %d bytes", MaxHeaderSize)}
	}
	return ParseIndex(path, data)
}

// ParseIndex parses index JSON; path is used in messages.
func ParseIndex(path string, data []byte) (*Index, error) {
	bad := func(tensor, msg string) error {
		return &Error{File: path, Tensor: tensor, Msg: "invalid index: " + msg,
			Advice: "the index must be {\"metadata\": {...}, \"weight_map\": {tensor: shard file}}"}
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := expectDelim(d, '{'); err != nil {
		return nil, bad("", err.Error())
	}
	ix := &Index{}
	seen := map[string]bool{}
	for d.More() {
		k, err := stringToken(d)
		if err != nil {
			return nil, bad("", err.Error())
		}
		if seen[k] {
			return nil, bad("", "duplicate key "+quote(k))
		}
		seen[k] = true
		switch k {
		case "metadata":
			md, err := readAnyMap(d)
			if err != nil {
				return nil, bad("", "metadata: "+err.Error())
			}
			ix.Metadata = md
		case "weight_map":
			wm, dupOrErr := readShardMap(d)
			if dupOrErr != nil {
				return nil, bad("", "weight_map: "+dupOrErr.Error())
			}
			ix.WeightMap = wm
		default:
			var skip json.RawMessage
			if err := d.Decode(&skip); err != nil {
				return nil, bad("", err.Error())
			}
		}
	}
	if err := expectDelim(d, '}'); err != nil {
		return nil, bad("", err.Error())
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, bad("", "trailing data after the object")
	}
	if ix.WeightMap == nil {
		return nil, bad("", "no weight_map")
	}
	for name, shard := range ix.WeightMap {
		if shard == "" || shard != filepath.Base(shard) || shard == "." || shard == ".." || strings.ContainsAny(shard, `/\`) {
			return nil, bad(name, "shard "+quote(shard)+" is not a plain file name in the index's folder")
		}
	}
	return ix, nil
}

func readShardMap(d *json.Decoder) (map[string]string, error) {
	if err := expectDelim(d, '{'); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for d.More() {
		k, err := stringToken(d)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("tensor %s is listed twice", quote(k))
		}
		v, err := stringToken(d)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %v", quote(k), err)
		}
		m[k] = v
	}
	return m, expectDelim(d, '}')
}

func readAnyMap(d *json.Decoder) (map[string]string, error) {
	if err := expectDelim(d, '{'); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for d.More() {
		k, err := stringToken(d)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate key %s", quote(k))
		}
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, err
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			m[k] = s
		} else {
			m[k] = string(raw)
		}
	}
	return m, expectDelim(d, '}')
}

// ShardedTensor is a tensor of a sharded model and the shard it lives in.
type ShardedTensor struct {
	Tensor
	Shard string // base name of the shard file
}

// Sharded is an open sharded safetensors model: every shard named by the
// index is open, and every tensor lives in exactly one shard.
type Sharded struct {
	path    string
	index   string
	ix      *Index
	shards  []*File
	names   []string // base names, parallel to shards
	tensors []ShardedTensor
	where   map[string]int // tensor name -> shard position
}

// OpenSharded opens a sharded model from its index file or the folder that
// holds exactly one index.
func OpenSharded(path string) (*Sharded, error) {
	idxPath := path
	if st, err := os.Stat(path); err != nil {
		return nil, &Error{File: path, Msg: "cannot open", Err: err}
	} else if st.IsDir() {
		if idxPath, err = FindIndex(path); err != nil {
			return nil, err
		}
	}
	ix, err := ReadIndex(idxPath)
	if err != nil {
		return nil, err
	}
	s := &Sharded{path: path, index: idxPath, ix: ix, where: map[string]int{}}
	// Shard order: sorted file names (model-00001-of-0000N sorts in order).
	byShard := map[string][]string{}
	for name, shard := range ix.WeightMap {
		byShard[shard] = append(byShard[shard], name)
	}
	for shard, names := range byShard {
		s.names = append(s.names, shard)
		sort.Strings(names) // deterministic messages
	}
	sort.Strings(s.names)
	dir := filepath.Dir(idxPath)
	for i, shard := range s.names {
		f, err := Open(filepath.Join(dir, shard))
		if err != nil {
			s.Close()
			if errors.Is(err, os.ErrNotExist) {
				return nil, &Error{File: idxPath, Tensor: byShard[shard][0],
					Msg: "shard " + quote(shard) + " named in weight_map does not exist", Err: err,
					Advice: "download every shard into the index's folder"}
			}
			return nil, err
		}
		s.shards = append(s.shards, f)
		for _, t := range f.Tensors() {
			if owner, ok := ix.WeightMap[t.Name]; !ok {
				s.Close()
				return nil, &Error{File: f.Path(), Tensor: t.Name, Msg: "tensor is in the shard but not in the index's weight_map",
					Advice: "the index does not match the shards; regenerate it or download it again"}
			} else if owner != shard {
				s.Close()
				return nil, &Error{File: f.Path(), Tensor: t.Name, Msg: "tensor is in this shard, but the index maps it to " + quote(owner),
					Advice: "the index does not match the shards"}
			}
			s.where[t.Name] = i
			s.tensors = append(s.tensors, ShardedTensor{Tensor: t, Shard: shard})
		}
		for _, name := range byShard[shard] {
			if _, ok := f.Lookup(name); !ok {
				s.Close()
				return nil, &Error{File: idxPath, Tensor: name, Msg: "weight_map puts the tensor in " + quote(shard) + ", whose header lacks it",
					Advice: "the index does not match the shards"}
			}
		}
	}
	return s, nil
}

// Path is what the caller named (index or folder).
func (s *Sharded) Path() string { return s.path }

// IndexPath is the index file.
func (s *Sharded) IndexPath() string { return s.index }

// Index is the parsed index.
func (s *Sharded) Index() *Index { return s.ix }

// Shards are the open shard files in order.
func (s *Sharded) Shards() []*File { return s.shards }

// Tensors lists every tensor: shard order, then offset.
func (s *Sharded) Tensors() []ShardedTensor { return s.tensors }

// Metadata is the first shard's __metadata__ (Hugging Face writes the same
// map into every shard).
func (s *Sharded) Metadata() map[string]string {
	if len(s.shards) == 0 {
		return nil
	}
	return s.shards[0].Metadata()
}

// File returns the shard holding a tensor.
func (s *Sharded) File(name string) (*File, error) {
	i, ok := s.where[name]
	if !ok {
		return nil, &Error{File: s.index, Tensor: name, Msg: "no such tensor",
			Advice: "tensor names are case-sensitive; `seedlm inspect` lists them"}
	}
	return s.shards[i], nil
}

// ReadRaw reads a tensor's bytes from its shard.
func (s *Sharded) ReadRaw(name string) ([]byte, error) {
	f, err := s.File(name)
	if err != nil {
		return nil, err
	}
	return f.ReadRaw(name)
}

// ReadRawAt reads part of a tensor's bytes from its shard (File.ReadRawAt).
func (s *Sharded) ReadRawAt(name string, b []byte, off int64) error {
	f, err := s.File(name)
	if err != nil {
		return err
	}
	return f.ReadRawAt(name, b, off)
}

// ReadFloat32Into reads a tensor as float32, reusing dst when large enough.
func (s *Sharded) ReadFloat32Into(name string, dst []float32) ([]float32, error) {
	f, err := s.File(name)
	if err != nil {
		return nil, err
	}
	return f.ReadFloat32Into(name, dst)
}

// Close closes every shard.
func (s *Sharded) Close() error {
	var first error
	for _, f := range s.shards {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
