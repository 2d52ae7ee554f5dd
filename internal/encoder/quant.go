package encoder

import (
	"math"
)

// code is one block's stored fields.
type code struct {
	seed uint32
	e    int8 // stored exponent (bias not added)
	q    [MaxLatentDim]int8
}

// quantizer evaluates one seed for one block exactly. It is the single
// scoring function both the brute-force reference and the pruned search use,
// so they rank seeds identically. All float64 arithmetic is written with
// explicit conversions around products so no platform fuses it into FMAs.
type quantizer struct {
	p      Params
	bs     *basis
	bias   int
	refine bool
	scales [1 << MaxExpBits]float64 // by stored exponent − emin
}

func newQuantizer(p Params, bs *basis, bias int, refine bool) *quantizer {
	qz := &quantizer{p: p, bs: bs, bias: bias, refine: refine}
	for e := p.emin(); e <= p.emax(); e++ {
		qz.scales[e-p.emin()] = scaleFor(p.SeedBits, e+bias)
	}
	return qz
}

// eval returns the squared error ‖w − ŵ‖² (ŵ the decoder's float32 output,
// error summed in float64) of the best code this quantizer finds at cycle
// position pos, and that code. Excluded seeds score +Inf.
//
// bound, when finite, lets eval stop early: a seed whose unquantized
// least-squares error (computed here in float64, accurate to ~1e-13·‖w‖²
// for the well-conditioned seeds this is used on) exceeds bound + 1e-6·‖w‖²
// cannot reach an exact error ≤ bound, and scores +Inf.
func (qz *quantizer) eval(w []float64, pos int, out *code) float64 {
	return qz.evalBound(w, pos, out, math.Inf(1), 0)
}

func (qz *quantizer) evalBound(w []float64, pos int, out *code, bound, n2 float64) float64 {
	var b, t [MaxLatentDim]float64
	v, ok := qz.solve(w, pos, &b, &t)
	if !ok {
		return math.Inf(1)
	}
	P := qz.bs.P
	if !math.IsInf(bound, 1) {
		var proj float64
		for i := 0; i < P; i++ {
			proj += float64(b[i] * t[i])
		}
		if n2-proj > bound+float64(1e-6*n2) {
			return math.Inf(1)
		}
	}
	// The Gram matrix on the stack, zeroed per call: 64 entries serve
	// P ≤ 8 (every kernel's range) at a quarter of MaxLatentDim²'s cost.
	var gs [64]float64
	g := gs[:]
	if P*P > len(gs) {
		var gl [MaxLatentDim * MaxLatentDim]float64
		g = gl[:]
	}
	g = g[:P*P]
	gramInt(v, qz.bs.h, qz.bs.C, P, g)
	p := qz.p
	emin, emax := p.emin(), p.emax()
	// The all-zero code (error ‖w‖², 0 in gramErr's units) is the starting
	// point: a seed's code never codes a block worse than leaving it out,
	// which keeps progressive layers from adding error.
	best := code{e: int8(emin)}
	bestErr := 0.0
	if e0, ok := qz.e0(&t); ok {
		// Refinement also tries e0−1 (clipping the largest coefficient)
		// and e0+1, and takes ±1 coordinate steps on q.
		lo, hi := e0, e0
		if qz.refine {
			lo, hi = max(e0-1, emin), min(e0+1, emax)
		}
		for e := lo; e <= hi; e++ {
			var c code
			qz.round(&t, e, &c)
			err := qz.gramErr(w, b[:], g, &c)
			if qz.refine {
				err = qz.descend(b[:], g, &c, err)
			}
			if err < bestErr {
				bestErr, best = err, c
			}
		}
	}
	*out = best
	out.seed = qz.bs.cyc.State[pos]
	err := qz.exactErr(w, v, out)
	if best.q != (code{}).q {
		// The zero code is always available and its exact error is ‖w‖²;
		// a nonzero code must beat it exactly, not just in Gram form. So
		// eval never exceeds ‖w‖², and equals it for every seed that cannot
		// help: those tie, and the lowest seed wins.
		zero := code{seed: out.seed, e: int8(emin)}
		if z := qz.exactErr(w, v, &zero); z <= err {
			*out = zero
			return z
		}
	}
	return err
}

// quick is the cheap first look at a candidate: its float64 least-squares
// error ls (a lower bound on its exact error, up to 1e-6·‖w‖²) and ub, an
// upper bound on what eval will return for it: the exact error of plain
// rounding at the range-filling exponent, plus slack for the float32
// rounding of ŵ (eval's code has a Gram-form error no larger, and Gram
// form and exact error differ by far less than the slack).
//
// The candidates come from the scan, whose kernels have just read the
// seed's basis columns in the decimated table: for K ≤ 16 quick reads them
// there (same integers, same arithmetic as eval) instead of from the cycle
// states, a cache miss or two less per candidate.
func (qz *quantizer) quick(w []float64, pos int, n2 float64) (ls, ub float64, ok bool) {
	var b, t [MaxLatentDim]float64
	var cols basisCols
	if !qz.bs.columns(pos, &cols) || !qz.solveCols(w, pos, &cols, &b, &t) {
		return 0, 0, false
	}
	var proj float64
	for i := 0; i < qz.bs.P; i++ {
		proj += float64(b[i] * t[i])
	}
	return n2 - proj, qz.roundedUpper(w, &cols, &t, n2), true
}

// roundedUpper is quick's and quickPair's upper bound: the exact error of
// plain rounding of t at the range-filling exponent (at most n2, the zero
// code's), plus slack.
func (qz *quantizer) roundedUpper(w []float64, cols *basisCols, t *[MaxLatentDim]float64, n2 float64) float64 {
	c := code{e: int8(qz.p.emin())}
	if e0, ok := qz.e0(t); ok {
		qz.round(t, e0, &c)
	}
	e := math.Min(qz.exactErrCols(w, cols, &c), n2)
	return e + float64(1e-5*(n2+e))
}

// basisCols is a seed's basis as integer columns: col[r][c] = V[c·P+r] − h.
type basisCols struct {
	// K ≤ 16: column r is tab[off[r] : off[r]+C], a run of the decimated
	// table (offsets rather than slices: the struct is zeroed per
	// candidate, and MaxLatentDim slice headers are 384 bytes).
	tab []int16
	off [MaxLatentDim]int32
	v   []uint32 // otherwise: the cycle states
}

// col returns column r (K ≤ 16).
func (cols *basisCols) col(r, C int) []int16 {
	o := int(cols.off[r])
	return cols.tab[o : o+C : o+C]
}

// columns fills cols for the seed at pos: from the decimated table when
// it is exact (K ≤ 16), else the cycle states. False for excluded seeds.
func (bs *basis) columns(pos int, cols *basisCols) bool {
	if bs.isExcluded(pos) {
		return false
	}
	d := bs.dec
	if d.shift != 0 {
		cols.v = bs.cyc.State[pos+1 : pos+1+bs.C*bs.P]
		return true
	}
	cols.v = nil
	cols.tab = d.tab
	for r := 0; r < bs.P; r++ {
		j := pos + 1 + r
		cols.off[r] = int32((j%bs.P)*d.rowLen + j/bs.P)
	}
	return true
}

// solveCols is solve with the basis from cols: the same products and sums.
func (qz *quantizer) solveCols(w []float64, pos int, cols *basisCols, b, t *[MaxLatentDim]float64) bool {
	if cols.v != nil {
		_, ok := qz.solve(w, pos, b, t)
		return ok
	}
	C, P := qz.bs.C, qz.bs.P
	for c := 0; c < C; c++ {
		wc := w[c]
		for i := 0; i < P; i++ {
			b[i] += float64(float64(cols.tab[int(cols.off[i])+c]) * wc)
		}
	}
	return qz.coefs(pos, b, t)
}

// exactErrCols is exactErr with the basis from cols.
func (qz *quantizer) exactErrCols(w []float64, cols *basisCols, c *code) float64 {
	if cols.v != nil {
		return qz.exactErr(w, cols.v, c)
	}
	C, P := qz.bs.C, qz.bs.P
	s := qz.scales[int(c.e)-qz.p.emin()]
	var sum float64
	for k := 0; k < C; k++ {
		var acc int64
		for i := 0; i < P; i++ {
			acc += int64(cols.tab[int(cols.off[i])+k]) * int64(c.q[i])
		}
		d := w[k] - float64(float32(float64(acc)*s))
		sum += float64(d * d)
	}
	return sum
}

// solve computes the integer-unit normal equations of seed position pos:
// b = Ûᵀw and t = G⁻¹b with Û = V − h, G = ÛᵀÛ (the inverse cached or
// recomputed, same values). It returns the basis states V, and false for
// excluded seeds.
func (qz *quantizer) solve(w []float64, pos int, b, t *[MaxLatentDim]float64) (v []uint32, ok bool) {
	bs := qz.bs
	if bs.isExcluded(pos) {
		return nil, false
	}
	C, P := bs.C, bs.P
	h := bs.h
	v = bs.cyc.State[pos+1 : pos+1+C*P]
	for c := 0; c < C; c++ {
		wc := w[c]
		row := v[c*P : c*P+P]
		for i, x := range row {
			b[i] += float64(float64(int64(x)-h) * wc)
		}
	}
	if !qz.coefs(pos, b, t) {
		return nil, false
	}
	return v, true
}

// coefs sets t = G⁻¹b for the seed at pos (not excluded), from the cached
// inverse or recomputed (same values).
func (qz *quantizer) coefs(pos int, b, t *[MaxLatentDim]float64) bool {
	bs := qz.bs
	P := bs.P
	if bs.ainv != nil {
		// t = G⁻¹b straight from the packed upper triangle: the same
		// products and sums, in the same order, as the unpacked matrix.
		na := bs.stride
		ap := bs.ainv[pos*na : (pos+1)*na]
		for i := 0; i < P; i++ {
			var s float64
			for k := 0; k < P; k++ {
				r, c := min(i, k), max(i, k)
				s += float64(ap[r*P-r*(r-1)/2+c-r] * b[k])
			}
			t[i] = s
		}
		return true
	}
	var a [MaxLatentDim * MaxLatentDim]float64
	if !bs.inverse(pos, bs.cyc.State[pos+1:pos+1+bs.C*P], a[:]) {
		return false
	}
	for i := 0; i < P; i++ {
		var s float64
		for k := 0; k < P; k++ {
			s += float64(a[i*P+k] * b[k])
		}
		t[i] = s
	}
	return true
}

// e0 is the range-filling exponent rule: the smallest stored exponent e
// with max|t|/scale(e) ≤ qmax+½, so the largest coefficient uses the top of
// the code range. False when t is zero.
func (qz *quantizer) e0(t *[MaxLatentDim]float64) (int, bool) {
	m := 0.0
	for i := 0; i < qz.bs.P; i++ {
		m = math.Max(m, math.Abs(t[i]))
	}
	if m == 0 {
		return 0, false
	}
	p := qz.p
	emin, emax := p.emin(), p.emax()
	lim := float64(p.qmax()) + 0.5
	// m/scale(e) falls as e grows (scale(e) = 2^{e+bias}/(h−1)): start near
	// the answer, log2(m·(h−1)/lim) − bias, and settle it with the exact
	// test, so the result is the same as scanning up from emin.
	_, x := math.Frexp(m * float64(qz.bs.h-1) / lim)
	e := clampInt(x-qz.bias, emin, emax)
	for e > emin && m/qz.scales[e-1-emin] <= lim {
		e--
	}
	for e < emax && m/qz.scales[e-emin] > lim {
		e++
	}
	return e, true
}

// round sets c to t rounded at stored exponent e, clamped to the code range.
func (qz *quantizer) round(t *[MaxLatentDim]float64, e int, c *code) {
	p := qz.p
	c.e = int8(e)
	s := qz.scales[e-p.emin()]
	for i := 0; i < qz.bs.P; i++ {
		c.q[i] = int8(clampInt(int(math.Round(t[i]/s)), p.qmin(), p.qmax()))
	}
}

// gramErr is ‖w‖² − 2s·qᵀb + s²·qᵀGq in integer units (w's norm omitted: it
// is the same for every candidate of a block, so only differences matter).
func (qz *quantizer) gramErr(w, b, g []float64, c *code) float64 {
	P := qz.bs.P
	s := qz.scales[int(c.e)-qz.p.emin()]
	var qb, qgq float64
	for i := 0; i < P; i++ {
		qi := float64(c.q[i])
		qb += float64(qi * b[i])
		var r float64
		for k := 0; k < P; k++ {
			r += float64(g[i*P+k] * float64(c.q[k]))
		}
		qgq += float64(qi * r)
	}
	return float64(float64(s*s)*qgq) - float64(2*s*qb)
}

// descend improves q by coordinate steps of ±1 while the Gram-form error
// drops (at most 4 sweeps; first improving step wins: deterministic). The
// change of one coordinate by δ costs O(P): with r = Gq,
// Δ = s²(2δ·r_i + δ²·G_ii) − 2sδ·b_i.
func (qz *quantizer) descend(b, g []float64, c *code, err float64) float64 {
	P := qz.bs.P
	qmin, qmax := int8(qz.p.qmin()), int8(qz.p.qmax())
	s := qz.scales[int(c.e)-qz.p.emin()]
	s2 := float64(s * s)
	var r [MaxLatentDim]float64
	for i := 0; i < P; i++ {
		for k := 0; k < P; k++ {
			r[i] += float64(g[i*P+k] * float64(c.q[k]))
		}
	}
	for sweep := 0; sweep < 4; sweep++ {
		improved := false
		for i := 0; i < P; i++ {
			for _, d := range [2]int8{1, -1} {
				nq := c.q[i] + d
				if nq < qmin || nq > qmax {
					continue
				}
				fd := float64(d)
				delta := float64(s2*float64(float64(2*fd*r[i])+g[i*P+i])) - float64(2*s*fd*b[i])
				if delta < 0 {
					c.q[i] = nq
					for k := 0; k < P; k++ {
						r[k] += float64(fd * g[k*P+i])
					}
					err += delta
					improved = true
					break
				}
			}
		}
		if !improved {
			break
		}
	}
	return err
}

// exactErr decodes the block exactly as Layer.Decode does and returns the
// float64 sum of squared differences.
func (qz *quantizer) exactErr(w []float64, v []uint32, c *code) float64 {
	C, P := qz.bs.C, qz.bs.P
	h := qz.bs.h
	s := qz.scales[int(c.e)-qz.p.emin()]
	var sum float64
	for k := 0; k < C; k++ {
		var acc int64
		row := v[k*P : k*P+P]
		for i, x := range row {
			acc += (int64(x) - h) * int64(c.q[i])
		}
		d := w[k] - float64(float32(float64(acc)*s))
		sum += float64(d * d)
	}
	return sum
}

func clampInt(x, lo, hi int) int {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}
