package archive

import "strings"

// EstimateOverheadBytes is about what the fixed header and the index will
// take for these tensors: the caller fills Name, DType, Shape, Rule,
// Passthrough and one LayerEntry (Params set) per planned layer; offsets,
// lengths, hashes and errors get full-width stand-ins, so the estimate errs
// a little high. Size targets (presets' --target-bpw) subtract it from their
// budget, which matters for small models where the index is a large share.
func EstimateOverheadBytes(h Header, ts []TensorEntry) int64 {
	ix := &Index{Header: h, Tensors: make([]TensorEntry, len(ts))}
	ref := ChunkRef{Offset: 1 << 40, Length: 1 << 32, SHA256: strings.Repeat("0", 64)}
	const wide = 0.12345678901234568 // 17 significant digits, as JSON prints a float64
	for i, t := range ts {
		t.Norm2 = wide
		if t.Passthrough {
			r := ref
			t.Raw = &r
			t.Layers = nil
		} else {
			layers := make([]LayerEntry, len(t.Layers))
			for k, l := range t.Layers {
				layers[k] = LayerEntry{Params: l.Params, ExpBias: -100, N: 1 << 40, Chunk: ref, SqErr: wide}
			}
			t.Layers = layers
		}
		ix.Tensors[i] = t
	}
	b, err := marshalIndex(ix)
	if err != nil {
		return MaxIndexBytes + HeaderSize
	}
	return int64(len(b)) + HeaderSize
}
