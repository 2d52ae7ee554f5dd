package encoder

import (
	"math"
	"sync"
	"unsafe"

	"github.com/seedlm/seedlm/internal/lfsr"
)

// The pruning pass, in two steps per chunk of seeds (see docs/PERFORMANCE.md):
//
//  1. Projections. A tile's blocks enter the kernels as integers: block w is
//     scaled by a power of two α and rounded, w̃ = round(α·w), with
//     Σ|w̃_c| ≤ 65535 and |w̃_c| ≤ 32767. The centered basis entries
//     û = V − 2^{K−1} fit int16 for K ≤ 16, so every projection
//     d_j = Σ_c û[j + c·P]·w̃_c is an exact int32 (|d_j| ≤ 32767·65535 < 2^31),
//     computed with int16 multiply-adds (VPMADDWD) and rounded once to
//     float32. For K > 16 the table holds ⌊û/2^s⌋ (s = K−16, so it fits
//     int16); the projection of that is exact, and the truncated part,
//     0 ≤ û − 2^s⌊û/2^s⌋ < 2^s, adds an error below (2^s−1)·√C·‖w̃‖ that
//     the margin covers (projError). The scale 2^s is folded into the
//     bound's coefficients (exact).
//  2. Bounds. Seed i has b = (d_{i+1} … d_{i+P}) (the sliding window: its
//     basis columns are every P-th state from i+1), and the float32 bound
//     q̃ = bᵀG⁻¹b is compared with its σ class's threshold for the lane.
//
// Rounding w to w̃ moves each projection norm by at most ε = ‖w̃ − α·w‖
// (projections are non-expansive), so a seed that can reach an exact error
// ≤ best (its projection energy π(w) ≥ T = ‖w‖² − best − slack) has
// π(w̃) ≥ (α√T − ε)², and the per-lane threshold is that, rounded down. No
// float32 subnormal ever reaches the kernels, whatever the weights.

// decTable is the centered cycle split by residue mod P: row r holds
// û[r + k·P] for k = 0, 1, … (the column of every seed whose first state
// is at position r + k·P is the row's run from k, one entry per weight),
// shifted right by shift = max(0, K−16) bits.
type decTable struct {
	K, P   int
	rowLen int     // int16 entries per row
	tab    []int16 // P rows
	shift  int
}

type decTableKey struct{ K, P int }

var (
	decTableMu    sync.Mutex
	decTableCache = map[decTableKey]*decTable{}
)

// exactK is the widest seed whose centered states fit int16.
const exactK = 16

func decTableFor(K, P int) (*decTable, error) {
	decTableMu.Lock()
	defer decTableMu.Unlock()
	if d, ok := decTableCache[decTableKey{K, P}]; ok {
		return d, nil
	}
	cyc, err := lfsr.CycleFor(K)
	if err != nil {
		return nil, err
	}
	L := cyc.Reg.Period()
	h := int64(1) << (K - 1)
	// Positions up to L + P (the last seed's window) plus a chunk's
	// overshoot; each row is read up to MaxBlockSize+2 entries further.
	rowLen := (L+P)/P + 2 + MaxBlockSize + 2
	d := &decTable{K: K, P: P, rowLen: rowLen, shift: max(0, K-exactK)}
	d.tab = make([]int16, P*rowLen)
	for r := 0; r < P; r++ {
		row := d.tab[r*rowLen : (r+1)*rowLen]
		j := r
		for k := range row {
			row[k] = int16((int64(cyc.State[j%L]) - h) >> d.shift)
			j += P
		}
	}
	decTableCache[decTableKey{K, P}] = d
	return d, nil
}

// projError returns (κ, λ) with |d̃_j − d_j| ≤ (κ·‖û_j‖ + λ)·‖w̃‖ for the
// float32 projections d̃ of column û_j (C entries, integer units): one
// rounding of an exact int32 for K ≤ 16; for K > 16 also the truncated
// part, at most (2^s − 1)·Σ|w̃_c| ≤ (2^s − 1)·√C·‖w̃‖, and the rounding of
// the truncated sum (κ slightly above u covers both roundings' products).
func projError(K, C int) (kappa, lambda float64) {
	if K <= exactK {
		return u32, 0
	}
	s := float64(int64(1)<<(K-exactK) - 1)
	return 1.01 * u32, 1.01 * s * math.Sqrt(float64(C))
}

// tile is the kernels' input: up to 16 blocks as integers, pairs of weights
// interleaved by lane, plus per-lane thresholds.
type tile struct {
	// w16[m·8 + l] holds lane l's weights 2m (low half) and 2m+1 (high
	// half) as int16s; an odd C is padded with a zero weight.
	w16 [MaxBlockSize / 2 * lanes]int32
	// wf[c·8 + l] is lane l's w̃_c as float32 (exact), for the ill kernels.
	wf [MaxBlockSize * lanes]float32
	// thr[c] holds the lanes' thresholds for seeds of σ class c, and thrK
	// the same with the class's float32 margin taken off (the quad
	// kernels' thresholds; the ill kernels add their own margin). Both are
	// 64-byte aligned (newTile): the kernels load a row per seed.
	thr, thrK *[classes][lanes]float32
	// n2 is ‖w̃‖² rounded up.
	n2 [lanes]float32
	// alpha is the lane's scale α (a power of two) and eps an upper bound
	// on ‖w̃ − α·w‖.
	alpha, eps [lanes]float64
	np         int // weight pairs: ⌈C/2⌉
	// floor is 2^{emin+bias}·(1 − 1e-9): the smallest exponent step of a
	// nonzero code, in U units, rounded down.
	floor float64
	// classSigma and classMargin are the basis's σ class edges and margins.
	classSigma, classMargin *[classes]float64
	// a[c] is classSigma[c]·floor, a2[c] its square: class c's smallest
	// nonzero code norm (U units) and its energy.
	a, a2 [classes]float64
	// mn[l][c] is classMargin[c]·n2[l] rounded up: what thrK takes off.
	mn [lanes][classes]float32
	// scanOnly makes setThreshold leave thr alone: during the pair scan
	// only thrK is read, and half the threshold stores (a cache line per
	// class) are saved; syncIll brings thr up to date for the ill kernels.
	scanOnly bool
}

// newTile returns a tile with its threshold tables allocated.
func newTile() *tile {
	t := &tile{}
	m := aligned64(2 * classes * lanes)
	t.thr = (*[classes][lanes]float32)(unsafe.Pointer(&m[0]))
	t.thrK = (*[classes][lanes]float32)(unsafe.Pointer(&m[classes*lanes]))
	return t
}

// aligned64 returns n float32s starting on a 64-byte boundary (a cache
// line), so that no 32-byte load the kernels make crosses one.
func aligned64(n int) []float32 {
	b := make([]float32, n+16)
	off := int((64 - uintptr(unsafe.Pointer(&b[0]))%64) % 64 / 4)
	return b[off : off+n : off+n]
}

// setLane loads block w (float64 of the float32 input) into lane l.
func (t *tile) setLane(l int, w []float64) {
	C := len(w)
	var sumAbs, maxAbs float64
	for _, x := range w {
		a := math.Abs(x)
		sumAbs += a
		maxAbs = math.Max(maxAbs, a)
	}
	// α = 2^s, the largest power of two with α·Σ|w| ≤ 65535 − C (rounding
	// adds at most C/2) and α·max|w| ≤ 32766. Exact in float64 for every
	// finite float32 block: α·w_c stays far from float64's limits.
	s := min(floorLog2((65535-float64(C))/sumAbs), floorLog2(32766/maxAbs))
	alpha := math.Ldexp(1, s)
	var e2 float64
	var n2 int64
	var wi [MaxBlockSize + 1]int64
	for c, x := range w {
		ax := float64(alpha * x) // exact (α a power of two); float64(…): never fused into r − α·x
		r := math.Round(ax)
		d := r - ax // exact: both are multiples of ax's ulp, |d| ≤ 1/2
		e2 += float64(d * d)
		wi[c] = int64(r)
		n2 += wi[c] * wi[c]
		t.wf[c*lanes+l] = float32(r)
	}
	for m := 0; m < t.np; m++ {
		t.w16[m*lanes+l] = int32(uint32(uint16(int16(wi[2*m]))) | uint32(uint16(int16(wi[2*m+1])))<<16)
	}
	t.alpha[l] = alpha
	t.eps[l] = math.Sqrt(e2) * (1 + 1e-12)
	t.n2[l] = roundUp32(float64(n2))
	if t.classMargin != nil {
		for c, m := range t.classMargin {
			t.mn[l][c] = roundUp32(m * float64(t.n2[l]) * (1 + 1e-12))
		}
	}
}

// clearLane makes lane l inert: zero weights, a threshold no bound reaches.
func (t *tile) clearLane(l int, C int) {
	for m := 0; m < t.np; m++ {
		t.w16[m*lanes+l] = 0
	}
	for c := 0; c < C; c++ {
		t.wf[c*lanes+l] = 0
	}
	for c := range t.thr {
		t.thr[c][l] = float32(math.Inf(1))
		t.thrK[c][l] = float32(math.Inf(1))
	}
	t.n2[l] = 0
	t.alpha[l], t.eps[l] = 1, 0
}

// floorLog2 is ⌊log2 x⌋ for finite x > 0.
func floorLog2(x float64) int {
	_, e := math.Frexp(x)
	return e - 1
}

// setThreshold sets lane l's kernel thresholds for a block with ‖w‖² = n2
// whose best exact error so far is best.
//
// A seed can reach an exact error ≤ best only if its projection energy
// π = ‖P_U w‖² satisfies h(√π) ≥ Δ = n2 − best − slack, where
// h(r) = r² − (a − r)₊² and a = σ·2^{emin+bias} (σ ≤ σmin(U), the seed's
// class edge): a nonzero code is U·x with ‖x‖ ≥ 2^{emin+bias}, so its
// error is at least ‖w‖² − π + σ²(‖x‖ − ‖t‖)₊² with ‖t‖ ≤ √π/σ, t the
// least-squares coefficients. For a = 0 this is the least-squares bound
// π ≥ Δ; a > 0 matters for blocks near the bottom of the exponent window,
// where quantization, not the fit, decides the error (Δ ≈ 0 there, and
// every seed would otherwise be a candidate). h increases, so the test is
// √π ≥ r(Δ, a) = max(√Δ₊, min((Δ + a²)/(2a), a)) (no constraint when
// Δ ≤ −a²), and on the kernels' w̃: √π(w̃) ≥ α·r − ε. The slack
// (1e-6·‖w‖²) covers the exact error's own float32 rounding of ŵ.
func (t *tile) setThreshold(l int, n2, best float64) {
	// The zero code (error n2) is always available: best never exceeds it.
	D := n2 - math.Min(best, n2) - float64(1e-6*n2)
	inf := float32(math.Inf(-1))
	alpha, eps := t.alpha[l], t.eps[l]
	mn := &t.mn[l]
	c := 0
	if D > 0 {
		// The classes with a² ≤ D (a prefix: edges increase) share the
		// least-squares threshold.
		var lsT float32 = inf
		if R := float64(alpha*math.Sqrt(D)*(1-1e-12)) - eps; R > 0 {
			lsT = roundDown32(R * R * (1 - 1e-12))
		}
		n := classes
		for n > 0 && t.a2[n-1] > D {
			n--
		}
		for ; c < n; c++ {
			if !t.scanOnly {
				t.thr[c][l] = lsT
			}
			t.thrK[c][l] = subDown32(lsT, mn[c])
		}
	}
	for ; c < classes; c++ {
		a := t.a[c]
		T := inf
		if a > 0 && D > -t.a2[c] {
			r := math.Max(math.Sqrt(math.Max(D, 0)), math.Min((D+t.a2[c])/(2*a), a))
			if R := float64(alpha*r*(1-1e-12)) - eps; R > 0 {
				T = roundDown32(R * R * (1 - 1e-12))
			}
		}
		if !t.scanOnly {
			t.thr[c][l] = T
		}
		if T == inf {
			t.thrK[c][l] = inf
		} else {
			t.thrK[c][l] = subDown32(T, mn[c])
		}
	}
}

// subDown32 is x − y (x, y ≥ 0 or x = −∞) rounded down to float32, and
// never subnormal: a result below the smallest normal float32 in
// magnitude becomes −2^−126 (still below x − y).
func subDown32(x, y float32) float32 {
	// The float64 difference is exact unless x and y are 2^29 apart, and
	// then off by a relative 2^−53, far inside the margins' factor 2.
	// Taking 2^−23 of it off before rounding to nearest rounds down (by
	// an ulp at most more than needed) without a branch: the thresholds
	// are set tens of times per block.
	// |v| by a compare rather than math.Abs, whose bit operations move
	// the value to an integer register and back: v ≥ 0 almost always, so
	// the branch predicts well.
	v := float64(x) - float64(y)
	a := v
	if a < 0 {
		a = -a
	}
	if a < 0x1p-125 {
		return -0x1p-126
	}
	return float32(v - float64(a*0x1p-23))
}

// roundUp32 is x rounded up to float32.
func roundUp32(x float64) float32 {
	f := float32(x)
	if float64(f) < x {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// roundDown32 is x rounded down to float32.
func roundDown32(x float64) float32 {
	f := float32(x)
	if float64(f) > x {
		f = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	return f
}

// chunkSeeds is how many seeds one projection pass covers: its 32 KB of
// projections (16 lanes) stay in L1 or L2 for the bound pass; 128 and 256
// measured no faster.
const chunkSeeds = 512

// projBufLen is the projection buffer's length in float32s: a chunk's
// windows plus the rounding of its ends to whole rows.
const projBufLen = (chunkSeeds + 3*MaxLatentDim) * lanes

// kernels is one implementation of the two passes (and the ill bound).
type kernels struct {
	// proj writes d_{r+k·P} for k ∈ [k0, k0+nk), r < P, at out[((k−k0)·P+r)·8 …].
	proj func(d *decTable, t *tile, k0, nk int, out []float32)
	// pair returns the first of n pairs of seeds (coefficients from coef,
	// σ classes from cls, projections from d: d[0…] is the first pair's
	// e₁) where some lane's bound reaches its threshold, with the lanes
	// of the pair's first seed in mask bits 0–7 and of its second in bits
	// 8–15; (n, 0) if none.
	pair func(P int, d, coef []float32, cls []uint8, t *tile, n int) (int, uint32)
	ill  func(bs *basis, t *tile, from, to int) (int, uint32)
	// qmax merges, for n seeds, each lane's largest bound and the first
	// position t0+i reaching it into best, arg.
	qmax func(P int, d, coef []float32, t *tile, n, t0 int, best *[lanes]float32, arg *[lanes]int32)
}

// scan returns the first position in [from, to) (both even: whole pairs)
// of a pair with a candidate lane and the lane masks (see kernels.pair),
// or (to, 0). Projections are computed a chunk at a time and kept while
// the tile stays (s.c0, s.c1: the seeds they cover).
func (s *searcher) scan(from, to int) (int, uint32) {
	bs := s.qz.bs
	P, S := bs.P, bs.pstride
	for from < to {
		end := min(to, s.project(from))
		off := (from + 1 - s.kA*P) * lanes
		idx, mask := s.k.pair(P, s.buf[off:], bs.pcoef[from/2*S:], bs.pclass[from/2:], s.t, (end-from+1)/2)
		if mask != 0 {
			return from + 2*idx, mask
		}
		from = end
	}
	return to, 0
}

// projGeneric is the portable twin of the proj kernels (bit-identical: the
// sums are exact integers, converted to float32 once).
func projGeneric(d *decTable, t *tile, k0, nk int, out []float32) {
	P, np := d.P, t.np
	for r := 0; r < P; r++ {
		row := d.tab[r*d.rowLen:]
		for k := 0; k < nk; k++ {
			u := row[k0+k:]
			o := out[(k*P+r)*lanes : (k*P+r+1)*lanes]
			for l := 0; l < lanes; l++ {
				var sum int32
				for m := 0; m < np; m++ {
					x := uint32(t.w16[m*lanes+l])
					w0, w1 := int32(int16(x)), int32(int16(x>>16))
					sum += int32(u[2*m])*w0 + int32(u[2*m+1])*w1
				}
				o[l] = float32(sum)
			}
		}
	}
}

// pairGeneric is the portable twin of the pair kernels, written with
// explicit float32 roundings (no fused multiply-adds; the margins cover
// both).
func pairGeneric(P int, d, coef []float32, cls []uint8, t *tile, n int) (int, uint32) {
	S := pairStride(P)
	q := P - 1
	for i := 0; i < n; i++ {
		cf := coef[i*S : i*S+S]
		thr := &t.thrK[cls[i]]
		win := d[2*i*lanes:]
		var mask uint32
		for l := 0; l < lanes; l++ {
			r := thr[l]
			k := 0
			for a := 1; a <= q; a++ {
				var z float32
				for j := 1; j <= a; j++ {
					z += float32(cf[k] * win[j*lanes+l])
					k++
				}
				r -= float32(z * z)
			}
			for side, e := range [2]int{0, P} {
				row := cf[q*P/2+side*P:]
				y := float32(row[0] * win[e*lanes+l])
				for j := 1; j <= q; j++ {
					y += float32(row[j] * win[j*lanes+l])
				}
				if r-float32(y*y) < 0 {
					mask |= 1 << (lanes*side + l)
				}
			}
		}
		if mask != 0 {
			return i, mask
		}
	}
	return n, 0
}

// illGeneric is the portable twin of the illAVX2 kernels.
func illGeneric(bs *basis, t *tile, from, to int) (int, uint32) {
	C, P := bs.C, bs.P
	for j := from; j < to; j++ {
		q := bs.illQ32[j*C*P : (j+1)*C*P]
		thr := &t.thr[bs.illClass[j]]
		var mask uint32
		for l := 0; l < lanes; l++ {
			var proj float32
			for p := 0; p < P; p++ {
				var d float32
				for c := 0; c < C; c++ {
					d += float32(q[c*P+p] * t.wf[c*lanes+l])
				}
				proj += float32(d * d)
			}
			if proj+float32(bs.illM*t.n2[l]) >= thr[l] {
				mask |= 1 << l
			}
		}
		if mask != 0 {
			return j, mask
		}
	}
	return to, 0
}

// quadMaxGeneric is the portable twin of the quadMax kernels.
func quadMaxGeneric(P int, d, coef []float32, t *tile, n, t0 int, best *[lanes]float32, arg *[lanes]int32) {
	S := P * (P + 1) / 2
	for i := 0; i < n; i++ {
		cf := coef[i*S : i*S+S]
		win := d[i*lanes:]
		for l := 0; l < lanes; l++ {
			var q float32
			k := 0
			for r := 0; r < P; r++ {
				var acc float32
				for s := r; s < P; s++ {
					acc += float32(cf[k] * win[s*lanes+l])
					k++
				}
				q += float32(win[r*lanes+l] * acc)
			}
			if q > best[l] {
				best[l], arg[l] = q, int32(t0+i)
			}
		}
	}
}

var genericKernels = kernels{proj: projGeneric, pair: pairGeneric, ill: illGeneric, qmax: quadMaxGeneric}

// warmSeeds is how many seeds the warm start looks at: the lane's best
// bound among them gives a first upper bound, so the scan starts with a
// useful threshold instead of stopping at every early record.
const warmSeeds = chunkSeeds

// project makes sure the buffer holds the windows of seeds [from, …) and
// returns the end of the seeds it covers.
func (s *searcher) project(from int) int {
	bs := s.qz.bs
	if from < s.c0 || from >= s.c1 {
		P := bs.P
		// The last pair's second seed (position L) is past the cycle; its
		// coefficients are zero, but its projections are read.
		s.c0, s.c1 = from, min(2*len(bs.pclass), from+chunkSeeds)
		// Seeds [c0, c1) read positions c0+1 … c1−1+P.
		s.kA = (from + 1) / P
		kB := (s.c1-1+P)/P + 1
		s.k.proj(bs.dec, s.t, s.kA, kB-s.kA, s.buf)
	}
	return s.c1
}

// warm returns, per lane, the position among the first warmSeeds seeds
// with the largest bound.
func (s *searcher) warm() [lanes]int32 {
	bs := s.qz.bs
	P, S := bs.P, bs.stride
	n := min(warmSeeds, bs.L)
	var best [lanes]float32
	var arg [lanes]int32
	for l := range best {
		best[l] = float32(math.Inf(-1))
	}
	for from := 0; from < n; {
		end := min(n, s.project(from))
		off := (from + 1 - s.kA*P) * lanes
		s.k.qmax(P, s.buf[off:], bs.warmCoef[from*S:], s.t, end-from, from, &best, &arg)
		from = end
	}
	return arg
}
