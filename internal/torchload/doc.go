// Package torchload reads PyTorch checkpoints written by torch.save: the zip
// format (PyTorch 1.6 and later) and the legacy pre-1.6 format, without
// Python and without trusting the file.
//
// The pickle is run by github.com/nlpodyssey/gopickle with an allow-list of
// globals: collections.OrderedDict, dict, torch.Size, the typed storages
// (torch.FloatStorage, HalfStorage, BFloat16Storage, ..., mapped onto
// safetensors dtype names), torch._utils._rebuild_tensor_v2 (6 or 7
// arguments), _rebuild_tensor, _rebuild_parameter(_with_state) and
// torch._tensor._rebuild_from_type_v2 for Tensor/Parameter. Any other global
// is an error naming it. Before gopickle sees a pickle, a scanner walks its
// opcodes and rejects lengths that run past its end and pickles whose
// objects would need more than 1 GiB (gopickle allocates what a length field
// says, and a failed huge allocation cannot be recovered); any panic inside
// gopickle becomes an error.
//
// Nested containers flatten to dotted names ({"model": {"enc": {"w": t}}}
// gives "model.enc.w"; list items use their index). When every tensor sits
// under the same one of state_dict, model, model_state_dict, module or net,
// that wrapper key is dropped, so {"state_dict": sd, "epoch": 3} reads as sd.
//
// Storages are read in place from the zip entries (PyTorch stores them
// uncompressed; a compressed storage is refused) or, for legacy files, from
// their offsets in the file. Each tensor's storage offset and strides are
// honoured: contiguous tensors are one read; other views are gathered, from
// one read of the span they cover when it is at most about twice the tensor,
// run by run otherwise. Tensors sharing a storage (tied weights) each read
// their own view. The zip "byteorder" record (and the legacy little_endian
// flag) is respected: output is always little-endian, row-major, contiguous
// bytes, as safetensors lays them out. Sizes are checked against entry
// lengths before anything is allocated, and no tensor may claim more bytes
// than the whole file.
package torchload
