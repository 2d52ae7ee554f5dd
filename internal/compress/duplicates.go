package compress

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
)

// DuplicateStats says what finding duplicates cost: how many tensors were
// sampled (fingerprinted) and read in full, and the bytes read.
type DuplicateStats struct {
	Sampled, Hashed int
	BytesRead       int64
}

// fingerprintSample is the bytes read at each of a tensor's start, middle
// and end to tell tensors of one shape apart without reading them.
const fingerprintSample = 4096

// findDuplicates returns, for each tensor of src, the name of the first
// earlier tensor with byte-identical contents ("" for none): tied weights
// (lm_head and embed_tokens), identical norms. It costs little on a big
// model: tensors sharing storage in a PyTorch file are found without
// reading anything; of the rest, only tensors of the same dtype and shape
// are compared, first by a fingerprint of three 4 KiB samples, and only
// those whose fingerprints match are read whole and hashed (SHA-256).
func findDuplicates(ctx context.Context, src checkpoint.Source) ([]string, DuplicateStats, error) {
	infos := src.Tensors()
	dup := make([]string, len(infos))
	var st DuplicateStats
	pos := make(map[string]int, len(infos))
	for i, t := range infos {
		pos[t.Name] = i
		if o := checkpoint.SameAs(src, t.Name); o != "" {
			if j, ok := pos[o]; ok && j < i && dup[j] == "" {
				dup[i] = o
			}
		}
	}
	// Groups of one dtype and shape, in order of their first tensor.
	var keys []string
	groups := map[string][]int{}
	for i, t := range infos {
		if dup[i] != "" || t.NumElements() == 0 {
			continue
		}
		k := fmt.Sprintf("%s %v", t.DType, t.Shape)
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range keys {
		g := groups[k]
		if len(g) < 2 {
			continue
		}
		fps := map[[32]byte][]int{}
		var order [][32]byte
		for _, i := range g {
			if err := ctx.Err(); err != nil {
				return nil, st, err
			}
			fp, n, err := fingerprint(src, infos[i])
			if err != nil {
				return nil, st, err
			}
			st.Sampled++
			st.BytesRead += n
			if fps[fp] == nil {
				order = append(order, fp)
			}
			fps[fp] = append(fps[fp], i)
		}
		for _, fp := range order {
			same := fps[fp]
			if len(same) < 2 {
				continue
			}
			first := map[[32]byte]int{}
			for _, i := range same {
				raw, err := src.ReadRaw(infos[i].Name)
				if err != nil {
					return nil, st, err
				}
				st.Hashed++
				st.BytesRead += int64(len(raw))
				sum := sha256.Sum256(raw)
				if j, ok := first[sum]; ok {
					dup[i] = infos[j].Name
				} else {
					first[sum] = i
				}
			}
		}
	}
	return dup, st, nil
}

// fingerprint hashes a tensor's byte length and up to three samples of
// fingerprintSample bytes (start, middle, end); it returns the bytes read.
func fingerprint(src checkpoint.Source, t checkpoint.TensorInfo) ([32]byte, int64, error) {
	size, err := dtype.ByteLen(t.DType, t.Shape)
	if err != nil {
		return [32]byte{}, 0, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	h := sha256.New()
	binary.Write(h, binary.LittleEndian, size)
	offs := []int64{0}
	if size > 3*fingerprintSample {
		offs = append(offs, size/2-fingerprintSample/2, size-fingerprintSample)
	}
	var read int64
	for _, off := range offs {
		n := min(fingerprintSample, size)
		if len(offs) == 1 {
			n = min(3*fingerprintSample, size)
		}
		b := make([]byte, n)
		if err := checkpoint.ReadRawAt(src, t.Name, b, off); err != nil {
			return [32]byte{}, read, err
		}
		read += n
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, read, nil
}
