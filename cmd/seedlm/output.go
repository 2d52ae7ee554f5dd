package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/seedlm/seedlm/internal/dtype"
)

// shardedWriter writes a sharded safetensors folder (one file per shard and
// the index) into a temporary folder beside out, renamed into place by
// Commit. It mirrors the source's shard layout.
type shardedWriter struct {
	out, tmp  string
	indexName string
	force     bool
	order     []string
	shards    map[string]tensorWriter
	where     map[string]string // tensor → shard
	totalSize int64
	meta      map[string]string
	done      bool
}

func newShardedWriter(out string, ts []outTensor, meta map[string]string, indexName string, force bool) (_ *shardedWriter, err error) {
	dir, base := filepath.Split(filepath.Clean(out))
	if dir == "" {
		dir = "."
	}
	tmp, err := os.MkdirTemp(dir, "."+base+".tmp-")
	if err != nil {
		return nil, err
	}
	w := &shardedWriter{out: out, tmp: tmp, indexName: indexName, force: force,
		shards: map[string]tensorWriter{}, where: map[string]string{}, meta: meta}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	byShard := map[string][]outTensor{}
	for _, t := range ts {
		if t.Shard == "" || t.Shard != filepath.Base(t.Shard) || strings.HasPrefix(t.Shard, ".") {
			return nil, fmt.Errorf("tensor %q: archive names an invalid shard file %q", t.Name, t.Shard)
		}
		if _, ok := byShard[t.Shard]; !ok {
			w.order = append(w.order, t.Shard)
		}
		byShard[t.Shard] = append(byShard[t.Shard], t)
		w.where[t.Name] = t.Shard
		n, err := dtype.ByteLen(t.DType, t.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		w.totalSize += n
	}
	for _, s := range w.order {
		sw, err := createSafetensors(filepath.Join(tmp, s), byShard[s], meta)
		if err != nil {
			return nil, err
		}
		w.shards[s] = sw
	}
	return w, nil
}

func (w *shardedWriter) WriteTensor(name string, data []byte) error {
	s, ok := w.where[name]
	if !ok {
		return fmt.Errorf("tensor %q is not in the output plan", name)
	}
	return w.shards[s].WriteTensor(name, data)
}

func (w *shardedWriter) Commit() error {
	for _, s := range w.order {
		if err := w.shards[s].Commit(); err != nil {
			w.Abort()
			return err
		}
	}
	ix := struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{Metadata: map[string]any{"total_size": w.totalSize}, WeightMap: w.where}
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		w.Abort()
		return err
	}
	if err := os.WriteFile(filepath.Join(w.tmp, w.indexName), append(b, '\n'), 0o644); err != nil {
		w.Abort()
		return err
	}
	if err := replaceDir(w.tmp, w.out, w.force); err != nil {
		w.Abort()
		return err
	}
	w.done = true
	return nil
}

func (w *shardedWriter) Abort() error {
	if w.done {
		return nil
	}
	for _, s := range w.shards {
		s.Abort()
	}
	w.done = true
	return os.RemoveAll(w.tmp)
}

// replaceDir renames tmp to out. An existing out is replaced only with
// force, and only if it holds nothing but safetensors shards and index files
// (so a model folder with configs and tokenizers is never deleted).
func replaceDir(tmp, out string, force bool) error {
	st, err := os.Stat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return os.Rename(tmp, out)
	}
	if err != nil {
		return err
	}
	if err := checkReplaceableDir(out, st, force); err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func checkReplaceableDir(out string, st fs.FileInfo, force bool) error {
	if !st.IsDir() {
		if !force {
			return withHint(fmt.Errorf("output %s already exists", out), "use --force to replace it, or -o to choose another name")
		}
		return withHint(fmt.Errorf("output %s exists and is not a folder; a sharded model decompresses to a folder", out), "choose another output with -o")
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	if len(ents) > 0 && !force {
		return withHint(fmt.Errorf("output folder %s already exists and is not empty", out), "use --force to replace it, or -o to choose another name")
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !(strings.HasSuffix(n, ".safetensors") || strings.HasSuffix(n, ".index.json")) {
			return withHint(fmt.Errorf("output folder %s holds %s, which decompress did not write; refusing to replace it", out, n),
				"choose an empty or new folder with -o")
		}
	}
	return nil
}
