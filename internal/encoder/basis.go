package encoder

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/seedlm/seedlm/internal/lfsr"
)

// basis holds the per-(K, C, P) tables every block search shares read-only.
// They depend only on the LFSR and the block shape, never on the weights.
//
// Seed positions: the seed at cycle position i is cyc.State[i]; its basis
// V(s) is cyc.State[i+1 : i+1+C·P] laid out row-major (C rows of P).
type basis struct {
	K, C, P int
	L       int   // period 2^K − 1
	h       int64 // 2^{K−1}
	cyc     *lfsr.Cycle
	// dec is the centered cycle split by residue mod P, the projection
	// kernels' input (shared by every C with this K and P).
	dec *decTable
	// pcoef holds, per pair of seeds (positions 2p and 2p+1, see
	// pairCoefs), the orthonormalizing coefficients of the pruning bound:
	// pstride = (P−1)P/2 + 2P float32s, and pclass the pair's σ class (the
	// lower of its two seeds'; see tile.setThreshold).
	pcoef   []float32
	pstride int
	pclass  []uint8
	// warmCoef holds, for the first warmSeeds positions only, the bound
	// bᵀG⁻¹b as a quadratic form (upper triangle, off-diagonals doubled,
	// row by row: stride float32s each), for the warm start.
	warmCoef []float32
	// stride = P(P+1)/2 is the length of a packed upper triangle (warmCoef
	// and ainv entries).
	stride int
	// classMargin[c] bounds, relative to ‖w̃‖², the float32 error of the
	// pair kernels' bound for every live seed of a pair of σ class c (the
	// largest of their margins, see pairMargin); the class thresholds take
	// it off.
	classMargin [classes]float64
	// excluded marks (one bit per position) the positions whose Gram matrix
	// fails the conditioning rule (see cholesky): those seeds are never
	// chosen.
	excluded []uint64
	// dead marks (one bit per position, L+1 of them) the seeds the pair
	// kernels do not bound: excluded, near-singular (ill), and position L,
	// the last pair's second seed, past the cycle.
	dead []uint64
	// lowest is the smallest seed not excluded: zero blocks use it.
	lowest uint32
	// bySigma lists the non-excluded positions in increasing order of a
	// lower bound on the smallest singular value of U(s) (1/√tr G⁻¹ ≤
	// √λmin(G), in U units), and sigma holds those bounds (rounded down to
	// float32) in the same order; only the first tinyMax()+1 are kept,
	// all searcher.tiny needs. A nonzero code's ŵ = U·q·2^e has
	// ‖ŵ‖ ≥ sigma·2^e, which rules out whole seeds for blocks far below the
	// exponent window.
	sigma   []float32
	bySigma []int32
	// maxSigma is the largest σ lower bound of any seed.
	maxSigma float64
	// class[i] is position i's σ class: the largest c with σ lower bound
	// ≥ classSigma[c] (classSigma[0] = 0; see classOctave). The kernels compare each seed's
	// bound with its class's threshold, which also counts the quantization
	// step at the bottom of the exponent window (see tile.setThreshold).
	class      []uint8
	classSigma [classes]float64
	// ill lists the positions whose margin exceeds illMargin: near-singular
	// bases where the float32 bound is meaningless. The pair kernels skip
	// them (their coefficients zeroed); the searcher bounds them through an
	// orthonormal basis of their span, illQ32 (C×P per seed, row-major,
	// computed in float64), whose float32 projection ‖Qᵀw‖² has a uniform
	// relative margin illM whatever the conditioning.
	ill      []int32
	illClass []uint8
	illQ32   []float32
	illM     float32
	// ainv caches, per position, G⁻¹ for the exact quantizer (upper
	// triangle, float64, integer units); nil for K > ainvMaxK, where it is
	// recomputed per candidate instead (same arithmetic, same values).
	ainv []float64
}

// classes is the number of σ classes (see classEdge). Most seeds' σ lie
// within an octave or two of the bulk's top; the near-singular ones,
// 2^−15…2^−17 of it, are where blocks far below the exponent window find
// their codes. Blocks near the window's bottom are sensitive to σ (the
// bound r ≈ σ·2^{emin+bias}/2 enters squared), hence the fine classes.
const classes = 48

// fineClasses: the top classes split the four octaves below the bulk's top
// in eighths.
const fineClasses = 32

// classEdge is class c's σ edge relative to the bulk's top (c ≥ 1): 1/8
// octaves from 1 down to 2^−31/8 for classes 47…16, then one octave per
// class, 2^−4 … 2^−18, for classes 15…1; class 0 holds the rest (edge 0).
func classEdge(c int) float64 {
	if c >= classes-fineClasses {
		k := classes - 1 - c
		return math.Ldexp(eighthOctaves[k%8], -(k / 8))
	}
	return math.Ldexp(1, c-19)
}

// eighthOctaves[j] is 2^(−j/8), correctly rounded: constants rather than
// math.Exp2, which is assembly on arm64 and Go on amd64 and may differ in
// the last bit, so the class edges (which seeds the kernels test against
// which threshold) are the same bits on every architecture.
var eighthOctaves = [8]float64{
	1,
	0.9170040432046712317435415947941444280387,
	0.8408964152537145430311254762332148950400,
	0.7711054127039704118061459310453674206534,
	0.7071067811865475244008443621048490392848,
	0.6484197773255048329668770588962255799177,
	0.5946035575013605333587499852802379576465,
	0.5452538663326288296035053278803539894964,
}

// ainvMaxK bounds the seed widths whose exact inverses are cached: at
// K = 16 the cache is at most 5 MB (P = 4); beyond, the candidates are few
// next to the seeds scanned and the inverse is cheaper to recompute than
// to hold.
const ainvMaxK = 16

// illMargin: seeds whose relative pruning margin exceeds this go to the
// orthonormal path. For K = 16 that is a few hundred seeds at C=8, P=3.
const illMargin = 1e-2

type basisKey struct{ K, C, P int }

var (
	basisMu    sync.Mutex
	basisCache = map[basisKey]*basis{}
)

// basisFor returns the shared tables for p's K, C and P, building them on
// first use (K=16, C=8, P=3: a few tens of ms).
func basisFor(p Params) (*basis, error) {
	key := basisKey{p.SeedBits, p.BlockSize, p.LatentDim}
	basisMu.Lock()
	defer basisMu.Unlock()
	if b, ok := basisCache[key]; ok {
		return b, nil
	}
	b, err := buildBasis(key.K, key.C, key.P)
	if err != nil {
		return nil, err
	}
	basisCache[key] = b
	return b, nil
}

// u32 is the unit roundoff of float32.
const u32 = 1.0 / (1 << 24)

func buildBasis(K, C, P int) (*basis, error) {
	cyc, err := lfsr.CycleFor(K)
	if err != nil {
		return nil, err
	}
	dec, err := decTableFor(K, P)
	if err != nil {
		return nil, err
	}
	L := cyc.Reg.Period()
	h := int64(1) << (K - 1)
	b := &basis{K: K, C: C, P: P, L: L, h: h, cyc: cyc, dec: dec}
	b.stride = P * (P + 1) / 2
	b.pstride = pairStride(P)
	np := (L + 1) / 2 // pairs; the last one's second seed is past the cycle
	b.pcoef = make([]float32, np*b.pstride)
	b.pclass = make([]uint8, np)
	nwarm := min(L, warmSeeds)
	b.warmCoef = make([]float32, nwarm*b.stride)
	b.excluded = make([]uint64, (L+63)/64)
	na := b.stride
	if K <= ainvMaxK {
		b.ainv = make([]float64, L*na)
	}
	sigmas := make([]float64, L)
	margins := make([]float64, L) // the pair kernels' margin; 0 for dead seeds
	dead := make([]bool, L+1)     // excluded, near-singular, or past the cycle
	dead[L] = true

	// Seeds are independent: the positions are split in ranges (whole
	// words of the excluded bitset, so whole pairs) built side by side,
	// and the near-singular lists joined in position order.
	nw := max(1, min(runtime.GOMAXPROCS(0), L/4096))
	per := ((L+nw-1)/nw + 63) &^ 63
	ills := make([][]int32, nw)
	illQs := make([][]float64, nw)
	var wg sync.WaitGroup
	for wi := 0; wi < nw; wi++ {
		lo, hi := wi*per, min(L, (wi+1)*per)
		wg.Add(1)
		go func(wi, lo, hi int) {
			defer wg.Done()
			var g, a, l [MaxLatentDim * MaxLatentDim]float64
			var pc pairCols
			for i := lo; i < hi; i++ {
				v := cyc.State[i+1 : i+1+C*P]
				gramInt(v, h, C, P, g[:])
				// The exclusion test runs on the integer Gram matrix, exactly
				// as the exact quantizer factors it, so both agree on every
				// seed.
				copy(l[:P*P], g[:P*P])
				if !cholesky(l[:], P) {
					b.excluded[i/64] |= 1 << (i % 64)
					dead[i] = true
					continue // such seeds can't win
				}
				invertCholesky(l[:], a[:], P)
				if b.ainv != nil {
					packUpper(a[:], P, b.ainv[i*na:(i+1)*na])
				}
				if i < nwarm {
					c := b.warmCoef[i*b.stride : (i+1)*b.stride]
					k := 0
					for r := 0; r < P; r++ {
						for s := r; s < P; s++ {
							x := a[r*P+s]
							if s != r {
								x *= 2
							}
							// The projections of a truncated table (K > 16) are
							// 2^−shift of the true ones: an exact rescaling.
							c[k] = float32(math.Ldexp(x, 2*dec.shift))
							k++
						}
					}
				}
				sigmas[i] = sigmaLB(a[:], P, h)
			}
			// Pairs: the coefficients of both seeds and their margins; a
			// seed whose bound is not provably accurate in float32 goes to
			// the orthonormal path.
			for i := lo; i < hi; i += 2 {
				pc.load(cyc, h, C, P, i)
				var m [2]float64
				m[0], m[1] = pc.coefs(b.pcoef[i/2*b.pstride:(i/2+1)*b.pstride], K, C, P, dec.shift, [2]bool{dead[i], dead[i+1]})
				for k := 0; k < 2 && i+k < hi; k++ {
					j := i + k
					if dead[j] {
						continue
					}
					if !(m[k] <= illMargin) {
						dead[j] = true
						if j < nwarm {
							// The warm start must not pick it on a
							// meaningless float32 value either.
							clear(b.warmCoef[j*b.stride : (j+1)*b.stride])
						}
						ills[wi] = append(ills[wi], int32(j))
						illQs[wi] = append(illQs[wi], orthonormal(cyc.State[j+1:j+1+C*P], h, C, P)...)
						continue
					}
					margins[j] = m[k]
				}
				pc.zeroDead(b.pcoef[i/2*b.pstride:(i/2+1)*b.pstride], P, [2]bool{dead[i], dead[i+1]})
			}
		}(wi, lo, hi)
	}
	wg.Wait()
	b.dead = make([]uint64, (L+1+63)/64)
	for i, x := range dead {
		if x {
			b.dead[i/64] |= 1 << (i % 64)
		}
	}
	var illQ []float64
	for wi := range ills {
		b.ill = append(b.ill, ills[wi]...)
		illQ = append(illQ, illQs[wi]...)
	}
	b.illQ32 = make([]float32, len(illQ))
	for i, x := range illQ {
		b.illQ32[i] = float32(x)
	}
	// |Δd_p| ≤ (C+2)·u·‖w‖ for each unit column, so |Δ Σ d_p²| ≤
	// (2(C+2)√P + P + 2)·u·‖w‖²; doubled for safety.
	b.illM = roundUp32(2 * (float64(2*float64(C+2)*math.Sqrt(float64(P))) + float64(P) + 4) * u32)
	// σ order, as far as tiny needs it (the smallest tinyMax+1), and the
	// bulk's top: a high quantile, since the very largest σ are outliers.
	sorted := make([]float64, 0, L)
	for i, x := range sigmas {
		if !b.isExcluded(i) {
			sorted = append(sorted, x)
		}
	}
	if len(sorted) == 0 {
		return nil, fmt.Errorf("K=%d C=%d P=%d: every seed's basis is rank-deficient", K, C, P)
	}
	slices.Sort(sorted)
	top := sorted[min(len(sorted)-1, len(sorted)*999/1000)]
	keep := min(len(sorted), b.tinyMax()+1)
	if keep > 0 {
		cut := sorted[keep-1]
		for i, x := range sigmas {
			if !b.isExcluded(i) && x <= cut {
				b.bySigma = append(b.bySigma, int32(i))
			}
		}
		slices.SortFunc(b.bySigma, func(x, y int32) int {
			return cmp.Or(cmp.Compare(sigmas[x], sigmas[y]), cmp.Compare(x, y))
		})
		b.bySigma = b.bySigma[:keep:keep]
	}
	sorted = nil
	for i, x := range sigmas {
		if !b.isExcluded(i) {
			b.maxSigma = math.Max(b.maxSigma, x)
		}
	}
	b.sigma = make([]float32, len(b.bySigma))
	for i, pos := range b.bySigma {
		b.sigma[i] = roundDown32(sigmas[pos])
	}
	for c := 1; c < classes; c++ {
		b.classSigma[c] = top * classEdge(c)
	}
	b.class = make([]uint8, L)
	for i, x := range sigmas {
		// The largest c with classSigma[c] ≤ x (classSigma[0] = 0 ≤ x).
		c := sort.Search(classes, func(c int) bool { return b.classSigma[c] > x }) - 1
		b.class[i] = uint8(c)
	}
	// A pair takes the lower class of its live seeds (thresholds grow with
	// the class, so that threshold is valid for both) and their larger
	// margin; a pair with no live seed, the top class (its hits are
	// dropped).
	for p := range b.pclass {
		c := classes - 1
		for _, j := range [2]int{2 * p, 2*p + 1} {
			if !dead[j] {
				c = min(c, int(b.class[j]))
			}
		}
		b.pclass[p] = uint8(c)
		for _, j := range [2]int{2 * p, 2*p + 1} {
			if !dead[j] {
				b.classMargin[c] = math.Max(b.classMargin[c], margins[j])
			}
		}
	}
	for _, pos := range b.ill {
		b.illClass = append(b.illClass, b.class[pos])
	}
	b.lowest = 0
	for i := 0; i < L; i++ {
		if s := cyc.State[i]; !b.isExcluded(i) && (b.lowest == 0 || s < b.lowest) {
			b.lowest = s
		}
	}
	if b.lowest == 0 {
		return nil, fmt.Errorf("K=%d C=%d P=%d: every seed's basis is rank-deficient", K, C, P)
	}
	return b, nil
}

// sigmaAt is the σ lower bound of the seed at pos (U units; 0 for excluded
// seeds), 1/√tr G⁻¹ rounded down as at build time.
func (b *basis) sigmaAt(pos int) float64 {
	if b.isExcluded(pos) {
		return 0
	}
	if b.ainv != nil {
		// The diagonal of the packed upper triangle, summed in row order
		// as sigmaLB does.
		P, na := b.P, b.stride
		ap := b.ainv[pos*na : (pos+1)*na]
		var tr float64
		for r, k := 0, 0; r < P; r++ {
			tr += ap[k]
			k += P - r
		}
		return sigmaFromTrace(tr, b.h)
	}
	var a [MaxLatentDim * MaxLatentDim]float64
	if !b.inverse(pos, b.cyc.State[pos+1:pos+1+b.C*b.P], a[:]) {
		return 0
	}
	return sigmaLB(a[:], b.P, b.h)
}

// sigmaLB is a lower bound on σmin(U) from A = G⁻¹ (integer units): in U
// units G is G/(h−1)², so 1/√tr(A_U) = 1/(√tr A·(h−1)) ≤ √λmin(G_U),
// rounded down by more than the inverse's float64 error.
func sigmaLB(a []float64, P int, h int64) float64 {
	var tr float64
	for r := 0; r < P; r++ {
		tr += a[r*P+r]
	}
	return sigmaFromTrace(tr, h)
}

// sigmaFromTrace is sigmaLB's bound from tr A, shared with sigmaAt's
// packed-triangle path so both give the same bits.
func sigmaFromTrace(tr float64, h int64) float64 {
	return (1 - 1e-4) / (math.Sqrt(tr) * float64(h-1))
}

// touch reads the cache lines eval will read for the seed at pos (its
// cycle states and cached inverse) and returns something of them, so the
// loads are kept.
func (b *basis) touch(pos int) uint64 {
	n := b.C * b.P
	x := uint64(b.cyc.State[pos+1]) + uint64(b.cyc.State[pos+n])
	if b.ainv != nil {
		na := b.stride
		x += math.Float64bits(b.ainv[pos*na]) + math.Float64bits(b.ainv[pos*na+na-1])
	}
	return x
}

// isDead reports whether the pair kernels leave the seed at pos (≤ L) out.
func (b *basis) isDead(pos int) bool { return b.dead[pos/64]>>(pos%64)&1 != 0 }

// isExcluded reports whether the seed at pos is excluded.
func (b *basis) isExcluded(pos int) bool { return b.excluded[pos/64]>>(pos%64)&1 != 0 }

// packUpper stores the upper triangle of the symmetric P×P matrix a, row by
// row, in dst; unpackUpper is its inverse.
func packUpper(a []float64, P int, dst []float64) {
	k := 0
	for r := 0; r < P; r++ {
		for s := r; s < P; s++ {
			dst[k] = a[r*P+s]
			k++
		}
	}
}

func unpackUpper(src []float64, P int, a []float64) {
	k := 0
	for r := 0; r < P; r++ {
		for s := r; s < P; s++ {
			a[r*P+s] = src[k]
			a[s*P+r] = src[k]
			k++
		}
	}
}

// inverse writes G⁻¹ (full P×P, integer units) of position pos, whose basis
// states are v, into a: from the cache or recomputed (same arithmetic).
// False for excluded positions.
func (b *basis) inverse(pos int, v []uint32, a []float64) bool {
	if b.isExcluded(pos) {
		return false
	}
	P := b.P
	if b.ainv != nil {
		na := b.stride
		unpackUpper(b.ainv[pos*na:(pos+1)*na], P, a)
		return true
	}
	var l [MaxLatentDim * MaxLatentDim]float64
	gramInt(v, b.h, b.C, P, l[:])
	if !cholesky(l[:], P) {
		return false // unreachable: excluded agrees
	}
	invertCholesky(l[:], a, P)
	return true
}

// orthonormal returns an orthonormal basis (C×P, row-major) of the span of
// V − h: modified Gram–Schmidt, applied twice for full float64 accuracy.
func orthonormal(v []uint32, h int64, C, P int) []float64 {
	q := make([]float64, C*P)
	for i := range q {
		q[i] = float64(int64(v[i]) - h)
	}
	for p := 0; p < P; p++ {
		for pass := 0; pass < 2; pass++ {
			for k := 0; k < p; k++ {
				var d float64
				for c := 0; c < C; c++ {
					d += float64(q[c*P+k] * q[c*P+p])
				}
				for c := 0; c < C; c++ {
					q[c*P+p] -= float64(d * q[c*P+k])
				}
			}
		}
		var n float64
		for c := 0; c < C; c++ {
			n += float64(q[c*P+p] * q[c*P+p])
		}
		n = math.Sqrt(n)
		for c := 0; c < C; c++ {
			q[c*P+p] /= n
		}
	}
	return q
}

// gramInt writes ÛᵀÛ for Û = V − h (exact integers, as float64) into g.
func gramInt(v []uint32, h int64, C, P int, g []float64) {
	for r := 0; r < P; r++ {
		for s := r; s < P; s++ {
			var acc int64
			for c := 0; c < C; c++ {
				acc += (int64(v[c*P+r]) - h) * (int64(v[c*P+s]) - h)
			}
			g[r*P+s] = float64(acc)
			g[s*P+r] = float64(acc)
		}
	}
}

// condTol is the conditioning rule: a Gram matrix whose Cholesky pivot falls
// below condTol times its largest diagonal entry (condition number beyond
// about 1e10) is rejected, and its seed is never chosen. The rule is applied
// to the exact integer Gram matrix in float64, so it is deterministic.
const condTol = 1e-10

// cholesky factors the P×P SPD matrix g in place into its lower triangle
// (g = LLᵀ). It reports false when the conditioning rule rejects g.
func cholesky(g []float64, P int) bool {
	maxd := 0.0
	for i := 0; i < P; i++ {
		maxd = math.Max(maxd, g[i*P+i])
	}
	if !(maxd > 0) {
		return false
	}
	for j := 0; j < P; j++ {
		d := g[j*P+j]
		for k := 0; k < j; k++ {
			d -= float64(g[j*P+k] * g[j*P+k])
		}
		if !(d > condTol*maxd) {
			return false
		}
		d = math.Sqrt(d)
		g[j*P+j] = d
		for i := j + 1; i < P; i++ {
			s := g[i*P+j]
			for k := 0; k < j; k++ {
				s -= float64(g[i*P+k] * g[j*P+k])
			}
			g[i*P+j] = s / d
		}
	}
	return true
}

// cholSolve solves LLᵀx = b in place (b becomes x).
func cholSolve(l []float64, P int, b []float64) {
	for i := 0; i < P; i++ {
		s := b[i]
		for k := 0; k < i; k++ {
			s -= float64(l[i*P+k] * b[k])
		}
		b[i] = s / l[i*P+i]
	}
	for i := P - 1; i >= 0; i-- {
		s := b[i]
		for k := i + 1; k < P; k++ {
			s -= float64(l[k*P+i] * b[k])
		}
		b[i] = s / l[i*P+i]
	}
}

// invertCholesky writes (LLᵀ)⁻¹ into a, column by column.
func invertCholesky(l, a []float64, P int) {
	var col [MaxLatentDim]float64
	for j := 0; j < P; j++ {
		for i := range P {
			col[i] = 0
		}
		col[j] = 1
		cholSolve(l[:], P, col[:])
		for i := 0; i < P; i++ {
			a[i*P+j] = col[i]
		}
	}
}
