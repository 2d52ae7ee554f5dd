package model

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// The matmul kernel computes dot products of rows: y[r][o] = x[r]·w[o], the
// form of every linear layer (HF weights are [out, in], row-major) and of
// attention scores. Its arithmetic is fixed so that the assembly and the
// portable kernel give the same bits:
//
//   - eight lane accumulators; element k < 8·⌊n/8⌋ of the row goes to lane
//     k mod 8, in increasing k; each product is rounded to float32 before it
//     is added (no fused multiply-add: the same on every CPU and compiler);
//   - the lanes are summed as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7));
//   - the last n mod 8 products are then added one by one.
//
// A tile is 3 rows of x by 3 rows of w (nine 8-lane accumulators live in
// registers). Each output element depends only on its two rows, never on the
// tile it was computed in or on the worker count.

const tileR, tileS = 3, 3

// dotRows sets d_r[3t+s] = lane-reduced x_r·w[3t+s] over the first 8·n8
// elements, for t < tiles and r < 3 (weight rows ldw apart). Rows and
// outputs may repeat (the x rows of an edge tile).
var dotRows = dotRowsGeneric

func dotRowsGeneric(x0, x1, x2, w []float32, ldw, tiles, n8 int, d0, d1, d2 []float32) {
	xs := [3][]float32{x0, x1, x2}
	ds := [3][]float32{d0, d1, d2}
	for t := 0; t < tiles; t++ {
		for r := 0; r < 3; r++ {
			for s := 0; s < 3; s++ {
				o := 3*t + s
				ds[r][o] = laneDot(xs[r], w[o*ldw:], n8)
			}
		}
	}
}

// laneDot is the lane-reduced dot product of the first 8·n8 elements.
func laneDot(x, w []float32, n8 int) float32 {
	var a [8]float32
	x, w = x[:8*n8], w[:8*n8]
	for i := 0; i < len(x); i += 8 {
		xv := (*[8]float32)(x[i:])
		wv := (*[8]float32)(w[i:])
		for j := 0; j < 8; j++ {
			a[j] += float32(xv[j] * wv[j])
		}
	}
	return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

// dotRef is one output element computed alone, with the kernel's arithmetic
// (the definition the tests check every path against).
func dotRef(x, w []float32, n int) float32 {
	n8 := n / 8
	d := laneDot(x, w, n8)
	for k := 8 * n8; k < n; k++ {
		d += float32(x[k] * w[k])
	}
	return d
}

// gemmNT sets dst[r·ldd + o] = x[r·ldx:]·w[o·ldw:] over n elements, for
// r < m and o < outs, on the calling goroutine.
func gemmNT(dst []float32, ldd int, x []float32, ldx, m int, w []float32, ldw, outs, n int) {
	if m <= 0 || outs <= 0 {
		return
	}
	n8 := n / 8
	full := outs / tileS
	row := func(b []float32, ld, i, last int) []float32 {
		i = min(i, last)
		return b[i*ld : i*ld+n]
	}
	// Rows of x outer, weight rows inner: three x rows stay in L1 while the
	// panel of w (sized for L2 by the caller) streams past them.
	for r0 := 0; r0 < m; r0 += tileR {
		var xs, ds [3][]float32
		for r := range xs {
			i := min(r0+r, m-1)
			xs[r] = row(x, ldx, i, m-1)
			ds[r] = dst[i*ldd : i*ldd+outs]
		}
		if n8 > 0 && full > 0 {
			dotRows(xs[0], xs[1], xs[2], w, ldw, full, n8, ds[0], ds[1], ds[2])
		}
		for r := 0; r < tileR && r0+r < m; r++ {
			for o := 0; o < outs; o++ {
				if o >= full*tileS || n8 == 0 {
					ds[r][o] = laneDot(xs[r], w[o*ldw:], n8)
				}
				if n%8 != 0 {
					d := ds[r][o]
					xr, wr := xs[r], w[o*ldw:o*ldw+n]
					for k := 8 * n8; k < n; k++ {
						d += float32(xr[k] * wr[k])
					}
					ds[r][o] = d
				}
			}
		}
	}
}

// workers is the goroutine count for parallel loops (GOMAXPROCS unless set).
func workers(n int) int {
	if n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// parallel runs f(i) for i < n on up to nw goroutines, handing out indices
// in order from a shared counter. f must not depend on which goroutine runs
// it (results stay independent of nw).
func parallel(nw, n int, f func(worker, i int)) {
	nw = min(nw, n)
	if nw <= 1 {
		for i := 0; i < n; i++ {
			f(0, i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < nw; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(g, i)
			}
		}(g)
	}
	wg.Wait()
}

// panelRows picks how many weight rows one task widens and multiplies: a
// multiple of the tile height, about 384 KiB of float32 (it stays in L2
// while all rows of x pass), and small enough that every worker gets
// several panels.
func panelRows(outs, in, nw int) int {
	p := max(tileS, (384<<10)/(4*max(1, in)))
	p = min(p, max(tileS, outs/(4*nw)))
	return (p + tileS - 1) / tileS * tileS
}

// linear sets y[r·outs + o] = x[r·in:]·W[o] (+ bias[o]) for r < rows, with W
// of shape [outs, in] in its stored dtype. Parallel over panels of W rows;
// 16-bit weights are widened one panel at a time into per-worker scratch.
func linear(y, x []float32, rows int, w *Tensor, bias []float32, nw int) {
	outs, in := int(w.Shape[0]), int(w.Shape[1])
	pr := panelRows(outs, in, nw)
	np := (outs + pr - 1) / pr
	nw = min(nw, np)
	var scratch [][]float32
	if w.DType != "F32" {
		scratch = make([][]float32, nw)
	}
	parallel(nw, np, func(g, p int) {
		o0 := p * pr
		o1 := min(outs, o0+pr)
		var panel []float32
		if w.DType == "F32" {
			panel = w.f32[o0*in : o1*in]
		} else {
			if scratch[g] == nil {
				scratch[g] = make([]float32, pr*in)
			}
			panel = scratch[g][:(o1-o0)*in]
			w.widen(panel, o0*in)
		}
		gemmNT(y[o0:], outs, x, in, rows, panel, in, o1-o0, in)
		if bias != nil {
			for r := 0; r < rows; r++ {
				yr := y[r*outs:]
				for o := o0; o < o1; o++ {
					yr[o] += bias[o]
				}
			}
		}
	})
}
