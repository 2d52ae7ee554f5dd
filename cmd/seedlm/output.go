package main

// Where commands write: the one rule for an output path (compress's and
// stream's archive, decompress's file or folder), the sweep of temp files a
// killed run left beside it, the free-space check, and decompress's writer
// (one file, stdout, or a sharded folder through safetensors.ShardedWriter).

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/safetensors"
	"github.com/seedlm/seedlm/internal/tempfile"
)

// stdoutName is the output name that means standard output.
const stdoutName = "-"

// checkOutputFile is the rule for an output file, checked before any work:
//   - "-" is refused: commands that can write to stdout handle it first;
//   - never the input or any file of it (a sharded model's shards and
//     index), whatever --force says (exit 2);
//   - an existing path must be a regular file: a folder, symbolic link,
//     device, FIFO or socket is never replaced, even with --force;
//   - an existing file is replaced only with --force;
//   - the folder it goes in must exist.
//
// inputIs names the input in the error; sameHint and dirHint are the hints
// for those two cases.
func checkOutputFile(out, input string, force bool, inputIs, sameHint, dirHint string) error {
	if out == stdoutName {
		return withHint(usagef("-o -: this command cannot write to standard output"),
			"an archive is written to a temporary file and renamed into place when complete; name a file with -o")
	}
	if isInput(out, input) {
		return withHint(usagef("output %s is %s", out, inputIs), "%s", sameHint)
	}
	st, err := os.Lstat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return checkOutputFolder(out)
	case err != nil:
		return err
	case st.Mode()&fs.ModeSymlink != 0:
		return withHint(fmt.Errorf("output %s is a symbolic link; refusing to replace it, even with --force", out),
			"name a regular file with -o (or remove the link yourself if you mean to replace it)")
	case st.IsDir():
		return withHint(fmt.Errorf("output %s is a directory", out), "%s", dirHint)
	case !st.Mode().IsRegular():
		return withHint(fmt.Errorf("output %s is not a regular file (%s); refusing to replace it, even with --force", out, st.Mode().Type()),
			"name a regular file with -o")
	case !force:
		return withHint(fmt.Errorf("output %s already exists", out), "use --force to replace it, or -o to choose another name")
	}
	return nil
}

// checkOutputFolder requires the folder an output goes in to exist (a
// trailing slash names the folder itself).
func checkOutputFolder(out string) error {
	dir := filepath.Dir(out)
	if strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator)) {
		dir = filepath.Clean(out)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return withHint(fmt.Errorf("output folder %s does not exist", dir), "create it first (mkdir -p %s), or choose another output with -o", dir)
	}
	return nil
}

// isInput reports whether out is input or one of its files.
func isInput(out, input string) bool {
	absOut, _ := filepath.Abs(out)
	for _, in := range inputPaths(input) {
		absIn, _ := filepath.Abs(in)
		if absOut == absIn || safetensors.SameFile(out, in) {
			return true
		}
	}
	return false
}

// inputPaths lists the files an input consists of: itself, and for a
// sharded model (its folder or index) the index and every shard it names.
// Unreadable parts are left out (opening the input reports them).
func inputPaths(input string) []string {
	paths := []string{input}
	idx := input
	if st, err := os.Stat(input); err == nil && st.IsDir() {
		p, err := safetensors.FindIndex(input)
		if err != nil {
			return paths
		}
		idx = p
		paths = append(paths, idx)
	} else if !strings.HasSuffix(input, ".json") {
		return paths
	}
	ix, err := safetensors.ReadIndex(idx)
	if err != nil {
		return paths
	}
	seen := map[string]bool{}
	for _, shard := range ix.WeightMap {
		if !seen[shard] {
			seen[shard] = true
			paths = append(paths, filepath.Join(filepath.Dir(idx), shard))
		}
	}
	return paths
}

// sweepTemps removes the temp files that interrupted seedlm runs left in
// out's folder (when provably abandoned: see package tempfile) and reports
// on stderr what it removed and what looks abandoned but stays.
func sweepTemps(out string, stderr io.Writer) {
	if out == stdoutName {
		return
	}
	left, err := tempfile.Sweep(filepath.Dir(filepath.Clean(out)), time.Now())
	if err != nil {
		return // the command's own output check reports an unusable folder
	}
	for _, l := range left {
		fmt.Fprintf(stderr, "seedlm: note: %s\n", l)
	}
}

// checkFreeSpace refuses to write need bytes into out's folder when its
// file system has less free.
func checkFreeSpace(out string, need int64) error {
	dir := filepath.Dir(filepath.Clean(out))
	free, ok := tempfile.FreeBytes(dir)
	if !ok || free >= need {
		return nil
	}
	return withHint(fmt.Errorf("not enough free space for %s: it needs %s bytes, %s has %s bytes free", out, commas(need), dir, commas(free)),
		"free some space, or write to another file system with -o")
}

// outputWriter writes decompress's output tensor by tensor: one
// safetensors file, stdout, or a model folder. Nothing appears at the
// output path before Commit (stdout excepted).
type outputWriter interface {
	WriteTensorFunc(name string, fill func(io.Writer) error) error
	Commit() error
	Abort()
}

// outputLayout is what decompress writes: the tensors (dtype as written),
// and for a model folder its weights files (shards), index and sidecar
// files.
type outputLayout struct {
	tensors []safetensors.TensorHeader
	meta    map[string]string
	shards  []safetensors.Shard // nil: one file
	index   string              // a sharded folder's index file ("": none)
	files   []archive.FileEntry // a folder's sidecar files
}

// folder reports whether the output is a model folder.
func (l *outputLayout) folder() bool { return l.shards != nil }

// size is the bytes the output takes on disk (a sharded model's index not
// counted).
func (l *outputLayout) size() (int64, error) {
	if l.shards == nil {
		return safetensors.FileSize(l.tensors, l.meta)
	}
	n, err := safetensors.ShardedFileSize(l.shards)
	for _, f := range l.files {
		n += f.Chunk.Length
	}
	return n, err
}

// fileNames are the sidecar files' names.
func (l *outputLayout) fileNames() []string {
	var out []string
	for _, f := range l.files {
		out = append(out, f.Name)
	}
	return out
}

// newOutputLayout lays out what the archive decompresses to: for a sharded
// source, its shards (in first-seen order) and index; for a model folder,
// its one weights file (Header.WeightsFile); with the folder's sidecar
// files either way. Other archives give one file.
func newOutputLayout(ix *archive.Index, dtypes []string, meta map[string]string) *outputLayout {
	h := &ix.Header
	l := &outputLayout{meta: meta}
	sharded := archive.Sharded(h.SourceFormat)
	if sharded {
		l.index = h.IndexFile()
	}
	if sharded || h.SourceFolder {
		l.files = ix.Files
	}
	pos := map[string]int{}
	for i, t := range ix.Tensors {
		th := safetensors.TensorHeader{Name: t.Name, DType: dtypes[i], Shape: t.Shape}
		l.tensors = append(l.tensors, th)
		shard := t.Shard
		switch {
		case sharded:
		case h.SourceFolder:
			shard = h.WeightsFile()
		default:
			continue
		}
		j, ok := pos[shard]
		if !ok {
			j = len(l.shards)
			pos[shard] = j
			l.shards = append(l.shards, safetensors.Shard{Name: shard, Metadata: meta})
		}
		l.shards[j].Tensors = append(l.shards[j].Tensors, th)
	}
	if l.shards == nil && (sharded || h.SourceFolder) {
		l.shards = []safetensors.Shard{} // a folder, even of no tensors
	}
	return l
}

// createOutput starts decompress's writer.
func createOutput(out string, l *outputLayout, force bool, stdout io.Writer) (outputWriter, error) {
	switch {
	case out == stdoutName:
		w, err := safetensors.NewStreamWriter(stdout, "standard output", l.tensors, l.meta)
		if err != nil {
			return nil, err
		}
		return fileWriter{w}, nil
	case l.folder():
		w, err := safetensors.NewShardedWriter(out, l.shards, safetensors.ShardedOptions{IndexName: l.index, NoIndex: l.index == "", Overwrite: force, Files: l.fileNames()})
		if err != nil {
			return nil, replaceHint(err)
		}
		return shardedWriter{w}, nil
	}
	w, err := safetensors.NewWriter(out, l.tensors, l.meta)
	if err != nil {
		return nil, err
	}
	return fileWriter{w}, nil
}

type fileWriter struct{ *safetensors.Writer }

type shardedWriter struct{ *safetensors.ShardedWriter }

func (w shardedWriter) Commit() error { return replaceHint(w.ShardedWriter.Commit()) }

// replaceHint adds the CLI's hints to a refusal to replace an output
// folder.
func replaceHint(err error) error {
	var re *safetensors.ReplaceError
	switch {
	case !errors.As(err, &re):
		return err
	case re.NeedsOverwrite:
		return withHint(err, "use --force to replace it, or -o to choose another name")
	default:
		return withHint(err, "choose an empty or new folder with -o")
	}
}

// checkDecompressOutput is checkOutputFile for decompress: a single file
// may go to stdout; a model folder goes to a folder that is missing, empty
// or (with --force) holds only safetensors files and files named like its
// sidecars (files).
func checkDecompressOutput(out, archivePath string, folder, force bool, files []string) error {
	if out == stdoutName {
		if folder {
			return withHint(usagef("-o -: the archive holds a model folder (shards, or weights with config and tokenizer files), which is written as a folder, not to standard output"),
				"name the output folder with -o")
		}
		return nil
	}
	if !folder {
		return checkOutputFile(out, archivePath, force, "the archive", "choose another output with -o", "name the output file with -o")
	}
	if isInput(out, archivePath) {
		return withHint(usagef("output %s is the archive", out), "choose another output with -o")
	}
	if err := safetensors.CheckReplaceable(out, force, files...); err != nil {
		return replaceHint(err)
	}
	dir := filepath.Dir(filepath.Clean(out))
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return withHint(fmt.Errorf("output folder %s does not exist", dir), "create it first (mkdir -p %s), or choose another output with -o", dir)
	}
	return nil
}
