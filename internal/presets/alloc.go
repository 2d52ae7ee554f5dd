package presets

import (
	"container/heap"
	"fmt"
	"math"
	"sort"

	"github.com/seedlm/seedlm/internal/detmath"
)

// Option is one way to code one tensor: its exact payload bits and its
// (estimated) squared error.
type Option struct {
	Bits  float64
	SqErr float64
}

// Allocate picks one option per tensor to minimize Σ SqErr subject to
// Σ Bits ≤ budget, and returns the chosen indices. ok is false when even the
// cheapest options exceed the budget (the cheapest are returned then).
//
// Method (Lagrangian / convex-hull greedy, the classic rate allocation):
//  1. Per tensor, keep the lower convex hull of its (bits, error) points:
//     an option above the hull is never optimal for any Lagrange multiplier
//     λ (it minimizes error + λ·bits for no λ).
//  2. Start every tensor at its cheapest hull point; repeatedly take the
//     upgrade (to the tensor's next hull point) with the largest error cut
//     per extra bit, while it fits. On the hull those slopes decrease per
//     tensor, so this walks the λ path and is optimal at every budget that
//     it hits exactly.
//  3. What is left over (less than the next hull step of every tensor) is
//     spent by a fill pass: any single option change, hull or not, that
//     fits and cuts error most, repeated until none fits.
//  4. A bounded local search over exchanges (one tensor down, another up)
//     that fit and cut error, each followed by a fill.
//  5. An exact dynamic program on a discretized budget (sizes rounded up
//     to budget/65536 units, so it stays feasible); the better answer wins.
//
// It is a knapsack, so steps 1–4 alone are not always optimal: with few
// tensors the leftover budget matters, and that is where step 5 is exact up
// to the rounding; with hundreds of tensors the greedy's leftover is a tiny
// part of the budget. TestAllocate checks it against brute force.
//
// Ties go to the lower tensor index and then the cheaper option, so the
// result is deterministic.
func Allocate(opts [][]Option, budget float64) (choice []int, ok bool) {
	choice = make([]int, len(opts))
	hulls := make([][]int, len(opts))
	used := 0.0
	for t, o := range opts {
		hulls[t] = lowerHull(o)
		choice[t] = hulls[t][0]
		used += o[choice[t]].Bits
	}
	if used > budget {
		return choice, false
	}
	pos := make([]int, len(opts)) // position on the hull
	h := &slopeHeap{}
	push := func(t int) {
		if pos[t]+1 < len(hulls[t]) {
			a, b := opts[t][hulls[t][pos[t]]], opts[t][hulls[t][pos[t]+1]]
			heap.Push(h, slopeItem{t: t, slope: (a.SqErr - b.SqErr) / (b.Bits - a.Bits)})
		}
	}
	for t := range opts {
		push(t)
	}
	for h.Len() > 0 {
		it := heap.Pop(h).(slopeItem)
		t := it.t
		next := hulls[t][pos[t]+1]
		extra := opts[t][next].Bits - opts[t][choice[t]].Bits
		if used+extra > budget {
			continue // this tensor's later steps are steeper in bits: stop it here
		}
		used += extra
		pos[t]++
		choice[t] = next
		push(t)
	}
	fill(opts, choice, &used, budget)
	// Local search: the greedy is exact only at the budgets its λ path
	// hits; with few tensors the leftover can matter. Take the best
	// "downgrade one tensor, upgrade another" exchange that fits and cuts
	// error, then fill again, until none helps (bounded).
	for iter := 0; iter < 4*len(opts)+16; iter++ {
		ba, bi, bb, bj, bestCut := -1, -1, -1, -1, 1e-12
		for a, oa := range opts {
			ca := oa[choice[a]]
			for i, x := range oa {
				if x.Bits >= ca.Bits {
					continue
				}
				freed := ca.Bits - x.Bits
				loss := x.SqErr - ca.SqErr
				for b, ob := range opts {
					if b == a {
						continue
					}
					cb := ob[choice[b]]
					for j, y := range ob {
						if y.Bits <= cb.Bits || used-freed+y.Bits-cb.Bits > budget {
							continue
						}
						if cut := (cb.SqErr - y.SqErr) - loss; cut > bestCut*(1+1e-12) {
							ba, bi, bb, bj, bestCut = a, i, b, j, cut
						}
					}
				}
			}
		}
		if ba < 0 {
			break
		}
		used += opts[ba][bi].Bits - opts[ba][choice[ba]].Bits + opts[bb][bj].Bits - opts[bb][choice[bb]].Bits
		choice[ba], choice[bb] = bi, bj
		fill(opts, choice, &used, budget)
	}
	// An exact dynamic program over a discretized budget (option sizes
	// rounded UP, so its answers always fit) catches what the greedy
	// misses when few tensors share the budget; keep whichever is better.
	if dp := dpAllocate(opts, budget); dp != nil && totalErr(opts, dp) < totalErr(opts, choice) {
		choice = dp
	}
	return choice, true
}

func totalErr(opts [][]Option, c []int) float64 {
	var e float64
	for t, j := range c {
		e += opts[t][j].SqErr
	}
	return e
}

// dpCells bounds the dynamic program's table (tensors × budget units).
const dpCells = 1 << 25

// dpAllocate solves the allocation exactly for option sizes rounded up to
// units of budget/U (U as large as dpCells allows, at most 1<<16), or
// returns nil when no solution fits after rounding.
func dpAllocate(opts [][]Option, budget float64) []int {
	T := len(opts)
	if T == 0 || budget <= 0 {
		return nil
	}
	U := min(1<<16, dpCells/T)
	if U < 64 {
		return nil
	}
	unit := budget / float64(U)
	cost := make([][]int, T)
	for t, o := range opts {
		cost[t] = make([]int, len(o))
		for j, x := range o {
			cost[t][j] = int(math.Ceil(x.Bits/unit - 1e-9))
		}
	}
	inf := math.Inf(1)
	best := make([]float64, U+1) // best[u]: min error of tensors so far using ≤ u units
	next := make([]float64, U+1)
	pick := make([][]uint8, T)
	for t := 0; t < T; t++ {
		pick[t] = make([]uint8, U+1)
		for u := range next {
			next[u] = inf
		}
		for u := 0; u <= U; u++ {
			for j, c := range cost[t] {
				if c > u || j > 255 {
					continue
				}
				prev := 0.0
				if t > 0 {
					prev = best[u-c]
				}
				if e := prev + opts[t][j].SqErr; e < next[u] {
					next[u], pick[t][u] = e, uint8(j)
				}
			}
		}
		best, next = next, best
	}
	if math.IsInf(best[U], 1) {
		return nil
	}
	choice := make([]int, T)
	u := U
	for t := T - 1; t >= 0; t-- {
		j := int(pick[t][u])
		choice[t] = j
		u -= cost[t][j]
	}
	return choice
}

// fill spends leftover budget: any single option change that fits and cuts
// error most, repeated until none fits.
func fill(opts [][]Option, choice []int, used *float64, budget float64) {
	for {
		bt, bo, bestCut := -1, -1, 0.0
		for t, o := range opts {
			cur := o[choice[t]]
			for j, x := range o {
				if x.Bits <= cur.Bits || *used-cur.Bits+x.Bits > budget {
					continue
				}
				if cut := cur.SqErr - x.SqErr; cut > bestCut {
					bt, bo, bestCut = t, j, cut
				}
			}
		}
		if bt < 0 {
			return
		}
		*used += opts[bt][bo].Bits - opts[bt][choice[bt]].Bits
		choice[bt] = bo
	}
}

// lowerHull returns the indices of the lower convex hull of the points
// (Bits, SqErr), cheapest first, with strictly decreasing error.
func lowerHull(o []Option) []int {
	idx := make([]int, len(o))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		if o[idx[a]].Bits != o[idx[b]].Bits {
			return o[idx[a]].Bits < o[idx[b]].Bits
		}
		return o[idx[a]].SqErr < o[idx[b]].SqErr
	})
	var hull []int
	for _, i := range idx {
		if len(hull) > 0 && o[i].SqErr >= o[hull[len(hull)-1]].SqErr {
			continue // costs at least as much, no better
		}
		for len(hull) >= 2 {
			a, b := o[hull[len(hull)-2]], o[hull[len(hull)-1]]
			// b is not below the segment a→i: drop it.
			if (b.SqErr-a.SqErr)*(o[i].Bits-a.Bits) >= (o[i].SqErr-a.SqErr)*(b.Bits-a.Bits) {
				hull = hull[:len(hull)-1]
				continue
			}
			break
		}
		hull = append(hull, i)
	}
	return hull
}

type slopeItem struct {
	t     int
	slope float64
}

type slopeHeap []slopeItem

func (h slopeHeap) Len() int { return len(h) }
func (h slopeHeap) Less(i, j int) bool {
	if h[i].slope != h[j].slope {
		return h[i].slope > h[j].slope
	}
	return h[i].t < h[j].t
}
func (h slopeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *slopeHeap) Push(x any)   { *h = append(*h, x.(slopeItem)) }
func (h *slopeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// VarianceRates is the guide's variance heuristic in its classical form
// (reverse water-filling for Gaussian sources): a tensor whose weights have
// second moment σ²_t gets
//
//	rate_t = θ + ½·log2(σ²_t / G)
//
// bits per weight, G being the element-weighted geometric mean of σ² over
// the tensors. High variance → more bits → smaller blocks. It returns, per
// tensor, the option (by bits per weight = Bits/elements) nearest rate_t.
//
// The logarithms are detmath.Log2 and every product is rounded before it
// is added, so the choice is the same on every architecture.
func VarianceRates(opts [][]Option, elements []int64, sigma2 []float64, theta float64) []int {
	rates := varianceRates(elements, sigma2, theta)
	choice := make([]int, len(opts))
	for t, o := range opts {
		rate := rates[t]
		best := 0
		for j, x := range o {
			d := math.Abs(x.Bits/float64(elements[t]) - rate)
			bd := math.Abs(o[best].Bits/float64(elements[t]) - rate)
			if d < bd-1e-12 || (math.Abs(d-bd) <= 1e-12 && x.Bits < o[best].Bits) {
				best = j
			}
		}
		choice[t] = best
	}
	return choice
}

// varianceRates is rate_t of every tensor (VarianceRates).
func varianceRates(elements []int64, sigma2 []float64, theta float64) []float64 {
	var lg, tot float64
	for t := range elements {
		lg += float64(float64(elements[t]) * detmath.Log2(math.Max(sigma2[t], 1e-300)))
		tot += float64(elements[t])
	}
	g := 0.0
	if tot > 0 {
		g = lg / tot
	}
	rates := make([]float64, len(elements))
	for t := range elements {
		rates[t] = theta + float64(0.5*(detmath.Log2(math.Max(sigma2[t], 1e-300))-g))
	}
	return rates
}

// AllocateByVariance is VarianceRates with θ chosen (by bisection) as large
// as the budget allows: the variance heuristic at a given size, the baseline
// that Allocate is measured against. It never looks at SqErr.
func AllocateByVariance(opts [][]Option, elements []int64, sigma2 []float64, budget float64) (choice []int, ok bool) {
	total := func(c []int) float64 {
		s := 0.0
		for t, j := range c {
			s += opts[t][j].Bits
		}
		return s
	}
	lo, hi := -64.0, 64.0
	if total(VarianceRates(opts, elements, sigma2, lo)) > budget {
		return VarianceRates(opts, elements, sigma2, lo), false
	}
	for i := 0; i < 60; i++ {
		mid := (lo + hi) / 2
		if total(VarianceRates(opts, elements, sigma2, mid)) <= budget {
			lo = mid
		} else {
			hi = mid
		}
	}
	choice = VarianceRates(opts, elements, sigma2, lo)
	// Rounding to the nearest option leaves some budget unspent; spend it
	// the heuristic's way too: in decreasing variance, move a tensor to its
	// next costlier option while that fits, until nothing fits.
	order := make([]int, len(opts))
	for t := range order {
		order[t] = t
	}
	sort.SliceStable(order, func(a, b int) bool { return sigma2[order[a]] > sigma2[order[b]] })
	used := total(choice)
	for moved := true; moved; {
		moved = false
		for _, t := range order {
			cur := opts[t][choice[t]].Bits
			next := -1
			for j, x := range opts[t] {
				if x.Bits > cur && (next < 0 || x.Bits < opts[t][next].Bits) {
					next = j
				}
			}
			if next >= 0 && used-cur+opts[t][next].Bits <= budget {
				used += opts[t][next].Bits - cur
				choice[t] = next
				moved = true
			}
		}
	}
	return choice, true
}

// checkOptions guards the allocators' inputs.
func checkOptions(opts [][]Option) error {
	for t, o := range opts {
		if len(o) == 0 {
			return fmt.Errorf("tensor %d has no options", t)
		}
		for j, x := range o {
			if !(x.Bits > 0) || x.SqErr < 0 || math.IsNaN(x.SqErr) {
				return fmt.Errorf("tensor %d option %d: bits %g, error %g", t, j, x.Bits, x.SqErr)
			}
		}
	}
	return nil
}
