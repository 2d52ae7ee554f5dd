package safetensors

import (
	"fmt"
	"github.com/seedlm/seedlm/internal/dtype"
	"io"
	"os"
	"runtime"
	"sync"
	"unsafe"
)

// File is an open safetensors file. Tensors are read one at a time with
// positioned reads (no mmap: mapped pages would count against the process's
// resident memory), so memory stays proportional to the tensor being read.
// A File is safe for concurrent reads.
type File struct {
	path    string
	r       io.ReaderAt
	closer  io.Closer
	size    int64
	hdr     *Header
	index   map[string]int
	release func()
}

// Open opens and validates a safetensors file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot open", Err: err}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &Error{File: path, Msg: "cannot stat", Err: err}
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, &Error{File: path, Msg: "not a regular file"}
	}
	sf, err := NewReader(path, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	sf.closer = f
	sf.release = noteInput(st)
	return sf, nil
}

// openInputs are the files open for reading through Open, so that NewWriter
// can refuse to replace one of them.
var openInputs struct {
	sync.Mutex
	infos map[*os.FileInfo]bool
}

func noteInput(fi os.FileInfo) func() {
	openInputs.Lock()
	defer openInputs.Unlock()
	if openInputs.infos == nil {
		openInputs.infos = map[*os.FileInfo]bool{}
	}
	key := &fi
	openInputs.infos[key] = true
	return func() {
		openInputs.Lock()
		delete(openInputs.infos, key)
		openInputs.Unlock()
	}
}

// isOpenInput reports whether path is a file currently open through Open.
func isOpenInput(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	openInputs.Lock()
	defer openInputs.Unlock()
	for k := range openInputs.infos {
		if os.SameFile(*k, fi) {
			return true
		}
	}
	return false
}

// NewReader reads a safetensors file of the given size through r; name is
// used in error messages. Close does not close r.
func NewReader(name string, r io.ReaderAt, size int64) (*File, error) {
	h, err := ReadHeader(name, r, size)
	if err != nil {
		return nil, err
	}
	idx := make(map[string]int, len(h.Tensors))
	for i, t := range h.Tensors {
		idx[t.Name] = i
	}
	return &File{path: name, r: r, size: size, hdr: h, index: idx}, nil
}

// Path is the file's path as given to Open.
func (f *File) Path() string { return f.path }

// Header is the validated header.
func (f *File) Header() *Header { return f.hdr }

// Tensors lists the tensors in file (data offset) order.
func (f *File) Tensors() []Tensor { return f.hdr.Tensors }

// Metadata is __metadata__ (nil when absent).
func (f *File) Metadata() map[string]string { return f.hdr.Metadata }

// Lookup finds a tensor by exact name.
func (f *File) Lookup(name string) (Tensor, bool) {
	i, ok := f.index[name]
	if !ok {
		return Tensor{}, false
	}
	return f.hdr.Tensors[i], true
}

func (f *File) lookup(name string) (Tensor, error) {
	t, ok := f.Lookup(name)
	if !ok {
		return t, &Error{File: f.path, Tensor: name, Msg: "no such tensor",
			Advice: "tensor names are case-sensitive; `seedlm inspect` lists them"}
	}
	return t, nil
}

// ReadRaw returns a copy of the tensor's bytes (little-endian, row-major).
func (f *File) ReadRaw(name string) ([]byte, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	buf := AllocBytes(t.End - t.Begin)
	if err := f.readAt(t, buf, t.Begin); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadRawAt reads len(b) bytes of the tensor's data starting off bytes
// into it (a sample, e.g. to fingerprint a tensor without reading it all).
func (f *File) ReadRawAt(name string, b []byte, off int64) error {
	t, err := f.lookup(name)
	if err != nil {
		return err
	}
	if off < 0 || off+int64(len(b)) > t.End-t.Begin {
		return &Error{File: f.path, Tensor: name, Msg: fmt.Sprintf("bytes [%d, %d) are outside the tensor's %d", off, off+int64(len(b)), t.End-t.Begin)}
	}
	return f.readAt(t, b, t.Begin+off)
}

// ReadFloat32 converts a floating-point tensor to float32.
func (f *File) ReadFloat32(name string) ([]float32, error) {
	return f.ReadFloat32Into(name, nil)
}

// chunkBytes bounds the staging buffer used while widening narrow dtypes, so
// converting a tensor costs its float32 output plus this constant (a
// variable so tests can force many chunks).
var chunkBytes int64 = 1 << 20

// ReadFloat32Into is ReadFloat32 reusing dst's storage when it is large
// enough (a caller that reads tensor after tensor keeps one buffer alive).
func (f *File) ReadFloat32Into(name string, dst []float32) ([]float32, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !dtype.CanFloat32(t.DType) {
		return nil, &Error{File: f.path, Tensor: name, Msg: fmt.Sprintf("dtype %s is not a float type convertible to float32", t.DType),
			Advice: "read it with ReadRaw"}
	}
	n, _ := dtype.NumElements(t.Shape) // validated at open
	if dst != nil && int64(cap(dst)) >= n {
		dst = dst[:n]
	} else {
		dst = AllocFloats(n)
	}
	if n == 0 {
		return dst, nil
	}
	if t.DType == "F32" && littleEndian {
		// Read straight into the output: no staging copy at all.
		if err := f.readAt(t, unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n), t.Begin); err != nil {
			return nil, err
		}
		return dst, nil
	}
	size, _ := dtype.Size(t.DType) // CanFloat32 types are whole bytes
	esz := int64(size)
	per := max(chunkBytes/esz, 1)
	stage := make([]byte, min(per, n)*esz)
	for i := int64(0); i < n; i += per {
		m := min(per, n-i)
		b := stage[:m*esz]
		if err := f.readAt(t, b, t.Begin+i*esz); err != nil {
			return nil, err
		}
		if err := dtype.ToFloat32(t.DType, dst[i:i+m], b); err != nil {
			return nil, &Error{File: f.path, Tensor: name, Msg: err.Error()}
		}
	}
	return dst, nil
}

// readAt reads len(b) bytes at data-section offset off.
func (f *File) readAt(t Tensor, b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	n, err := f.r.ReadAt(b, f.hdr.DataStart+off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		return &Error{File: f.path, Tensor: t.Name, Msg: fmt.Sprintf("short read: got %d of %d bytes", n, len(b)),
			Advice: "the file shrank after it was opened; is something rewriting it?"}
	}
	return &Error{File: f.path, Tensor: t.Name, Msg: "read failed", Err: err}
}

// Close releases the file.
func (f *File) Close() error {
	if f.release != nil {
		f.release()
		f.release = nil
	}
	if f.closer != nil {
		c := f.closer
		f.closer = nil
		return c.Close()
	}
	return nil
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// HostLittleEndian reports whether this machine stores numbers little-endian,
// as safetensors does (then F32 data can be copied as is).
func HostLittleEndian() bool { return littleEndian }

// gcBefore is the allocation size above which we collect first: a caller that
// reads tensor after tensor has usually dropped the previous one, and
// collecting lets the new buffer reuse its pages, so peak memory stays near
// one tensor instead of two. Tensors are pointer-free, so this is cheap.
const gcBefore = 64 << 20

// AllocBytes allocates a tensor-sized buffer, collecting garbage first when
// it is large (see gcBefore). The torch reader shares it.
func AllocBytes(n int64) []byte {
	if n >= gcBefore {
		runtime.GC()
	}
	return make([]byte, n)
}

// AllocFloats is AllocBytes for float32 tensors.
func AllocFloats(n int64) []float32 {
	if 4*n >= gcBefore {
		runtime.GC()
	}
	return make([]float32, n)
}
