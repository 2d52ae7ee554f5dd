// Package checkpoint is the one view of a model checkpoint that the rest of
// seedlm uses, whatever the file format: a list of tensors in file order, read
// one at a time, so memory stays proportional to the largest tensor.
//
// Open dispatches on the input: a .safetensors file, a sharded model's
// *.index.json (or the folder that holds one), or a torch.save checkpoint
// (.bin/.pt/.pth).
package checkpoint

// TensorInfo describes one tensor without reading its data.
type TensorInfo struct {
	Name string
	// DType is the safetensors dtype name ("F32", "BF16", "I64", ...). Torch
	// checkpoints are mapped onto the same names.
	DType string
	Shape []int64
	// Shard is the base name of the file the tensor lives in (for sharded
	// safetensors input, so decompress can mirror the layout); "" otherwise.
	Shard string
}

// NumElements is the product of Shape (1 for a rank-0 tensor).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Source is an opened checkpoint.
type Source interface {
	// Path is what the user named (file, index or folder).
	Path() string
	// Format is "safetensors", "safetensors-sharded", "torch" or
	// "torch-sharded".
	Format() string
	// Tensors lists every tensor in file order (shard order, then offset, for
	// sharded input).
	Tensors() []TensorInfo
	// Metadata is the safetensors __metadata__ map (nil when absent).
	Metadata() map[string]string
	// ReadRaw returns the tensor's bytes exactly as the safetensors layout of
	// its dtype has them: little-endian, row-major, contiguous.
	ReadRaw(name string) ([]byte, error)
	// ReadFloat32 converts a floating-point tensor to float32. Non-float dtypes
	// are an error that names the tensor.
	ReadFloat32(name string) ([]float32, error)
	Close() error
}

// The optional abilities some sources have; the functions below use them
// when present and fall back otherwise.

// Folder is the model folder the user named, when the source was found in
// one ("" when they named a file). Compress stores a folder's sidecar
// files (config.json, tokenizer files) and decompress writes a folder back.
func Folder(src Source) string {
	if f, ok := src.(interface{ Folder() string }); ok {
		return f.Folder()
	}
	return ""
}

// IndexPath is a sharded source's index file ("" for other sources).
func IndexPath(src Source) string {
	if f, ok := src.(interface{ IndexPath() string }); ok {
		return f.IndexPath()
	}
	return ""
}

// SameAs names the earlier tensor that shares name's storage in the file
// (PyTorch tied weights, saved once), without reading anything; "" when
// there is none or the format cannot tell.
func SameAs(src Source, name string) string {
	if f, ok := src.(interface{ SameAs(string) string }); ok {
		return f.SameAs(name)
	}
	return ""
}

// NonTensorKeys lists a checkpoint's entries that are not tensors (an
// epoch, optimizer settings); only PyTorch checkpoints have them.
func NonTensorKeys(src Source) []string {
	if f, ok := src.(interface{ NonTensorKeys() []string }); ok {
		return f.NonTensorKeys()
	}
	return nil
}

// ReadRawAt reads len(b) bytes of a tensor's raw bytes (as ReadRaw lays
// them out) from offset off, without reading the rest where the format
// allows.
func ReadRawAt(src Source, name string, b []byte, off int64) error {
	if f, ok := src.(interface {
		ReadRawAt(string, []byte, int64) error
	}); ok {
		return f.ReadRawAt(name, b, off)
	}
	raw, err := src.ReadRaw(name)
	if err != nil {
		return err
	}
	if off < 0 || off+int64(len(b)) > int64(len(raw)) {
		return &outOfRange{name}
	}
	copy(b, raw[off:])
	return nil
}

type outOfRange struct{ name string }

func (e *outOfRange) Error() string { return "tensor " + e.name + ": read outside its bytes" }
