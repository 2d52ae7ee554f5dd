package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
)

// Tensor is a weight in its stored dtype: F32 values, or the raw 16-bit
// patterns of BF16 and F16. Matmuls widen it one panel of rows at a time, so
// a BF16 model stays half the size of its float32 form in memory.
type Tensor struct {
	Name  string
	DType string // "F32", "BF16" or "F16"
	Shape []int64
	f32   []float32
	u16   []uint16
}

// NewTensorF32 wraps float32 values (not copied).
func NewTensorF32(name string, shape []int64, data []float32) *Tensor {
	return &Tensor{Name: name, DType: "F32", Shape: append([]int64(nil), shape...), f32: data}
}

// NewTensor decodes little-endian raw bytes of a float dtype. F32, BF16 and
// F16 are kept as stored; F64 and the 8-bit float types become F32.
func NewTensor(name, dt string, shape []int64, raw []byte) (*Tensor, error) {
	n, err := dtype.NumElements(shape)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	t := &Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...)}
	switch dt {
	case "BF16", "F16":
		if int64(len(raw)) != 2*n {
			return nil, fmt.Errorf("tensor %q: %d bytes for %d %s elements", name, len(raw), n, dt)
		}
		t.u16 = make([]uint16, n)
		for i := range t.u16 {
			t.u16[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		return t, nil
	}
	if !dtype.CanFloat32(dt) {
		return nil, fmt.Errorf("tensor %q has dtype %s; the forward pass needs floating-point weights", name, dt)
	}
	t.DType = "F32"
	t.f32 = make([]float32, n)
	if err := dtype.ToFloat32(dt, t.f32, raw); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return t, nil
}

// NewTensorRounded stores float32 values (not copied for F32) in dtype,
// rounding to nearest even: what decompress writes for a coded tensor of
// that source dtype. Dtypes other than BF16 and F16 give F32.
func NewTensorRounded(name, dt string, shape []int64, w []float32) *Tensor {
	t := &Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...)}
	switch dt {
	case "BF16":
		t.u16 = make([]uint16, len(w))
		for i, x := range w {
			t.u16[i] = dtype.Float32ToBF16(x)
		}
	case "F16":
		t.u16 = make([]uint16, len(w))
		for i, x := range w {
			t.u16[i] = dtype.Float32ToF16(x)
		}
	default:
		t.DType = "F32"
		t.f32 = w
	}
	return t
}

// Len is the element count.
func (t *Tensor) Len() int {
	if t.f32 != nil {
		return len(t.f32)
	}
	return len(t.u16)
}

// Renamed is t under another name, sharing its values (read-only): a
// duplicate tensor's copy, with no conversion.
func (t *Tensor) Renamed(name string) *Tensor {
	c := *t
	c.Name = name
	return &c
}

// Bytes is the tensor's size in memory.
func (t *Tensor) Bytes() int64 { return 4*int64(len(t.f32)) + 2*int64(len(t.u16)) }

// Float32 returns the values widened to float32 (a copy for 16-bit dtypes,
// the stored slice for F32).
func (t *Tensor) Float32() []float32 {
	if t.f32 != nil {
		return t.f32
	}
	out := make([]float32, len(t.u16))
	t.widen(out, 0)
	return out
}

// widen converts elements [off, off+len(dst)) to float32.
func (t *Tensor) widen(dst []float32, off int) {
	switch t.DType {
	case "F32":
		copy(dst, t.f32[off:off+len(dst)])
	case "BF16":
		src := t.u16[off : off+len(dst)]
		for i, v := range src {
			dst[i] = math.Float32frombits(uint32(v) << 16)
		}
	case "F16":
		dtype.F16BitsToFloat32(dst, t.u16[off:off+len(dst)])
	}
}

// Weights provides a model's tensors by name: a checkpoint (FromSource), a
// .seedlm archive (FromArchive) or anything else that can list and produce
// tensors.
type Weights interface {
	// Tensors lists every tensor with its stored dtype and shape.
	Tensors() []checkpoint.TensorInfo
	// Tensor returns one tensor in its stored dtype (F32, BF16, F16; other
	// float dtypes as F32).
	Tensor(name string) (*Tensor, error)
}

// FromSource reads tensors from an opened checkpoint.
func FromSource(src checkpoint.Source) Weights { return sourceWeights{src} }

type sourceWeights struct{ src checkpoint.Source }

func (s sourceWeights) Tensors() []checkpoint.TensorInfo { return s.src.Tensors() }

func (s sourceWeights) Tensor(name string) (*Tensor, error) {
	for _, ti := range s.src.Tensors() {
		if ti.Name != name {
			continue
		}
		raw, err := s.src.ReadRaw(name)
		if err != nil {
			return nil, err
		}
		return NewTensor(name, ti.DType, ti.Shape, raw)
	}
	return nil, fmt.Errorf("%s has no tensor %q", s.src.Path(), name)
}

// Archive is what FromArchive reads: *archive.Archive, or a wrapper of it.
type Archive interface {
	Index() *archive.Index
	DecodeTensor(name string, layers int) ([]float32, error)
	ReadPassthrough(name string) ([]byte, error)
}

// FromArchive reads tensors from a .seedlm archive: coded tensors are
// decoded on use from their first `layers` layers (0: all the file holds
// completely, so a partial archive works) and rounded to their source dtype,
// exactly as decompress writes them; passthrough tensors are read as stored.
func FromArchive(a Archive, layers int) Weights {
	w := archiveWeights{a: a, layers: layers, by: map[string]*archive.TensorEntry{}}
	ix := a.Index()
	for i := range ix.Tensors {
		w.by[ix.Tensors[i].Name] = &ix.Tensors[i]
	}
	return w
}

type archiveWeights struct {
	a      Archive
	layers int
	by     map[string]*archive.TensorEntry
}

func (w archiveWeights) Tensors() []checkpoint.TensorInfo {
	ix := w.a.Index()
	out := make([]checkpoint.TensorInfo, len(ix.Tensors))
	for i, t := range ix.Tensors {
		out[i] = checkpoint.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Shard: t.Shard}
	}
	return out
}

func (w archiveWeights) Tensor(name string) (*Tensor, error) {
	e, ok := w.by[name]
	if !ok {
		return nil, fmt.Errorf("archive has no tensor %q", name)
	}
	if e.Passthrough {
		raw, err := w.a.ReadPassthrough(name)
		if err != nil {
			return nil, err
		}
		return NewTensor(name, e.DType, e.Shape, raw)
	}
	layers := min(w.layers, len(e.Layers))
	v, err := w.a.DecodeTensor(name, layers)
	if err != nil {
		return nil, err
	}
	return NewTensorRounded(name, e.DType, e.Shape, v), nil
}

// Override serves some tensors from memory and the rest from base: for
// experiments (a perturbed or re-coded tensor) without writing files.
func Override(base Weights, tensors map[string]*Tensor) Weights {
	return overrideWeights{base, tensors}
}

type overrideWeights struct {
	base Weights
	over map[string]*Tensor
}

func (o overrideWeights) Tensors() []checkpoint.TensorInfo { return o.base.Tensors() }

func (o overrideWeights) Tensor(name string) (*Tensor, error) {
	if t, ok := o.over[name]; ok {
		return t, nil
	}
	return o.base.Tensor(name)
}
