package archive

import "github.com/seedlm/seedlm/internal/dtype"

// EstimateOverheadBytes is what the fixed header, the index and the
// sidecar files will take for these tensors: the caller fills Name, DType,
// Shape, Shard, Rule, DuplicateOf, Passthrough and one LayerEntry (Params
// set) per planned layer, and each file's Name and Chunk.Length. Writers
// reserve the index's length from exactly these fields (indexReserve), so
// for the header h the archive gets, the figure is exact. Size targets
// (presets' --target-bpw) subtract it from their budget, which matters for
// small models where the index is a large share.
func EstimateOverheadBytes(h Header, ts []TensorEntry, files []FileEntry) int64 {
	ix := &Index{Header: h, Tensors: make([]TensorEntry, len(ts)), Files: make([]FileEntry, len(files))}
	var fileBytes int64
	for i, f := range files {
		f.Chunk.SHA256 = zeroHash
		ix.Files[i] = f
		fileBytes += f.Chunk.Length
	}
	for i, t := range ts {
		n := t.NumElements()
		t.Norm2 = 0
		if t.DuplicateOf != "" {
			t.Raw, t.Layers = nil, nil
		} else if t.Passthrough {
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
		return MaxIndexBytes + HeaderSize + fileBytes
	}
	return HeaderSize + reserve + fileBytes
}
