// Package safetensors reads and writes the safetensors format, single files
// and sharded models, strictly and with memory bounded by one tensor.
//
// A file is an 8-byte little-endian header length N (at most
// MaxHeaderSize), N bytes of JSON, then the tensor data. Reading follows the
// reference implementation's validation and is stricter where Go's JSON
// decoder would be lax:
//   - the header must be valid UTF-8 and one JSON object, optionally followed
//     by whitespace; duplicate keys anywhere are rejected and keys are
//     case-sensitive; a tensor entry has exactly dtype, shape, data_offsets;
//   - __metadata__ is a string-to-string map (or null) and is preserved;
//   - dtypes: BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0,
//     F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64,
//     I64, U64. A tensor is numel*bits/8 bytes; as in the reference crate, a
//     sub-byte tensor (F4, F6_*) whose bit count is not a whole number of
//     bytes is rejected;
//   - sorted by offset, each tensor starts where the previous one ended, its
//     length is exactly its size (with overflow checks), and the last one
//     ends at the end of the file. Rank-0 and empty tensors are fine.
//
// Every error is an *Error naming the file and, where there is one, the
// tensor, usually with a hint.
//
// Reading uses positioned reads, not mmap (mapped pages would count as the
// process's memory): File.ReadRaw returns a tensor's bytes, ReadFloat32 and
// ReadFloat32Into convert F64/F32/F16/BF16 and the 8-bit float types to
// float32, staging narrow types through a 1 MiB buffer.
//
// Sharded models: OpenSharded takes a *.safetensors.index.json or a folder
// holding exactly one; every shard in weight_map must exist in the index's
// folder and every tensor must be in exactly the shard the index names.
//
// Writing: NewWriter streams a file (header first, then WriteTensor or
// WriteTensorFunc in the declared order, size-checked) into a temp file in
// the target folder that Commit syncs and renames into place; Abort removes
// it. NewStreamWriter writes to any io.Writer (stdout). The header is padded
// with spaces to a multiple of 8 bytes, like the reference writer. Callers
// must not write over their input: CheckNotInput and SameFile tell.
// NewShardedWriter writes several shards plus the index (weight_map and
// metadata.total_size) into a temp folder that Commit renames into place.
package safetensors
