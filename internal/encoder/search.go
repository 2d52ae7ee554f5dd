package encoder

import (
	"math"
	"sort"
)

// lanes is how many blocks a search tile carries: the kernels keep one block
// per SIMD lane (two 8-lane AVX2 halves) and walk the seeds once for all of
// them, so every table load serves 16 blocks.
const lanes = 16

// better orders (error, seed) pairs: lower error, then lower seed.
func better(err float64, seed uint32, bestErr float64, bestSeed uint32) bool {
	return err < bestErr || (err == bestErr && seed < bestSeed)
}

// searcher runs the pruned search for one worker.
type searcher struct {
	qz *quantizer
	k  kernels
	t  *tile
	// buf holds the projections of seeds [c0, c1), from row kA on
	// (64-byte aligned).
	buf        []float32
	c0, c1, kA int
	// candidates counts kernel hits and full the full evaluations (for
	// benchmarks and tests).
	candidates, full int
	touched          uint64 // keeps touch's loads
	def              [lanes][]deferred
	// exact makes every candidate's first look use quick (the cached
	// inverse and cycle states) instead of quickPair; searchTile sets it to
	// search again the rare block whose quickPair bounds did not hold.
	exact bool
	// redone counts the blocks searched again (for tests).
	redone int
}

// newSearcher returns a searcher for qz, its tile's per-quantizer
// constants (pairs, exponent floor, σ classes) set once here.
func newSearcher(qz *quantizer, k Kernel) *searcher {
	s := &searcher{qz: qz, k: kernelsFor(k, qz.bs), t: newTile(), buf: aligned64(projBufLen)}
	t := s.t
	t.np = (qz.bs.C + 1) / 2
	t.floor = math.Ldexp(1, qz.p.emin()+qz.bias) * (1 - 1e-9)
	t.classSigma = &qz.bs.classSigma
	t.classMargin = &qz.bs.classMargin
	for c, x := range qz.bs.classSigma {
		a := x * t.floor
		t.a[c], t.a2[c] = a, a*a
	}
	return s
}

// startTile prepares the tile for new blocks (the projections are stale).
func (s *searcher) startTile() {
	s.c0, s.c1 = 0, 0
	s.t.scanOnly = true
}

// searchTile codes up to 16 blocks; ws[l] is block l (length C, float64 of
// the float32 input), out[l] receives its code.
func (s *searcher) searchTile(ws [][]float64, out []code) {
	qz := s.qz
	bs := qz.bs
	C := bs.C
	s.startTile()
	var bestErr, n2 [lanes]float64
	active := uint32(0)
	for l := 0; l < lanes; l++ {
		s.t.clearLane(l, C)
		if l >= len(ws) {
			continue
		}
		w := ws[l]
		var sum float64
		for c := 0; c < C; c++ {
			sum += float64(w[c] * w[c])
		}
		n2[l] = sum
		// Every seed can code the block as zero, exactly ‖w‖² of error, and
		// those ties go to the lowest seed: that is the starting point.
		out[l] = code{seed: bs.lowest, e: int8(qz.p.emin())}
		bestErr[l] = sum
		if s.tiny(w, sum, &out[l], &bestErr[l]) {
			continue
		}
		s.t.setLane(l, w)
		s.t.setThreshold(l, sum, sum)
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
	var hits [lanes]int
	var c code
	// check marks the lanes that pruned with an upper bound from quickPair.
	var check uint32
	look := func(l, p int) {
		s.candidates++
		hits[l]++
		if hits[l] > eagerAfter {
			// A lane with this many candidates is one whose quick upper
			// bound is poor (quantization, not the fit, decides its error):
			// evaluate at once, so the threshold follows the true best.
			s.evalLane(l, ws[l], p, n2[l], &bestErr[l], &upper[l], &out[l])
			return
		}
		var ls, ub float64
		ok, approx := false, false
		if !s.exact && !bs.isDead(p) {
			ls, ub, ok = qz.quickPair(ws[l], p, n2[l])
			approx = ok
		}
		if !ok {
			if ls, ub, ok = qz.quick(ws[l], p, n2[l]); !ok {
				return
			}
		}
		lb := s.lowerBound(p, n2[l], ls)
		if lb > upper[l]+float64(1e-6*n2[l]) {
			return
		}
		s.def[l] = append(s.def[l], deferred{pos: int32(p), ls: lb})
		if ub < upper[l] {
			upper[l] = ub
			s.t.setThreshold(l, n2[l], ub)
			if approx {
				check |= 1 << l
			}
		}
	}
	// Warm start: each lane's best bound among the first seeds sets its
	// first threshold; the scan then stops only at seeds that beat it.
	warm := s.warm()
	for l := 0; l < lanes; l++ {
		if active&(1<<l) != 0 {
			look(l, int(warm[l]))
		}
	}
	// The scan goes a pair of seeds at a time; the last pair's second seed
	// is past the cycle, and like the other dead seeds (excluded ones, and
	// the near-singular ones searchIll covers) its hits are dropped.
	end := 2 * len(bs.pclass)
	for pos := 0; pos < end; {
		p, mask := s.scan(pos, end)
		if mask == 0 {
			break
		}
		for side := 0; side < 2; side++ {
			j := p + side
			m := mask >> (lanes * side) & (1<<lanes - 1)
			if m == 0 || bs.isDead(j) {
				continue
			}
			for l := 0; l < lanes; l++ {
				if m&(1<<l) != 0 && int32(j) != warm[l] {
					look(l, j)
				}
			}
		}
		pos = p + 2
	}
	// The ill kernels read thr, which the scan left alone: bring the
	// active lanes' up to date (the same values setThreshold would have
	// left after the lane's last update, best = upper).
	s.t.scanOnly = false
	for l := 0; l < lanes; l++ {
		if active&(1<<l) != 0 {
			s.t.setThreshold(l, n2[l], upper[l])
		}
	}
	s.searchIll(ws, out, active, &bestErr, &upper, &n2)
	// The deferred candidates' tables are far out of cache by now: touch
	// the lines of those that may be evaluated, all lanes first, so the
	// misses overlap instead of coming one evaluation at a time.
	var touch uint64
	for l := 0; l < lanes; l++ {
		lim := math.Min(upper[l], bestErr[l]) + float64(1e-6*n2[l])
		for _, d := range s.def[l] {
			if d.ls <= lim {
				touch += bs.touch(int(d.pos))
			}
		}
	}
	s.touched += touch
	for l := 0; l < lanes; l++ {
		if active&(1<<l) == 0 {
			continue
		}
		// Most promising first: each exact error found rules out every
		// candidate whose least-squares error is above it (the exact error
		// is at least the least-squares one, up to the slack).
		def := s.def[l]
		sortDeferred(def)
		for _, d := range def {
			if d.ls > math.Min(upper[l], bestErr[l])+float64(1e-6*n2[l]) {
				break
			}
			s.full++
			e := qz.evalBound(ws[l], int(d.pos), &c, math.Min(bestErr[l], upper[l]), n2[l])
			if !math.IsInf(e, 1) && better(e, c.seed, bestErr[l], out[l].seed) {
				bestErr[l] = e
				out[l] = c
			}
		}
	}
	// Every pruning decision assumed the best exact error is at most the
	// lane's upper bound. With bounds from quick that always holds; with
	// quickPair's it is checked here (it fails only where t̃ rounds
	// differently from eval's t and eval's code is worse), and such blocks
	// are searched again with quick.
	for l := 0; l < lanes; l++ {
		if check&(1<<l) != 0 && bestErr[l] > upper[l] {
			s.redone++
			s.exact = true
			s.searchTile(ws[l:l+1], out[l:l+1])
			s.exact = false
		}
	}
}

// eagerAfter is how many candidates of one lane get the cheap look before
// the rest are evaluated at once (a Gaussian block makes about 13).
const eagerAfter = 32

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
	k := sort.Search(len(bs.sigma), func(i int) bool { return float64(bs.sigma[i]) >= tau })
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
	ls  float64 // lower bound on its exact error (lowerBound)
}

// sortDeferred orders d by ls, then pos (a total order: a lane defers a
// position once). Insertion sort: a lane defers at most eagerAfter
// candidates, about 13 on Gaussian blocks, where the generic sort's
// comparator calls cost more than the moves.
func sortDeferred(d []deferred) {
	for i := 1; i < len(d); i++ {
		x := d[i]
		j := i
		for ; j > 0 && (d[j-1].ls > x.ls || (d[j-1].ls == x.ls && d[j-1].pos > x.pos)); j-- {
			d[j] = d[j-1]
		}
		d[j] = x
	}
}

// lowerBound is a lower bound (up to the 1e-6·‖w‖² slack) on the exact
// error of any nonzero code of the seed at pos for a block with ‖w‖² = n2
// and least-squares error ls: ls + (a − √π)₊² with π = n2 − ls and
// a = σ·2^{emin+bias} (see tile.setThreshold), σ the seed's own σ bound.
func (s *searcher) lowerBound(pos int, n2, ls float64) float64 {
	bs := s.qz.bs
	r := math.Sqrt(math.Max(n2-ls, 0))
	if bs.maxSigma*s.t.floor <= r {
		return ls // no seed's smallest code reaches beyond the fit
	}
	// The seed's σ is below its class's upper edge (or any σ, for the top
	// class): when that already gives a ≤ √π, there is nothing to add.
	if c := int(bs.class[pos]); c+1 < classes && bs.classSigma[c+1]*s.t.floor <= r {
		return ls
	}
	if d := float64(bs.sigmaAt(pos)*s.t.floor) - r; d > 0 {
		return ls + float64(float64(d*d)*(1-1e-9))
	}
	return ls
}

// searchIll covers the near-singular seeds the main kernels skip: a float32
// least-squares bound through each seed's orthonormal basis (uniform, tiny
// margin), then the exact evaluation for the seeds it cannot rule out.
func (s *searcher) searchIll(ws [][]float64, out []code, active uint32, bestErr, upper, n2 *[lanes]float64) {
	bs := s.qz.bs
	for j := 0; j < len(bs.ill); {
		p, mask := s.k.ill(bs, s.t, j, len(bs.ill))
		if mask == 0 {
			break
		}
		pos := int(bs.ill[p])
		for l := 0; l < lanes; l++ {
			if mask&(1<<l) == 0 {
				continue
			}
			s.candidates++
			s.evalLane(l, ws[l], pos, n2[l], &bestErr[l], &upper[l], &out[l])
		}
		j = p + 1
	}
}

// evalLane evaluates lane l's candidate pos exactly, keeps its code when
// it beats the lane's best, and tightens the lane's threshold to its error.
func (s *searcher) evalLane(l int, w []float64, pos int, n2 float64, bestErr, upper *float64, out *code) {
	var c code
	s.full++
	e := s.qz.evalBound(w, pos, &c, math.Min(*bestErr, *upper), n2)
	if !math.IsInf(e, 1) && better(e, c.seed, *bestErr, out.seed) {
		*bestErr, *out = e, c
	}
	if e < *upper {
		*upper = e
		s.t.setThreshold(l, n2, e)
	}
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
