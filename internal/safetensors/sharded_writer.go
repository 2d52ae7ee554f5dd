package safetensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/seedlm/seedlm/internal/dtype"
	"os"
	"path/filepath"
	"sort"
)

// IndexName is the index file a ShardedWriter writes.
const IndexName = "model.safetensors.index.json"

// Shard declares one output shard: its base file name, its tensors in data
// order, and its __metadata__.
type Shard struct {
	Name     string
	Tensors  []TensorHeader
	Metadata map[string]string
}

// ShardedWriter writes a sharded model into a folder: one Writer per shard
// plus model.safetensors.index.json (weight_map and metadata.total_size).
// Each file is written to a temp file and renamed into place on Commit; the
// index is renamed last, so a reader never sees an index whose shards are
// missing.
type ShardedWriter struct {
	dir     string
	shards  []Shard
	writers []*Writer
	where   map[string]int
	total   int64
	done    bool
}

// NewShardedWriter opens a writer for every shard in dir (which must exist).
// Tensor names must be unique across shards.
func NewShardedWriter(dir string, shards []Shard) (*ShardedWriter, error) {
	s := &ShardedWriter{dir: dir, shards: shards, where: map[string]int{}}
	seenShard := map[string]bool{}
	for i, sh := range shards {
		if sh.Name == "" || sh.Name != filepath.Base(sh.Name) || sh.Name == IndexName || seenShard[sh.Name] {
			return nil, &Error{File: filepath.Join(dir, sh.Name), Msg: "shard name must be a unique plain file name other than " + IndexName}
		}
		seenShard[sh.Name] = true
		for _, t := range sh.Tensors {
			if j, dup := s.where[t.Name]; dup {
				return nil, &Error{File: filepath.Join(dir, sh.Name), Tensor: t.Name,
					Msg: "also declared in shard " + quote(shards[j].Name)}
			}
			s.where[t.Name] = i
			n, err := dtype.ByteLen(t.DType, t.Shape)
			if err != nil {
				return nil, &Error{File: filepath.Join(dir, sh.Name), Tensor: t.Name, Msg: err.Error()}
			}
			s.total += n
		}
	}
	for _, sh := range shards {
		w, err := NewWriter(filepath.Join(dir, sh.Name), sh.Tensors, sh.Metadata)
		if err != nil {
			s.Abort()
			return nil, err
		}
		s.writers = append(s.writers, w)
	}
	return s, nil
}

// WriteTensor routes a tensor to its shard; within a shard, tensors must
// come in the declared order.
func (s *ShardedWriter) WriteTensor(name string, data []byte) error {
	i, ok := s.where[name]
	if !ok {
		return &Error{File: s.dir, Tensor: name, Msg: "not declared in any shard"}
	}
	return s.writers[i].WriteTensor(name, data)
}

// Commit finishes every shard, then writes the index.
func (s *ShardedWriter) Commit() error {
	if s.done {
		return &Error{File: s.dir, Msg: "sharded writer is already committed or aborted"}
	}
	for i, w := range s.writers {
		if err := w.Commit(); err != nil {
			for _, rest := range s.writers[i+1:] {
				rest.Abort()
			}
			s.done = true
			return err
		}
	}
	s.done = true
	idx, err := s.indexJSON()
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, IndexName), idx)
}

// Abort discards every uncommitted shard.
func (s *ShardedWriter) Abort() {
	s.done = true
	for _, w := range s.writers {
		w.Abort()
	}
}

func (s *ShardedWriter) indexJSON() ([]byte, error) {
	names := make([]string, 0, len(s.where))
	for n := range s.where {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n  \"metadata\": {\n    \"total_size\": %d\n  },\n  \"weight_map\": {", s.total)
	for i, n := range names {
		k, err := json.Marshal(n)
		if err != nil {
			return nil, &Error{File: s.dir, Tensor: n, Msg: "encoding index", Err: err}
		}
		v, _ := json.Marshal(s.shards[s.where[n]].Name)
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n    %s: %s", k, v)
	}
	b.WriteString("\n  }\n}\n")
	return b.Bytes(), nil
}

// writeFileAtomic writes data to a temp file in path's folder, syncs it and
// renames it into place.
func writeFileAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return &Error{File: path, Msg: "cannot create temp file", Err: err}
	}
	tmp.Chmod(0o644)
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return &Error{File: path, Msg: "writing failed", Err: werr}
	}
	syncDir(dir)
	return nil
}
