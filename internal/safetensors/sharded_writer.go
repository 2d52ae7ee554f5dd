package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/tempfile"
)

// IndexName is the index file a ShardedWriter writes unless told another.
const IndexName = "model.safetensors.index.json"

// Shard declares one output shard: its base file name, its tensors in data
// order, and its __metadata__.
type Shard struct {
	Name     string
	Tensors  []TensorHeader
	Metadata map[string]string
}

// ShardedOptions control NewShardedWriter.
type ShardedOptions struct {
	// IndexName is the index file's name ("" means IndexName).
	IndexName string
	// Overwrite lets Commit replace an existing output folder, provided it
	// holds nothing but safetensors and index files and the Files
	// (CheckReplaceable). Without it only a missing or empty folder is
	// replaced.
	Overwrite bool
	// NoIndex writes no index file: a model folder with one weights file.
	NoIndex bool
	// Files names the other files the folder will hold (a model's
	// config.json, tokenizer files), written with WriteFile.
	Files []string
}

// ShardedWriter writes a sharded model folder: one Writer per shard plus
// the index (weight_map and metadata.total_size). Everything is written
// into a temp folder beside the output, which Commit renames into place,
// so a failed or aborted write leaves nothing at the output path.
type ShardedWriter struct {
	out     string
	opt     ShardedOptions
	tmp     *tempfile.Dir
	shards  []Shard
	writers []*Writer
	where   map[string]int
	total   int64
	done    bool
}

// ReplaceError is a refusal to replace an existing output.
type ReplaceError struct {
	Path   string
	Reason string
	// NeedsOverwrite: the output could be replaced with Overwrite (it is a
	// non-empty folder of safetensors and index files only).
	NeedsOverwrite bool
}

func (e *ReplaceError) Error() string { return e.Path + ": " + e.Reason }

// CheckReplaceable says whether a sharded model may be written at out:
// nothing there, an empty folder, or (with overwrite) a folder holding only
// regular *.safetensors and *.index.json files and files named in keep (the
// sidecar files the new folder will hold too), so a model folder with
// other files is never deleted. A symbolic link is never replaced. It
// returns nil or a *ReplaceError.
func CheckReplaceable(out string, overwrite bool, keep ...string) error {
	st, err := os.Lstat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		kind := "a file"
		if !st.Mode().IsRegular() {
			kind = "not a regular file or folder (" + st.Mode().Type().String() + ")"
		}
		return &ReplaceError{Path: out, Reason: "exists and is " + kind + "; a sharded model is written as a folder"}
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !(strings.HasSuffix(n, ".safetensors") || strings.HasSuffix(n, ".index.json") || slices.Contains(keep, n)) {
			return &ReplaceError{Path: out, Reason: fmt.Sprintf("the folder holds %s, which decompress would not write; refusing to replace it", quote(n))}
		}
	}
	if len(ents) > 0 && !overwrite {
		return &ReplaceError{Path: out, Reason: "the folder already exists and is not empty", NeedsOverwrite: true}
	}
	return nil
}

// NewShardedWriter opens a writer for every shard in a temp folder beside
// out. Shard names must be unique plain file names ending in .safetensors,
// other than the index's; tensor names must be unique across shards.
func NewShardedWriter(out string, shards []Shard, opt ShardedOptions) (*ShardedWriter, error) {
	if opt.IndexName == "" {
		opt.IndexName = IndexName
	}
	if err := CheckReplaceable(out, opt.Overwrite, opt.Files...); err != nil {
		return nil, err
	}
	s := &ShardedWriter{out: out, opt: opt, shards: shards, where: map[string]int{}}
	if n := opt.IndexName; n != filepath.Base(n) || strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".json") {
		return nil, &Error{File: filepath.Join(out, n), Msg: "index name must be a plain file name ending in .json"}
	}
	if opt.NoIndex && len(shards) != 1 {
		return nil, &Error{File: out, Msg: fmt.Sprintf("a folder without an index holds one weights file, not %d", len(shards))}
	}
	seenShard := map[string]bool{}
	if !opt.NoIndex {
		seenShard[strings.ToLower(opt.IndexName)] = true
	}
	for _, f := range opt.Files {
		low := strings.ToLower(f)
		if f == "" || f != filepath.Base(f) || strings.HasPrefix(f, ".") || seenShard[low] {
			return nil, &Error{File: filepath.Join(out, f), Msg: "file name must be a unique plain file name, other than the index's " + quote(opt.IndexName)}
		}
		seenShard[low] = true
	}
	for i, sh := range shards {
		low := strings.ToLower(sh.Name)
		if sh.Name == "" || sh.Name != filepath.Base(sh.Name) || strings.HasPrefix(sh.Name, ".") || !strings.HasSuffix(sh.Name, ".safetensors") || seenShard[low] {
			return nil, &Error{File: filepath.Join(out, sh.Name), Msg: "shard name must be a unique plain file name ending in .safetensors, other than the index's " + quote(opt.IndexName)}
		}
		seenShard[low] = true
		for _, t := range sh.Tensors {
			if j, dup := s.where[t.Name]; dup {
				return nil, &Error{File: filepath.Join(out, sh.Name), Tensor: t.Name,
					Msg: "also declared in shard " + quote(shards[j].Name)}
			}
			s.where[t.Name] = i
			n, err := dtype.ByteLen(t.DType, t.Shape)
			if err != nil {
				return nil, &Error{File: filepath.Join(out, sh.Name), Tensor: t.Name, Msg: err.Error()}
			}
			s.total += n
		}
	}
	tmp, err := tempfile.MkdirTemp(out)
	if err != nil {
		return nil, &Error{File: out, Msg: "cannot create a temp folder beside the output", Err: err}
	}
	s.tmp = tmp
	for _, sh := range shards {
		w, err := NewWriter(filepath.Join(tmp.Path, sh.Name), sh.Tensors, sh.Metadata)
		if err != nil {
			s.Abort()
			return nil, err
		}
		s.writers = append(s.writers, w)
	}
	return s, nil
}

// ShardedFileSize is the bytes a ShardedWriter writes for shards: every shard's
// FileSize (the index is not counted; it is small).
func ShardedFileSize(shards []Shard) (int64, error) {
	var total int64
	for _, sh := range shards {
		n, err := FileSize(sh.Tensors, sh.Metadata)
		if err != nil {
			return 0, &Error{File: sh.Name, Msg: err.Error()}
		}
		total += n
	}
	return total, nil
}

// WriteTensor routes a tensor to its shard; within a shard, tensors must
// come in the declared order.
func (s *ShardedWriter) WriteTensor(name string, data []byte) error {
	i, ok := s.where[name]
	if !ok {
		return &Error{File: s.out, Tensor: name, Msg: "not declared in any shard"}
	}
	return s.writers[i].WriteTensor(name, data)
}

// WriteTensorFunc is Writer.WriteTensorFunc on the tensor's shard.
func (s *ShardedWriter) WriteTensorFunc(name string, fill func(io.Writer) error) error {
	i, ok := s.where[name]
	if !ok {
		return &Error{File: s.out, Tensor: name, Msg: "not declared in any shard"}
	}
	return s.writers[i].WriteTensorFunc(name, fill)
}

// Commit finishes every shard, writes the index and renames the folder
// into place (replacing an existing one only as CheckReplaceable allows).
func (s *ShardedWriter) Commit() error {
	if s.done {
		return &Error{File: s.out, Msg: "sharded writer is already committed or aborted"}
	}
	for _, w := range s.writers {
		if err := w.Commit(); err != nil {
			s.Abort()
			return err
		}
	}
	var err error
	if !s.opt.NoIndex {
		var idx []byte
		idx, err = s.indexJSON()
		if err == nil {
			err = writeFileAtomic(filepath.Join(s.tmp.Path, s.opt.IndexName), idx)
		}
	}
	if err == nil {
		err = s.replace()
	}
	if err != nil {
		s.Abort()
		return err
	}
	s.done = true
	s.tmp.Close()
	syncDir(filepath.Dir(filepath.Clean(s.out)))
	return nil
}

// WriteFile writes one of the folder's other files (ShardedOptions.Files)
// through fill.
func (s *ShardedWriter) WriteFile(name string, fill func(io.Writer) error) error {
	if s.done {
		return &Error{File: s.out, Msg: "sharded writer is already committed or aborted"}
	}
	if !slices.Contains(s.opt.Files, name) {
		return &Error{File: filepath.Join(s.out, name), Msg: "not declared in ShardedOptions.Files"}
	}
	p := filepath.Join(s.tmp.Path, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return &Error{File: p, Msg: "cannot create", Err: err}
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &Error{File: filepath.Join(s.out, name), Msg: "writing failed", Err: err}
	}
	return nil
}

// replace renames the temp folder to the output.
func (s *ShardedWriter) replace() error {
	if err := CheckReplaceable(s.out, s.opt.Overwrite, s.opt.Files...); err != nil {
		return err
	}
	if _, err := os.Lstat(s.out); err == nil {
		if err := os.RemoveAll(s.out); err != nil {
			return &Error{File: s.out, Msg: "cannot remove the folder being replaced", Err: err}
		}
	}
	if err := os.Rename(s.tmp.Path, s.out); err != nil {
		return &Error{File: s.out, Msg: "rename into place failed", Err: err}
	}
	return nil
}

// Abort discards every shard and the temp folder.
func (s *ShardedWriter) Abort() {
	if s.done {
		return
	}
	s.done = true
	for _, w := range s.writers {
		w.Abort()
	}
	if s.tmp != nil {
		s.tmp.Close()
		os.RemoveAll(s.tmp.Path)
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
			return nil, &Error{File: s.out, Tensor: n, Msg: "encoding index", Err: err}
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
	tmp, err := tempfile.Create(path)
	if err != nil {
		return &Error{File: path, Msg: "cannot create temp file", Err: err}
	}
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
	syncDir(filepath.Dir(path))
	return nil
}
