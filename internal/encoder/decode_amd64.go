//go:build amd64 && !purego

package encoder

import (
	"sync"

	"github.com/seedlm/seedlm/internal/lfsr"
)

//go:noescape
func decodeBlocksAVX2(dst *float32, firsts *uint32, qs *int32, scales *float64, tab *int32, nblocks, c, p, stride int, add bool)

// simdDecodable reports whether the AVX2 decoder handles p: whole groups of
// 8 weights, and sums that stay exact in int32: |V − h|·|q|·P < 2^31.
func simdDecodable(p Params) bool {
	return hasAVX2 && p.BlockSize%8 == 0 &&
		(int64(1)<<(p.SeedBits-1)-1)*(int64(1)<<(p.CoeffBits-1))*int64(p.LatentDim) < 1<<31
}

// decimated holds the centered cycle V − h split by residue mod P:
// tab[r·stride + k] = V[k·P + r] − h. Column p of the basis of the seed at
// position pos is then contiguous: V[pos+1+p + c·P] for c = 0…C−1 is
// tab[r·stride + k + c] with pos+1+p = k·P + r, one vector load per 8 rows.
type decimated struct {
	tab    []int32
	stride int
	// first[seed] locates column 0 of seed's basis: residue r = (pos+1) mod P
	// and row k = (pos+1) div P, packed as r<<27 | (r·stride + k).
	first []uint32
}

type decKey struct{ K, P int }

var (
	decMu    sync.Mutex
	decCache = map[decKey]*decimated{}
)

func decimatedFor(k, p int) (*decimated, error) {
	decMu.Lock()
	defer decMu.Unlock()
	if d, ok := decCache[decKey{k, p}]; ok {
		return d, nil
	}
	cyc, err := lfsr.CycleFor(k)
	if err != nil {
		return nil, err
	}
	h := int64(1) << (k - 1)
	n := len(cyc.State)
	stride := (n + p - 1) / p
	d := &decimated{tab: make([]int32, p*stride), stride: stride, first: make([]uint32, len(cyc.Pos))}
	for j, s := range cyc.State {
		d.tab[(j%p)*stride+j/p] = int32(int64(s) - h)
	}
	for s := 1; s < len(cyc.Pos); s++ {
		pos := int(cyc.Pos[s]) + 1
		r, k := pos%p, pos/p
		d.first[s] = uint32(r)<<27 | uint32(r*stride+k)
	}
	decCache[decKey{k, p}] = d
	return d, nil
}

// decodeSIMD decodes whole blocks [b0, b1) with the AVX2 kernel, 256 blocks
// at a time: Go reads the fields, the kernel does the arithmetic.
func (l *Layer) decodeSIMD(f *fieldReader, dst []float32, add bool, b0, b1 int) error {
	p := l.Params
	C, P := p.BlockSize, p.LatentDim
	d, err := decimatedFor(p.SeedBits, P)
	if err != nil {
		return err
	}
	const chunk = 256
	// qs has room for a full [MaxLatentDim] write at the last block.
	qs := make([]int32, chunk*P+MaxLatentDim)
	var scales [chunk]float64
	var firsts [chunk]uint32
	for c0 := b0; c0 < b1; c0 += chunk {
		n := min(chunk, b1-c0)
		// Go reads the fields; the seeds' table lookups are independent
		// loads, so the CPU overlaps their cache misses.
		for i := 0; i < n; i++ {
			seed, scale, err := f.block(c0+i, (*[MaxLatentDim]int32)(qs[i*P:]))
			if err != nil {
				return err
			}
			scales[i] = scale
			firsts[i] = d.first[seed]
		}
		decodeBlocksAVX2(&dst[c0*C], &firsts[0], &qs[0], &scales[0], &d.tab[0], n, C, P, d.stride, add)
	}
	return nil
}
