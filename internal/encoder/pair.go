package encoder

import (
	"math"

	"github.com/seedlm/seedlm/internal/lfsr"
)

// The pruning bound of two neighbouring seeds at once (docs/PERFORMANCE.md,
// "The algorithm").
//
// Write col(j) for the cycle's column starting at position j
// (col(j)_c = State[j + c·P] − 2^{K−1}) and d_j = col(j)·w̃ for its
// projection. Seed i's basis is col(i+1 … i+P). The seeds i = 2p and
// i+1 = 2p+1 share the P−1 columns m_k = col(2p+1+k), k = 1…P−1, and
// differ in one more: e₁ = col(2p+1) for the first, e₂ = col(2p+P+1) for
// the second. In an orthonormal basis of each seed's span built
// Gram–Schmidt-wise from m_1…m_{P−1} first, the projection energy is
//
//	π = z_1² + … + z_{P−1}² + y²,  z = L_m⁻¹·(d_{m_1} … d_{m_{P−1}}),
//	                               y = γ·d_e + Σ_k δ_k·d_{m_k},
//
// where L_m L_mᵀ is the shared columns' Gram matrix and (δ, γ) the last
// row of the inverse Cholesky factor of the seed's Gram matrix in that
// order. The z are the same for both seeds, so a pair costs
// (P−1)P/2 + 2P coefficient multiplies and P + 1 squares instead of
// 2·(P(P+1)/2 + P) for two quadratic forms bᵀG⁻¹b: 13 instead of 18 for
// P = 3. The kernels test T − Σz² − y² < 0 against the class threshold T
// of the pair, for both seeds.

// pairStride is the number of coefficients of a pair: the shared rows of
// L_m⁻¹ ((P−1)P/2) and, for each seed, (γ, δ_1 … δ_{P−1}).
func pairStride(P int) int { return (P-1)*P/2 + 2*P }

// pairCols holds the columns (e₁, m_1 … m_{P−1}, e₂) of one pair and their
// exact Gram matrix.
type pairCols struct {
	col [MaxLatentDim + 1][MaxBlockSize]int64
	g   [(MaxLatentDim + 1) * (MaxLatentDim + 1)]float64 // exact integers
	n   int
}

// load reads the columns of the pair whose first seed is at position i.
// The second seed's last column may run past the cycle (i = L−1): the
// cycle's extension repeats its start, and the seed is dropped anyway.
func (pc *pairCols) load(cyc *lfsr.Cycle, h int64, C, P, i int) {
	n := P + 1
	pc.n = n
	for k := 0; k < n; k++ {
		j := i + 1 + k
		for c := 0; c < C; c++ {
			pc.col[k][c] = int64(cyc.State[j+c*P]) - h
		}
	}
	for r := 0; r < n; r++ {
		for s := r; s < n; s++ {
			var acc int64
			for c := 0; c < C; c++ {
				acc += pc.col[r][c] * pc.col[s][c]
			}
			pc.g[r*n+s] = float64(acc)
			pc.g[s*n+r] = float64(acc)
		}
	}
}

// coefs writes the pair's coefficients (float32, scaled by 2^shift for the
// truncated tables of K > 16) into dst and returns each seed's margin
// (pairMargin; +Inf where the seed's factorization fails the conditioning
// rule or its bound cannot be proven accurate). Seeds marked dead get
// coefficients too (zeroDead clears them once the margins are known).
func (pc *pairCols) coefs(dst []float32, K, C, P, shift int, dead [2]bool) (mA, mB float64) {
	n := pc.n
	g := func(r, s int) float64 { return pc.g[r*n+s] }
	clear(dst)
	inf := math.Inf(1)
	// Shared part: Cholesky factor of the m columns' Gram matrix (order
	// m_1 … m_{P−1}, rows 1 … P−1 of pc), and its inverse.
	var lm, im [MaxLatentDim * MaxLatentDim]float64
	q := P - 1
	maxd := 0.0
	for k := 0; k <= P; k++ {
		maxd = math.Max(maxd, g(k, k))
	}
	for j := 0; j < q; j++ {
		d := g(1+j, 1+j)
		for k := 0; k < j; k++ {
			d -= float64(lm[j*q+k] * lm[j*q+k])
		}
		if !(d > condTol*maxd) {
			return inf, inf
		}
		d = math.Sqrt(d)
		lm[j*q+j] = d
		for i := j + 1; i < q; i++ {
			s := g(1+i, 1+j)
			for k := 0; k < j; k++ {
				s -= float64(lm[i*q+k] * lm[j*q+k])
			}
			lm[i*q+j] = s / d
		}
	}
	// im = lm⁻¹ (lower triangular), by forward substitution: row i
	// depends on rows ≤ i only.
	for i := 0; i < q; i++ {
		for j := 0; j <= i; j++ {
			var s float64
			if i == j {
				s = 1
			}
			for k := j; k < i; k++ {
				s -= float64(lm[i*q+k] * im[k*q+j])
			}
			im[i*q+j] = s / lm[i*q+i]
		}
	}
	scale := math.Ldexp(1, shift)
	k := 0
	for i := 0; i < q; i++ {
		for j := 0; j <= i; j++ {
			dst[k] = float32(im[i*q+j] * scale)
			k++
		}
	}
	var ms [2]float64
	for side, e := range [2]int{0, P} {
		if dead[side] {
			ms[side] = inf
			continue
		}
		// Last row of the Cholesky factor in the order (m…, e).
		var l [MaxLatentDim]float64
		d := g(e, e)
		for j := 0; j < q; j++ {
			s := g(e, 1+j)
			for k := 0; k < j; k++ {
				s -= float64(l[k] * lm[j*q+k])
			}
			l[j] = s / lm[j*q+j]
			d -= float64(l[j] * l[j])
		}
		if !(d > condTol*maxd) {
			ms[side] = inf
			continue
		}
		lp := math.Sqrt(d)
		// Last row of the inverse factor: δ_j on m_j, γ on e.
		row := dst[q*P/2+side*P : q*P/2+(side+1)*P]
		gamma := 1 / lp
		row[0] = float32(gamma * scale)
		for j := 0; j < q; j++ {
			var s float64
			for k := j; k < q; k++ {
				s += float64(l[k] * im[k*q+j])
			}
			row[1+j] = float32(-s / lp * scale)
		}
		ms[side] = pc.margin(dst, K, C, P, shift, side)
	}
	return ms[0], ms[1]
}

// margin bounds, relative to ‖w̃‖², how far the kernels' float32 value of
// T − π can be from the exact one for seed side of the pair whose float32
// coefficients are in dst (see pairMargin).
func (pc *pairCols) margin(dst []float32, K, C, P, shift, side int) float64 {
	n := pc.n
	q := P - 1
	// M: the seed's float32 inverse factor (unscaled, exact in float64), in
	// the order (m_1 … m_{P−1}, e), and idx the matching rows of pc.
	var m [MaxLatentDim * MaxLatentDim]float64
	var idx [MaxLatentDim]int
	unscale := math.Ldexp(1, -shift)
	k := 0
	for i := 0; i < q; i++ {
		idx[i] = 1 + i
		for j := 0; j <= i; j++ {
			m[i*P+j] = float64(dst[k]) * unscale
			k++
		}
	}
	idx[q] = side * P
	row := dst[q*P/2+side*P:]
	m[q*P+q] = float64(row[0]) * unscale
	for j := 0; j < q; j++ {
		m[q*P+j] = float64(row[1+j]) * unscale
	}
	var trG, nM2 float64
	for i := 0; i < P; i++ {
		trG += pc.g[idx[i]*n+idx[i]]
		for j := 0; j < P; j++ {
			nM2 += float64(m[i*P+j] * m[i*P+j])
		}
	}
	// E = M·G·Mᵀ − I, and a bound on its float64 evaluation error.
	var e2 float64
	rel := float64(P*P+2) * math.Ldexp(1, -52)
	for i := 0; i < P; i++ {
		for j := 0; j < P; j++ {
			var s, a float64
			for r := 0; r < P; r++ {
				for c := 0; c < P; c++ {
					x := float64(float64(m[i*P+r]*pc.g[idx[r]*n+idx[c]]) * m[j*P+c])
					s += x
					a += math.Abs(x)
				}
			}
			if i == j {
				s--
			}
			x := math.Abs(s) + float64(rel*a)
			e2 += float64(x * x)
		}
	}
	return pairMargin(K, C, P, math.Sqrt(e2), math.Sqrt(nM2), trG)
}

// pairMargin bounds, relative to ‖w̃‖², the error of the kernels' float32
// value of T − π for one seed, given the float32 coefficients M (P×P,
// lower triangular in the order (m_1 … m_{P−1}, e); ‖M‖_F = nM) and how far
// they are from orthonormalizing the seed's columns: e ≥ ‖M·G·Mᵀ − I‖₂.
//
//   - Exact M on exact b: with v = M·b, π = bᵀG⁻¹b = vᵀ(I+E)⁻¹v, so
//     |‖v‖² − π| ≤ e(1+e)/(1−e)·‖w̃‖² (‖v‖² ≤ (1+e)·π, π ≤ ‖w̃‖²).
//   - The kernels' ỹ: the projections' error ‖Δb‖ ≤ δ_b·‖w̃‖,
//     δ_b = κ√tr G + λ√P (projError), and the evaluation's, γ_P·|M||b̃|,
//     give ‖ỹ − v‖ ≤ ε·‖w̃‖, ε = ‖M‖_F·(δ_b + γ_P·(√tr G + δ_b)); with
//     ‖v‖ ≤ ρ‖w̃‖, ρ = √(1+e): |Σỹ² − ‖v‖²| ≤ (2ρε + ε²)·‖w̃‖².
//   - T − Σỹ², P + 1 terms with |T| ≤ ‖w̃‖² wherever a hit is due:
//     γ_{P+1}·(1 + (ρ+ε)²)·‖w̃‖².
//
// The sum, doubled for safety. Each γ counts a rounding per multiply and
// per add, so it covers evaluation with or without fused multiply-adds.
func pairMargin(K, C, P int, e, nM, trG float64) float64 {
	if !(e < 0.5) {
		return math.Inf(1)
	}
	gamma := func(n int) float64 { return float64(n) * u32 / (1 - float64(float64(n)*u32)) }
	kappa, lambda := projError(K, C)
	sg := math.Sqrt(trG)
	// Products rounded before they are added (float64(…)): no fused
	// multiply-add, so the margin is the same bits on every architecture.
	db := float64(kappa*sg) + float64(lambda*math.Sqrt(float64(P)))
	eps := float64(nM * (db + float64(gamma(P)*(sg+db))))
	rho := math.Sqrt(1 + e)
	m := float64(2*rho*eps) + float64(eps*eps) + float64(e*(1+e)/(1-e)) + float64(gamma(P+1)*(1+float64((rho+eps)*(rho+eps))))
	return 2 * m
}

// zeroDead clears the coefficients of the pair's dead seeds (excluded,
// near-singular, or past the cycle): a dead seed's test reduces to
// T − Σz², never below the live seed's T − Σz² − y², so it adds no hits,
// and the searcher drops what it reports. With both dead, everything is
// cleared.
func (pc *pairCols) zeroDead(dst []float32, P int, dead [2]bool) {
	q := P - 1
	if dead[0] && dead[1] {
		clear(dst)
		return
	}
	for side := 0; side < 2; side++ {
		if dead[side] {
			clear(dst[q*P/2+side*P : q*P/2+(side+1)*P])
		}
	}
}

// quickPair is quick for a live seed whose pair the scan has just bounded:
// the coefficients come from the pair table and the basis columns from the
// decimated table (K ≤ 16), both still in cache, instead of the cached
// inverse and the cycle states (a cache miss or two per candidate, a tenth
// of the encode). With M the seed's float32 inverse factor (orthonormal
// coordinates v = M·b), π̃ = ‖v‖² and t̃ = Mᵀv ≈ G⁻¹b.
//
//   - ls: π̃ is within e(1+e)/(1−e)·‖w‖² of π (pairMargin), so
//     n2 − π̃ − m·n2 (m the pair class's margin) is a lower bound on the
//     least-squares error, as quick's is.
//   - ub: the exact error of plain rounding of t̃ (plus quick's slack).
//     t̃ may differ from eval's t in the last bits, so eval's code for this
//     seed is not certain to be as good; searchTile checks, at the end,
//     that the best exact error found is within the upper bounds it
//     pruned with, and searches the block again with quick if not.
//
// ok is false where the tables cannot serve (K > 16): the caller uses
// quick.
func (qz *quantizer) quickPair(w []float64, pos int, n2 float64) (ls, ub float64, ok bool) {
	bs := qz.bs
	if bs.dec.shift != 0 {
		return 0, 0, false
	}
	var cols basisCols
	if !bs.columns(pos, &cols) {
		return 0, 0, false
	}
	C, P := bs.C, bs.P
	q := P - 1
	// b in the pair's order (m_1 … m_{P−1}, e): the seed's columns are
	// (e₁, m…) for the first of the pair, (m…, e₂) for the second.
	side := pos & 1
	var b [MaxLatentDim]float64
	for i := 0; i < P; i++ {
		col := cols.col(i, C)
		var s float64
		for c := 0; c < C; c++ {
			s += float64(float64(col[c]) * w[c])
		}
		j := i // natural column i → pair order j
		if side == 0 {
			j = (i + q) % P
		}
		b[j] = s
	}
	S := bs.pstride
	cf := bs.pcoef[pos/2*S : pos/2*S+S]
	// v = M·b, M lower triangular: rows of L_m⁻¹ (packed: row a starts
	// at a(a+1)/2), then the seed's row (δ_1 … δ_{P−1}, γ in pair order,
	// stored γ first). Read in place: a P×P copy would be zeroed per call
	// (2 KB at MaxLatentDim), a tenth of quickPair.
	row := cf[q*P/2+side*P:]
	var v [MaxLatentDim]float64
	var pi float64
	for a := 0; a < q; a++ {
		ra := cf[a*(a+1)/2:]
		var s float64
		for j := 0; j <= a; j++ {
			s += float64(float64(ra[j]) * b[j])
		}
		v[a] = s
		pi += float64(s * s)
	}
	{
		var s float64
		for j := 0; j < q; j++ {
			s += float64(float64(row[1+j]) * b[j])
		}
		s += float64(float64(row[0]) * b[q])
		v[q] = s
		pi += float64(s * s)
	}
	var t [MaxLatentDim]float64
	for j := 0; j < P; j++ {
		var s float64
		for a := j; a < q; a++ {
			s += float64(float64(cf[a*(a+1)/2+j]) * v[a])
		}
		if j < q {
			s += float64(float64(row[1+j]) * v[q])
		} else {
			s += float64(float64(row[0]) * v[q])
		}
		i := j // pair order j → natural column i
		if side == 0 {
			i = (j + 1) % P
		}
		t[i] = s
	}
	margin := bs.classMargin[bs.pclass[pos/2]]
	ls, ub = n2-pi-float64(margin*n2), qz.roundedUpper(w, &cols, &t, n2)
	if quickPairHook != nil {
		ub = quickPairHook(ub)
	}
	return ls, ub, true
}

// quickPairHook, when set (tests only), replaces quickPair's upper bounds,
// so tests can make them wrong and check that searchTile's verification
// catches it.
var quickPairHook func(ub float64) float64
