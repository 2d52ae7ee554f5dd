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
	// Format is "safetensors", "safetensors-sharded" or "torch".
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
