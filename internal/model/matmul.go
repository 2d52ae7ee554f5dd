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
//   - eight lane accumulators; element k of the row goes to lane k mod 8, in
//     increasing k; each product is rounded to float32 before it is added
//     (no fused multiply-add: the same on every CPU and compiler);
//   - the lanes are summed as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
//
// A tile is 3 rows of x by 3 rows of w (nine 8-lane accumulators live in
// registers). Each output element depends only on its two rows, never on the
// tile it was computed in or on the worker count.

const tileR, tileS = 3, 3

// dotTile accumulates, for the full 8-blocks (n8 of them), the lane sums of
// the 3×3 tile into acc ((r·3+s)·8 + lane). Rows may repeat (edge tiles).
var dotTile = dotTileGeneric

func dotTileGeneric(x0, x1, x2, w0, w1, w2 []float32, n8 int, acc *[72]float32) {
	xs := [3][]float32{x0, x1, x2}
	ws := [3][]float32{w0, w1, w2}
	for r := 0; r < 3; r++ {
		for s := 0; s < 3; s++ {
			a := (*[8]float32)(acc[(r*3+s)*8:])
			xr, wr := xs[r][:n8*8], ws[s][:n8*8]
			for i := 0; i < len(xr); i += 8 {
				xv := (*[8]float32)(xr[i:])
				wv := (*[8]float32)(wr[i:])
				for j := 0; j < 8; j++ {
					a[j] += float32(xv[j] * wv[j])
				}
			}
		}
	}
}

// finishDot adds the tail elements [8·n8, n) to the lanes and reduces them.
func finishDot(a *[8]float32, x, w []float32, n8, n int) float32 {
	for k := n8 * 8; k < n; k++ {
		a[k-n8*8] += float32(x[k] * w[k])
	}
	return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

// dotRef is one output element computed alone, with the kernel's arithmetic
// (the definition the tests check every path against).
func dotRef(x, w []float32, n int) float32 {
	var a [8]float32
	n8 := n / 8
	for k := 0; k < n8*8; k++ {
		a[k%8] += float32(x[k] * w[k])
	}
	return finishDot(&a, x, w, n8, n)
}

// gemmNT sets dst[r·ldd + o] = x[r·ldx:]·w[o·ldw:] over n elements, for
// r < m and o < outs, on the calling goroutine.
func gemmNT(dst []float32, ldd int, x []float32, ldx, m int, w []float32, ldw, outs, n int) {
	if m <= 0 || outs <= 0 {
		return
	}
	n8 := n / 8
	var acc [72]float32
	row := func(b []float32, ld, i, last int) []float32 {
		i = min(i, last)
		return b[i*ld : i*ld+n]
	}
	for o0 := 0; o0 < outs; o0 += tileS {
		w0, w1, w2 := row(w, ldw, o0, outs-1), row(w, ldw, o0+1, outs-1), row(w, ldw, o0+2, outs-1)
		for r0 := 0; r0 < m; r0 += tileR {
			x0, x1, x2 := row(x, ldx, r0, m-1), row(x, ldx, r0+1, m-1), row(x, ldx, r0+2, m-1)
			acc = [72]float32{}
			if n8 > 0 {
				dotTile(x0, x1, x2, w0, w1, w2, n8, &acc)
			}
			xs := [3][]float32{x0, x1, x2}
			ws := [3][]float32{w0, w1, w2}
			for r := 0; r < tileR && r0+r < m; r++ {
				d := dst[(r0+r)*ldd+o0:]
				for s := 0; s < tileS && o0+s < outs; s++ {
					d[s] = finishDot((*[8]float32)(acc[(r*3+s)*8:]), xs[r], ws[s], n8, n)
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
// multiple of the tile height, about 32 KiB of float32, and small enough
// that every worker gets several panels.
func panelRows(outs, in, nw int) int {
	p := max(tileS, (32<<10)/(4*max(1, in)))
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
