package encoder

import (
	"math"
	"sort"
)

// lanes is how many blocks a search tile carries: the kernels keep one block
// per SIMD lane and walk the seeds once for all of them.
const lanes = 8

// tile is the pruning kernels' input: up to 8 blocks, transposed so that
// w[c*lanes+l] is weight c of lane l, plus per-lane pruning thresholds.
//
// A seed at position i is a candidate for lane l when
//
//	q̃ + m_i·n2[l] ≥ thr[l]
//
// where q̃ is the float32 value of bᵀG⁻¹b (b = U(s)ᵀw), m_i the seed's
// margin and thr = ‖w‖² − best − slack. Seeds that are not candidates have
// an unquantized least-squares error above the best exact error so far, so
// they cannot win (see docs/PERFORMANCE.md).
type tile struct {
	w   [MaxBlockSize * lanes]float32
	thr [lanes]float32
	n2  [lanes]float32
}

// scanGeneric is the portable pruning kernel: it returns the first position
// in [from, to) with a candidate lane and the lane mask, or (to, 0).
func scanGeneric(bs *basis, t *tile, from, to int) (int, uint32) {
	C, P, S := bs.C, bs.P, bs.stride
	u := bs.u
	// win[k] holds d_{i+1+k} for the seed at position i, where
	// d_j = Σ_c u[j+c·P]·w_c: the sliding-window form of b = U(s)ᵀw.
	var win [MaxLatentDim][lanes]float32
	dot := func(j int, d *[lanes]float32) {
		*d = [lanes]float32{}
		for c := 0; c < C; c++ {
			x := u[j+c*P]
			wc := t.w[c*lanes : c*lanes+lanes]
			for l := 0; l < lanes; l++ {
				d[l] += x * wc[l]
			}
		}
	}
	for k := 0; k < P-1; k++ {
		dot(from+1+k, &win[k])
	}
	for i := from; i < to; i++ {
		dot(i+P, &win[P-1])
		cf := bs.coef[i*S : i*S+S]
		var mask uint32
		for l := 0; l < lanes; l++ {
			var q float32
			k := 0
			for r := 0; r < P; r++ {
				br := win[r][l]
				var acc float32
				for s := r; s < P; s++ {
					acc += cf[k] * win[s][l]
					k++
				}
				q += br * acc
			}
			if q+cf[k]*t.n2[l] >= t.thr[l] {
				mask |= 1 << l
			}
		}
		if mask != 0 {
			return i, mask
		}
		copy(win[:P-1], win[1:P])
	}
	return to, 0
}

// pruneThreshold is ‖w‖² − best − slack rounded down to float32. The slack
// (1e-6·‖w‖²) covers the exact error's own float32 rounding of ŵ, which can
// put it a hair below the least-squares bound.
func pruneThreshold(n2, best float64) float32 {
	if math.IsInf(best, 1) {
		return float32(math.Inf(-1))
	}
	t := n2 - best - 1e-6*n2
	f := float32(t)
	if float64(f) > t {
		f = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	return f
}

// roundUp32 is x rounded up to float32.
func roundUp32(x float64) float32 {
	f := float32(x)
	if float64(f) < x {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// better orders (error, seed) pairs: lower error, then lower seed.
func better(err float64, seed uint32, bestErr float64, bestSeed uint32) bool {
	return err < bestErr || (err == bestErr && seed < bestSeed)
}

// searcher runs the pruned search for one worker.
type searcher struct {
	qz   *quantizer
	scan func(bs *basis, t *tile, from, to int) (int, uint32)
	ill  func(bs *basis, t *tile, from, to int) (int, uint32)
	t    tile
	// candidates counts kernel hits and full the full evaluations (for
	// benchmarks and tests).
	candidates, full int
	def              [lanes][]deferred
}

// searchTile codes up to 8 blocks; ws[l] is block l (length C, float64 of
// the float32 input), out[l] receives its code.
func (s *searcher) searchTile(ws [][]float64, out []code) {
	qz := s.qz
	bs := qz.bs
	C := bs.C
	var bestErr [lanes]float64
	var n2, sc [lanes]float64
	active := uint32(0)
	for l := 0; l < lanes; l++ {
		s.t.thr[l] = float32(math.Inf(1)) // inactive lanes never match
		s.t.n2[l] = 0
		for c := 0; c < C; c++ {
			s.t.w[c*lanes+l] = 0
		}
		if l >= len(ws) {
			continue
		}
		out[l] = code{}
		w := ws[l]
		var sum, maxAbs float64
		for c := 0; c < C; c++ {
			sum += float64(w[c] * w[c])
			maxAbs = math.Max(maxAbs, math.Abs(w[c]))
		}
		// The kernels see the block scaled by a power of two so that its
		// largest weight is in [0.5, 1): exact, and no float32 overflow or
		// underflow in the bound whatever the magnitude.
		_, k := math.Frexp(maxAbs)
		sc[l] = math.Ldexp(1, -k)
		for c := 0; c < C; c++ {
			s.t.w[c*lanes+l] = float32(w[c] * sc[l])
		}
		n2[l] = sum
		// Every seed can code the block as zero, exactly ‖w‖² of error, and
		// those ties go to the lowest seed: that is the starting point.
		out[l] = code{seed: bs.lowest, e: int8(qz.p.emin())}
		bestErr[l] = sum
		if s.tiny(w, sum, &out[l], &bestErr[l]) {
			continue
		}
		s.t.n2[l] = roundUp32(sum * sc[l] * sc[l])
		s.t.thr[l] = float32(math.Inf(-1))
		active |= 1 << l
	}
	if active == 0 {
		return
	}
	// Candidates get a cheap look first (quick): its upper bound tightens
	// the lane's threshold at once, and the full evaluation waits until the
	// scan is over, when only candidates whose least-squares error is
	// below the final upper bound can still win. That skips most of the
	// early "records" a sequential scan runs into.
	var upper [lanes]float64
	for l := range upper {
		upper[l] = math.Inf(1)
		s.def[l] = s.def[l][:0]
	}
	for pos := 0; pos < bs.L; {
		p, mask := s.scan(bs, &s.t, pos, bs.L)
		if mask == 0 {
			break
		}
		for l := 0; l < lanes; l++ {
			if mask&(1<<l) == 0 {
				continue
			}
			s.candidates++
			ls, ub, ok := qz.quick(ws[l], p, n2[l])
			if !ok || ls > upper[l]+1e-6*n2[l] {
				continue
			}
			s.def[l] = append(s.def[l], deferred{pos: int32(p), ls: ls})
			if ub < upper[l] {
				upper[l] = ub
				s2 := sc[l] * sc[l]
				s.t.thr[l] = pruneThreshold(n2[l]*s2, ub*s2)
			}
		}
		pos = p + 1
	}
	s.searchIll(ws, out, active, &bestErr, &upper, &n2, &sc)
	var c code
	for l := 0; l < lanes; l++ {
		if active&(1<<l) == 0 {
			continue
		}
		for _, d := range s.def[l] {
			if d.ls > upper[l]+1e-6*n2[l] {
				continue
			}
			s.full++
			e := qz.evalBound(ws[l], int(d.pos), &c, math.Min(bestErr[l], upper[l]), n2[l])
			if !math.IsInf(e, 1) && better(e, c.seed, bestErr[l], out[l].seed) {
				bestErr[l] = e
				out[l] = c
			}
		}
	}
}

// tinyMax is how many seeds tiny will evaluate one by one before leaving
// the block to the scan: a full evaluation costs about as much as scanning
// 1000 seeds for one block, so past L/1024 (+16) the scan is cheaper.
func (bs *basis) tinyMax() int { return 16 + bs.L/1024 }

// tiny handles blocks far below the tensor's exponent window. A nonzero
// code has ‖ŵ‖ ≥ σ(U)·2^{emin+bias}; when that exceeds 2‖w‖ (with 1 %
// margin) its error exceeds ‖w‖², so the seed cannot beat the zero code.
// Seeds are sorted by their σ lower bound: when few (≤ tinyMax) pass, tiny
// evaluates just those and reports true; otherwise the scan takes the
// block. Without this, such blocks make every seed a scan candidate.
func (s *searcher) tiny(w []float64, n2 float64, out *code, bestErr *float64) bool {
	qz := s.qz
	bs := qz.bs
	floor := math.Ldexp(1, qz.p.emin()+qz.bias)
	tau := 2 * math.Sqrt(n2) / floor * 1.01
	k := sort.Search(len(bs.bySigma), func(i int) bool { return bs.sigmaLB[bs.bySigma[i]] >= tau })
	if k > bs.tinyMax() {
		return false
	}
	var c code
	for _, pos := range bs.bySigma[:k] {
		s.full++
		e := qz.evalBound(w, int(pos), &c, *bestErr, n2)
		if !math.IsInf(e, 1) && better(e, c.seed, *bestErr, out.seed) {
			*bestErr, *out = e, c
		}
	}
	return true
}

// deferred is a candidate waiting for its full evaluation.
type deferred struct {
	pos int32
	ls  float64
}

// searchIll covers the near-singular seeds the main kernels skip: a float32
// least-squares bound through each seed's orthonormal basis (uniform, tiny
// margin), then the exact evaluation for the seeds it cannot rule out.
func (s *searcher) searchIll(ws [][]float64, out []code, active uint32, bestErr, upper, n2, sc *[lanes]float64) {
	qz := s.qz
	bs := qz.bs
	var c code
	for j := 0; j < len(bs.ill); {
		p, mask := s.ill(bs, &s.t, j, len(bs.ill))
		if mask == 0 {
			break
		}
		pos := int(bs.ill[p])
		for l := 0; l < lanes; l++ {
			if mask&(1<<l) == 0 {
				continue
			}
			s.candidates++
			s.full++
			e := qz.evalBound(ws[l], pos, &c, math.Min(bestErr[l], upper[l]), n2[l])
			if !math.IsInf(e, 1) && better(e, c.seed, bestErr[l], out[l].seed) {
				bestErr[l] = e
				out[l] = c
			}
			if e < upper[l] {
				upper[l] = e
				s2 := sc[l] * sc[l]
				s.t.thr[l] = pruneThreshold(n2[l]*s2, e*s2)
			}
		}
		j = p + 1
	}
}

// illGeneric is the portable twin of the illAVX2 kernels.
func illGeneric(bs *basis, t *tile, from, to int) (int, uint32) {
	C, P := bs.C, bs.P
	for j := from; j < to; j++ {
		q := bs.illQ32[j*C*P : (j+1)*C*P]
		var mask uint32
		for l := 0; l < lanes; l++ {
			var proj float32
			for p := 0; p < P; p++ {
				var d float32
				for c := 0; c < C; c++ {
					d += q[c*P+p] * t.w[c*lanes+l]
				}
				proj += d * d
			}
			if proj+bs.illM*t.n2[l] >= t.thr[l] {
				mask |= 1 << l
			}
		}
		if mask != 0 {
			return j, mask
		}
	}
	return to, 0
}

// bruteForce is the obviously-correct reference: every seed, exact error,
// lowest seed on ties. Tests compare the pruned search against it.
func (qz *quantizer) bruteForce(w []float64) (code, float64) {
	var best, c code
	bestErr := math.Inf(1)
	for pos := 0; pos < qz.bs.L; pos++ {
		e := qz.eval(w, pos, &c)
		if better(e, c.seed, bestErr, best.seed) {
			bestErr, best = e, c
		}
	}
	return best, bestErr
}
