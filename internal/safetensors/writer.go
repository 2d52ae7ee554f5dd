package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/tempfile"
)

// Writer streams a safetensors file: the header is written first (from the
// declared tensors), then each tensor's bytes in the declared order. Nothing
// appears at the target path until Commit renames the finished temp file
// into place, so a failed or aborted write never leaves a partial model.
// (NewStreamWriter writes to an io.Writer instead, e.g. stdout.)
type Writer struct {
	path    string
	tmp     *tempfile.File // nil for a stream writer
	buf     *bufio.Writer
	tensors []TensorHeader
	sizes   []int64
	next    int
	done    bool
}

// NewWriter creates the temp file next to path and writes the header for
// tensors (in the order given, which is also the data order) and metadata.
// It refuses a path that is a safetensors file currently open through Open;
// for other inputs (a torch file, an archive) callers check with
// CheckNotInput or SameFile.
func NewWriter(path string, tensors []TensorHeader, metadata map[string]string) (*Writer, error) {
	hdr, sizes, err := EncodeHeader(path, tensors, metadata)
	if err != nil {
		return nil, err
	}
	if isOpenInput(path) {
		return nil, &Error{File: path, Msg: "refusing to overwrite a file that is open as an input",
			Advice: "write to a different path"}
	}
	if st, err := os.Lstat(path); err == nil && !st.Mode().IsRegular() {
		// Commit's rename would replace a link, device or pipe, not write
		// through it.
		return nil, &Error{File: path, Msg: fmt.Sprintf("exists and is not a regular file (%s); refusing to replace it", st.Mode().Type()),
			Advice: "write to a regular file path"}
	}
	tmp, err := tempfile.Create(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot create temp file in the output folder", Err: err}
	}
	w := &Writer{path: path, tmp: tmp, buf: bufio.NewWriterSize(tmp, 1<<20), tensors: tensors, sizes: sizes}
	if err := w.writeHeader(hdr); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// NewStreamWriter writes the file to out as it goes (nothing to rename,
// so nothing to undo: Abort only stops it). name is used in errors.
func NewStreamWriter(out io.Writer, name string, tensors []TensorHeader, metadata map[string]string) (*Writer, error) {
	hdr, sizes, err := EncodeHeader(name, tensors, metadata)
	if err != nil {
		return nil, err
	}
	w := &Writer{path: name, buf: bufio.NewWriterSize(out, 1<<20), tensors: tensors, sizes: sizes}
	if err := w.writeHeader(hdr); err != nil {
		w.done = true
		return nil, err
	}
	return w, nil
}

func (w *Writer) writeHeader(hdr []byte) error {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	w.buf.Write(n[:])
	if _, err := w.buf.Write(hdr); err != nil {
		return &Error{File: w.path, Msg: "writing header", Err: err}
	}
	return nil
}

// FileSize is the size of the file NewWriter would write for tensors and
// metadata: the 8-byte length, the header and every tensor's bytes.
func FileSize(tensors []TensorHeader, metadata map[string]string) (int64, error) {
	hdr, sizes, err := EncodeHeader("", tensors, metadata)
	if err != nil {
		return 0, err
	}
	n := 8 + int64(len(hdr))
	for _, s := range sizes {
		if n+s < n {
			return 0, fmt.Errorf("file size overflows 64 bits")
		}
		n += s
	}
	return n, nil
}

// EncodeHeader builds the JSON header (padded with spaces to a multiple of 8
// bytes, like the reference writer) and returns each tensor's byte length.
func EncodeHeader(file string, tensors []TensorHeader, metadata map[string]string) ([]byte, []int64, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if metadata != nil {
		b.WriteString(`"__metadata__":`)
		m, err := marshalJSON(metadata) // sorted keys
		if err != nil {
			return nil, nil, &Error{File: file, Msg: "encoding metadata", Err: err}
		}
		b.Write(m)
	}
	sizes := make([]int64, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i, t := range tensors {
		fail := func(msg string) ([]byte, []int64, error) {
			return nil, nil, &Error{File: file, Tensor: t.Name, Msg: msg}
		}
		if !utf8.ValidString(t.Name) {
			return fail("name is not valid UTF-8")
		}
		if t.Name == "__metadata__" {
			return fail("the name __metadata__ is reserved")
		}
		if seen[t.Name] {
			return fail("declared twice")
		}
		seen[t.Name] = true
		n, err := dtype.ByteLen(t.DType, t.Shape)
		if err != nil {
			return fail(err.Error())
		}
		if off+n < off {
			return fail("data offsets overflow")
		}
		sizes[i] = n
		if i > 0 || metadata != nil {
			b.WriteByte(',')
		}
		name, _ := marshalJSON(t.Name)
		b.Write(name)
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		sh, _ := json.Marshal(shape)
		fmt.Fprintf(&b, `:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, t.DType, sh, off, off+n)
		off += n
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, nil, &Error{File: file, Msg: fmt.Sprintf("header would be %d bytes, over the %d-byte limit readers accept", b.Len(), MaxHeaderSize)}
	}
	return b.Bytes(), sizes, nil
}

// marshalJSON is json.Marshal without HTML escaping (<, >, & stay as they
// are, as other safetensors writers leave them).
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// WriteTensor appends the next tensor's bytes. Tensors must come in the
// declared order with exactly their declared length.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if !w.done && w.next < len(w.tensors) && name == w.tensors[w.next].Name && int64(len(data)) != w.sizes[w.next] {
		want := w.tensors[w.next]
		return &Error{File: w.path, Tensor: name, Msg: fmt.Sprintf("got %d bytes, but %s %s is %d bytes", len(data), want.DType, dtype.ShapeString(want.Shape), w.sizes[w.next])}
	}
	return w.WriteTensorFunc(name, func(out io.Writer) error {
		_, err := out.Write(data)
		return err
	})
}

// WriteTensorFunc appends the next tensor's bytes as fill writes them to
// out, in as many pieces as it likes (so a large tensor never has to be in
// memory at once). Tensors must come in the declared order, and fill must
// write exactly the declared length: a byte more is refused as it comes, a
// byte less when fill returns. Any error aborts the writer (the file would
// be missing bytes).
func (w *Writer) WriteTensorFunc(name string, fill func(out io.Writer) error) error {
	if w.done {
		return &Error{File: w.path, Tensor: name, Msg: "writer is already committed or aborted"}
	}
	if w.next >= len(w.tensors) {
		return &Error{File: w.path, Tensor: name, Msg: "more tensors written than declared"}
	}
	want := w.tensors[w.next]
	if name != want.Name {
		return &Error{File: w.path, Tensor: name, Msg: fmt.Sprintf("written out of order: expected %s next", quote(want.Name))}
	}
	tw := &tensorWriter{w: w.buf, left: w.sizes[w.next]}
	if err := fill(tw); err != nil {
		w.Abort()
		if tw.err != nil {
			return &Error{File: w.path, Tensor: name, Msg: "write failed", Err: tw.err}
		}
		return err
	}
	if tw.left != 0 {
		w.Abort()
		return &Error{File: w.path, Tensor: name, Msg: fmt.Sprintf("got %d bytes, but %s %s is %d bytes", w.sizes[w.next]-tw.left, want.DType, dtype.ShapeString(want.Shape), w.sizes[w.next])}
	}
	w.next++
	return nil
}

// tensorWriter passes at most left bytes on to w.
type tensorWriter struct {
	w    io.Writer
	left int64
	err  error // from w
}

func (t *tensorWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > t.left {
		return 0, fmt.Errorf("tensor data is longer than its declared size")
	}
	n, err := t.w.Write(p)
	t.left -= int64(n)
	if err != nil {
		t.err = err
	}
	return n, err
}

// Commit checks every tensor was written, syncs the temp file to disk and
// renames it over the target path (a stream writer flushes).
func (w *Writer) Commit() error {
	if w.done {
		return &Error{File: w.path, Msg: "writer is already committed or aborted"}
	}
	if w.next != len(w.tensors) {
		err := &Error{File: w.path, Tensor: w.tensors[w.next].Name, Msg: fmt.Sprintf("commit after %d of %d tensors: this one was never written", w.next, len(w.tensors))}
		w.Abort()
		return err
	}
	fail := func(msg string, err error) error {
		w.Abort()
		return &Error{File: w.path, Msg: msg, Err: err}
	}
	if err := w.buf.Flush(); err != nil {
		return fail("write failed", err)
	}
	if w.tmp == nil {
		w.done = true
		return nil
	}
	if err := w.tmp.Sync(); err != nil {
		return fail("fsync failed", err)
	}
	if err := w.tmp.Close(); err != nil {
		return fail("close failed", err)
	}
	if err := os.Rename(w.tmp.Name(), w.path); err != nil {
		return fail("rename into place failed", err)
	}
	w.done = true
	syncDir(filepath.Dir(w.path))
	return nil
}

// Abort discards the temp file; the target path is left untouched. It is
// safe to call after Commit (it does nothing then).
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	if w.tmp != nil {
		w.tmp.Close()
		os.Remove(w.tmp.Name())
	}
}

// syncDir makes the rename durable; failure is not fatal (some filesystems
// do not support fsync on directories).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// SameFile reports whether a and b name the same existing file (following
// links, hard links included). A path that does not exist is not the same as
// anything.
func SameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(sa, sb)
}

// CheckNotInput returns an error if out is the same file as any input, so a
// writer never replaces the model it is reading.
func CheckNotInput(out string, inputs ...string) error {
	for _, in := range inputs {
		if SameFile(out, in) {
			return &Error{File: out, Msg: "output is the input file " + quote(in),
				Advice: "write to a different path"}
		}
	}
	return nil
}
