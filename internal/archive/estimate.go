package archive

import "github.com/seedlm/seedlm/internal/dtype"

// EstimateOverheadBytes is what the fixed header and the index will take
// for these tensors: the caller fills Name, DType, Shape, Shard, Rule,
// Passthrough and one LayerEntry (Params set) per planned layer. Writers
// reserve the index's length from exactly these fields (indexReserve), so
// for the header h the archive gets, the figure is exact. Size targets
// (presets' --target-bpw) subtract it from their budget, which matters for
// small models where the index is a large share.
func EstimateOverheadBytes(h Header, ts []TensorEntry) int64 {
	ix := &Index{Header: h, Tensors: make([]TensorEntry, len(ts))}
	for i, t := range ts {
		n := t.NumElements()
		t.Norm2 = 0
		if t.Passthrough {
			size, err := dtype.ByteLen(t.DType, t.Shape)
			if err != nil {
				size = 1 << 32 // a wide stand-in: only the digits matter
			}
			t.Raw = &ChunkRef{Length: size}
			t.Layers = nil
		} else {
			t.Raw = nil
			layers := make([]LayerEntry, len(t.Layers))
			for k, l := range t.Layers {
				length := int64(1 << 32)
				if l.Params.Validate() == nil {
					length = payloadBytes(l.Params, n)
				}
				layers[k] = LayerEntry{Params: l.Params, N: n, Chunk: ChunkRef{Length: length}}
			}
			t.Layers = layers
		}
		ix.Tensors[i] = t
	}
	reserve, _, err := planLayout(ix)
	if err != nil {
		return MaxIndexBytes + HeaderSize
	}
	return HeaderSize + reserve
}
