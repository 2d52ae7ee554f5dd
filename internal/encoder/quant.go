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
	bs := qz.bs
	if bs.excluded[pos] {
		return math.Inf(1)
	}
	C, P := bs.C, bs.P
	h := bs.h
	v := bs.cyc.State[pos+1 : pos+1+C*P]

	// Integer-unit normal equations: Û = V − h, b = Ûᵀw, G = ÛᵀÛ.
	var b, t [MaxLatentDim]float64
	for c := 0; c < C; c++ {
		wc := w[c]
		row := v[c*P : c*P+P]
		for i, x := range row {
			b[i] += float64(float64(int64(x)-h) * wc)
		}
	}
	var g, l []float64
	if bs.gl != nil {
		g = bs.gl[pos*2*P*P : pos*2*P*P+P*P]
		l = bs.gl[pos*2*P*P+P*P : (pos+1)*2*P*P]
	} else {
		var gb, lb [MaxLatentDim * MaxLatentDim]float64
		g, l = gb[:P*P], lb[:P*P]
		gramInt(v, h, C, P, g)
		copy(l, g)
		if !cholesky(l, P) {
			return math.Inf(1) // unreachable: bs.excluded agrees
		}
	}
	copy(t[:P], b[:P])
	cholSolve(l, P, t[:])
	if !math.IsInf(bound, 1) {
		var proj float64
		for i := 0; i < P; i++ {
			proj += b[i] * t[i]
		}
		if n2-proj > bound+1e-6*n2 {
			return math.Inf(1)
		}
	}

	// t is in integer units: ŵ ≈ Û t. Stored q·scale(e) approximates t.
	m := 0.0
	for i := 0; i < P; i++ {
		m = math.Max(m, math.Abs(t[i]))
	}
	p := qz.p
	emin, emax := p.emin(), p.emax()
	// The all-zero code (error ‖w‖², 0 in gramErr's units) is the starting
	// point: a seed's code never codes a block worse than leaving it out,
	// which keeps progressive layers from adding error.
	best := code{e: int8(emin)}
	bestErr := 0.0
	if m > 0 {
		// Range-filling rule: the smallest e with max|t|/scale(e) ≤ qmax+½,
		// so the largest coefficient uses the top of the code range; e−1
		// (clipping the largest) and e+1 are tried too.
		e0 := emin
		lim := float64(p.qmax()) + 0.5
		for e0 < emax && m/qz.scales[e0-emin] > lim {
			e0++
		}
		for e := max(e0-1, emin); e <= min(e0+1, emax); e++ {
			var c code
			c.e = int8(e)
			s := qz.scales[e-emin]
			for i := 0; i < P; i++ {
				c.q[i] = int8(clampInt(int(math.Round(t[i]/s)), p.qmin(), p.qmax()))
			}
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
	out.seed = bs.cyc.State[pos]
	return qz.exactErr(w, v, out)
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
				delta := float64(s2*float64(2*fd*r[i]+g[i*P+i])) - float64(2*s*fd*b[i])
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
