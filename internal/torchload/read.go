package torchload

import (
	"fmt"
	"github.com/seedlm/seedlm/internal/dtype"
	"io"
	"unsafe"

	"github.com/seedlm/seedlm/internal/safetensors"
)

// Path is the file's path as given to Open.
func (f *File) Path() string { return f.path }

// Legacy reports whether the file is in the pre-1.6 (non-zip) format.
func (f *File) Legacy() bool { return f.legacy }

// Tensors lists the tensors in pickle order with flattened dotted names.
func (f *File) Tensors() []Tensor { return f.ts }

// Close releases the file.
func (f *File) Close() error {
	if f.closer != nil {
		c := f.closer
		f.closer = nil
		return c.Close()
	}
	return nil
}

func (f *File) lookup(name string) (*tensorRef, error) {
	i, ok := f.index[name]
	if !ok {
		return nil, f.fail(name, "no such tensor", "tensor names are case-sensitive; `seedlm inspect` lists them", nil)
	}
	return f.refs[i], nil
}

// ReadRaw returns the tensor as safetensors lays it out: little-endian,
// row-major, contiguous. Views are gathered, big-endian files swapped.
func (f *File) ReadRaw(name string) (out []byte, err error) {
	defer f.recoverRead(name, &err)
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	out = safetensors.AllocBytes(t.nbytes())
	if err := f.gather(name, t, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadRawAt reads len(b) bytes of the tensor, as ReadRaw lays it out,
// starting off bytes into it: straight from the storage for a contiguous
// little-endian view, else from a full gather.
func (f *File) ReadRawAt(name string, b []byte, off int64) (err error) {
	defer f.recoverRead(name, &err)
	t, err := f.lookup(name)
	if err != nil {
		return err
	}
	if off < 0 || off+int64(len(b)) > t.nbytes() {
		return f.fail(name, fmt.Sprintf("bytes [%d, %d) are outside the tensor's %d", off, off+int64(len(b)), t.nbytes()), "", nil)
	}
	if t.contiguous() && !t.st.big {
		return f.readAt(name, b, t.st.off+t.offset*t.st.typ.esize+off)
	}
	all, err := f.ReadRaw(name)
	if err != nil {
		return err
	}
	copy(b, all[off:])
	return nil
}

// SameAs names the first tensor before name that is the same view of the
// same storage (tied weights, saved once): it has the same bytes. Finding
// it reads nothing. "" when there is none.
func (f *File) SameAs(name string) string {
	i, ok := f.index[name]
	if !ok || f.same[i] == i {
		return ""
	}
	return f.ts[f.same[i]].Name
}

// NonTensorKeys are the dotted paths of the checkpoint's entries that are
// not tensors (an epoch number, optimizer settings, None): seedlm does not
// store them.
func (f *File) NonTensorKeys() []string { return f.extra }

// recoverRead turns a panic while reading (a bug, given the checks at open)
// into an error naming the tensor rather than a crash.
func (f *File) recoverRead(name string, err *error) {
	if p := recover(); p != nil {
		*err = f.fail(name, fmt.Sprintf("internal error while reading: %v", p), "please report this file", nil)
	}
}

// ReadFloat32 converts a floating-point tensor to float32.
func (f *File) ReadFloat32(name string) ([]float32, error) {
	return f.ReadFloat32Into(name, nil)
}

// ReadFloat32Into is ReadFloat32 reusing dst when it is large enough.
func (f *File) ReadFloat32Into(name string, dst []float32) (_ []float32, err error) {
	defer f.recoverRead(name, &err)
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	dt := t.st.typ.dtype
	if !dtype.CanFloat32(dt) {
		return nil, f.fail(name, fmt.Sprintf("dtype %s is not a float type convertible to float32", dt), "read it with ReadRaw", nil)
	}
	n := t.numel()
	if dst != nil && int64(cap(dst)) >= n {
		dst = dst[:n]
	} else {
		dst = safetensors.AllocFloats(n)
	}
	if n == 0 {
		return dst, nil
	}
	if dt == "F32" {
		// Gather straight into the output's bytes: no second copy.
		if err := f.gather(name, t, unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n)); err != nil {
			return nil, err
		}
		if !safetensors.HostLittleEndian() {
			swapInPlace(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n), 4)
		}
		return dst, nil
	}
	es := t.st.typ.esize
	if t.contiguous() {
		// Convert through a small staging buffer, as the safetensors reader
		// does: memory is the float32 output plus 1 MiB.
		per := max(stageBytes/es, 1)
		stage := make([]byte, min(per, n)*es)
		base := t.st.off + t.offset*es
		for i := int64(0); i < n; i += per {
			m := min(per, n-i)
			b := stage[:m*es]
			if err := f.readAt(name, b, base+i*es); err != nil {
				return nil, err
			}
			if t.st.big {
				swapInPlace(b, swapUnit(t.st.typ))
			}
			if err := dtype.ToFloat32(dt, dst[i:i+m], b); err != nil {
				return nil, f.fail(name, err.Error(), "", nil)
			}
		}
		return dst, nil
	}
	raw := make([]byte, t.nbytes())
	if err := f.gather(name, t, raw); err != nil {
		return nil, err
	}
	if err := dtype.ToFloat32(dt, dst, raw); err != nil {
		return nil, f.fail(name, err.Error(), "", nil)
	}
	return dst, nil
}

// contiguous reports whether the view is row-major contiguous (size-1
// dimensions may have any stride), so it is one run of its storage.
func (t *tensorRef) contiguous() bool {
	want := int64(1)
	for i := len(t.shape) - 1; i >= 0; i-- {
		if t.shape[i] != 1 && t.stride[i] != want {
			return false
		}
		want *= t.shape[i]
	}
	return true
}

func (t *tensorRef) numel() int64 {
	n := int64(1)
	for _, d := range t.shape {
		n *= d // checked in checkView
	}
	return n
}

func (t *tensorRef) nbytes() int64 { return t.numel() * t.st.typ.esize }

// gather copies the view's elements, in row-major order, into out
// (len = nbytes), then converts them to little-endian.
func (f *File) gather(name string, t *tensorRef, out []byte) error {
	if len(out) == 0 {
		return nil
	}
	es := t.st.typ.esize
	base := t.st.off + t.offset*es
	switch {
	case t.contiguous(): // one read
		if err := f.readAt(name, out, base); err != nil {
			return err
		}
	default:
		// The storage span the view touches, from its first to last element.
		var span int64 = 1
		for i, d := range t.shape {
			span += (d - 1) * t.stride[i]
		}
		if span*es <= 2*int64(len(out))+denseSlack {
			// Dense enough (a transpose, a small slice): read the span once,
			// gather in memory. Costs at most ~3x the tensor.
			buf := make([]byte, span*es)
			if err := f.readAt(name, buf, base); err != nil {
				return err
			}
			walkView(t.shape, t.stride, func(src, dst, run int64) {
				if run == 1 {
					copy(out[dst*es:(dst+1)*es], buf[src*es:(src+1)*es])
					return
				}
				copy(out[dst*es:(dst+run)*es], buf[src*es:(src+run)*es])
			})
		} else {
			// Sparse view of a big storage: read each contiguous run.
			var rerr error
			walkView(t.shape, t.stride, func(src, dst, run int64) {
				if rerr == nil {
					rerr = f.readAt(name, out[dst*es:(dst+run)*es], base+src*es)
				}
			})
			if rerr != nil {
				return rerr
			}
		}
	}
	if t.st.big {
		// Output is little-endian whatever the host.
		swapInPlace(out, swapUnit(t.st.typ))
	}
	return nil
}

// walkView calls fn for every maximal run of the view that is contiguous in
// both storage (src, in elements from the view's offset) and output (dst).
func walkView(shape, stride []int64, fn func(src, dst, run int64)) {
	rank := len(shape)
	outer, run := rank, int64(1)
	if rank > 0 && stride[rank-1] == 1 {
		outer, run = rank-1, shape[rank-1]
	}
	idx := make([]int64, outer)
	var dst int64
	for {
		var src int64
		for i := 0; i < outer; i++ {
			src += idx[i] * stride[i]
		}
		fn(src, dst, run)
		dst += run
		// Advance the odometer over the outer dims.
		i := outer - 1
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < shape[i] {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return
		}
	}
}

// stageBytes bounds the staging buffer of ReadFloat32 (a variable for tests).
var stageBytes int64 = 1 << 20

// denseSlack is how many bytes beyond twice the tensor a view's storage span
// may cover and still be read in one piece (a variable for tests).
var denseSlack int64 = 1 << 20

func swapUnit(t storageType) int64 {
	if t.dtype == "C64" {
		return 4 // two float32 parts, each swapped
	}
	return t.esize
}

func swapInPlace(b []byte, unit int64) {
	if unit <= 1 {
		return
	}
	for i := int64(0); i+unit <= int64(len(b)); i += unit {
		for j, k := i, i+unit-1; j < k; j, k = j+1, k-1 {
			b[j], b[k] = b[k], b[j]
		}
	}
}

func (f *File) readAt(name string, b []byte, off int64) error {
	n, err := f.r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		return f.fail(name, fmt.Sprintf("short read: got %d of %d bytes at offset %d", n, len(b), off),
			"the file shrank after it was opened; is something rewriting it?", nil)
	}
	return f.fail(name, "read failed", "", err)
}
