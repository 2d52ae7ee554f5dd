package archive

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
)

// StreamOptions control Stream.
type StreamOptions struct {
	// Overwrite lets the output replace an existing file (never the source).
	Overwrite bool
	// AllowPartial accepts a partially downloaded source; only its complete
	// layers are candidates.
	AllowPartial bool
}

// StreamTensor is one tensor's share of a Stream output.
type StreamTensor struct {
	Name string
	// Layers is how many layers the output holds; SourceLayers how many the
	// source had available (1 and 1 for passthrough).
	Layers, SourceLayers int
	// Bytes is the tensor's chunk bytes in the output.
	Bytes int64
	// DuplicateOf names the tensor whose bytes a duplicate shares (it
	// has what that tensor has).
	DuplicateOf string
}

// StreamReport describes what Stream wrote.
type StreamReport struct {
	// Bytes is the output's size on disk, header and index included; it
	// is ≤ MaxBytes.
	Bytes, MaxBytes int64
	// MinBytes is the smallest archive possible (base layers and
	// passthrough only); FullBytes the archive with every available layer.
	MinBytes, FullBytes int64
	Tensors             []StreamTensor
	// LayersIncluded and LayersAvailable count coded tensors' layers.
	LayersIncluded, LayersAvailable int
	// Errors over coded tensors: before = the source with every available
	// layer, after = the output. RelErr = √(ΣSqErr/ΣNorm2).
	Norm2                     float64
	SqErrBefore, SqErrAfter   float64
	RelErrBefore, RelErrAfter float64
	// SourceDamage lists the source's chunks that the output leaves out
	// and that fail their hash check: the output is intact (every chunk it
	// holds was checked while copied), but the source is damaged.
	SourceDamage []*IntegrityError
}

// BudgetError is Stream's refusal of a budget below the smallest possible
// archive (header, index, every base layer and passthrough tensor).
type BudgetError struct {
	Path               string
	MaxBytes, MinBytes int64
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("archive: stream %s: a budget of %d bytes is too small: header, index, base layers and passthrough tensors need at least %d bytes", e.Path, e.MaxBytes, e.MinBytes)
}

// Hint says what budget would do.
func (e *BudgetError) Hint() string { return fmt.Sprintf("allow at least %d bytes", e.MinBytes) }

// Stream writes to dst the best archive from src that fits in maxBytes real
// bytes on disk.
func Stream(ctx context.Context, src, dst string, maxBytes int64) (*StreamReport, error) {
	return StreamWith(ctx, src, dst, maxBytes, StreamOptions{})
}

// step adds layer `layer` of tensor t.
type step struct{ t, layer int }

// StreamWith is Stream with options.
//
// Every base layer and passthrough tensor is mandatory. Enhancement layers
// are ordered greedily by error reduction per byte: each tensor's remaining
// layers form a chain, and its next candidate is the run of layers with the
// best cumulative ratio (SqErr before − SqErr after)/bytes (so a weak layer
// that unlocks a strong one is judged together with it); the best candidate
// across tensors is taken, then that tensor's next run is considered. The
// output holds the longest prefix of that order that fits, cut only where
// the total error is no higher than at any shorter cut. Both the prefix
// rule and the cut rule make a larger budget never give a higher error.
// Sizes are exact: each candidate's index is laid out and measured.
func StreamWith(ctx context.Context, src, dst string, maxBytes int64, opt StreamOptions) (*StreamReport, error) {
	a, err := Open(src, OpenOptions{AllowPartial: opt.AllowPartial})
	if err != nil {
		return nil, err
	}
	defer a.Close()
	if err := checkOutput(dst, opt.Overwrite, []string{src}); err != nil {
		return nil, err
	}
	pl, err := planStream(a, maxBytes)
	if err != nil {
		return nil, err
	}
	ix, size := pl.ix, pl.size
	ts, avail := a.idx.Tensors, a.avail

	srcAt := func(s slot) (io.ReaderAt, int64) { return a.f, a.idx.ref(s).Offset }
	// A chunk whose bytes do not match the source index is reported as an
	// integrity error of the source.
	if err := assemble(dst, ix, CreateOptions{Overwrite: opt.Overwrite, Inputs: []string{src}}, srcAt, ctx.Err); err != nil {
		if ctx.Err() == nil {
			if verr := a.Verify(ctx); verr != nil {
				return nil, verr
			}
		}
		return nil, err
	}

	rep := &StreamReport{Bytes: size, MaxBytes: maxBytes, MinBytes: pl.minBytes, FullBytes: pl.fullBytes}
	// The chunks left out were never read; check them too, so a damaged
	// source does not pass unnoticed just because the budget skipped the
	// bad part.
	buf := make([]byte, 64<<10)
	for _, s := range a.idx.chunkOrder() {
		if s.layer == fileLayer || s.layer < len(ix.Tensors[s.t].Layers) || s.layer >= avail[s.t] {
			continue // copied (and checked), or not in a partial source
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := a.verifyChunk(s, buf); err != nil {
			var ie *IntegrityError
			if !errors.As(err, &ie) {
				return nil, err
			}
			rep.SourceDamage = append(rep.SourceDamage, ie)
		}
	}
	for i := range ts {
		t := &ts[i]
		o := &ix.Tensors[i]
		rep.Tensors = append(rep.Tensors, StreamTensor{Name: t.Name, Layers: max(1, len(o.Layers)), SourceLayers: avail[i], Bytes: o.Bytes(), DuplicateOf: t.DuplicateOf})
		if !t.Passthrough && t.DuplicateOf == "" {
			rep.LayersIncluded += len(o.Layers)
			rep.LayersAvailable += avail[i]
		}
	}
	before, after := a.Totals(), ix.Totals()
	rep.Norm2 = after.Norm2
	rep.SqErrBefore, rep.RelErrBefore = before.SqErr, before.RelErr
	rep.SqErrAfter, rep.RelErrAfter = after.SqErr, after.RelErr
	return rep, nil
}

// streamPlan is what Stream writes for one budget.
type streamPlan struct {
	ix                        *Index
	size, minBytes, fullBytes int64
}

// planStream picks the layers for maxBytes (see StreamWith) and lays out
// the output's index, without writing anything.
func planStream(a *Archive, maxBytes int64) (*streamPlan, error) {
	ts := a.idx.Tensors
	steps := streamOrder(ts, a.avail)
	inc := make([]int, len(ts))
	reset := func() {
		for i := range ts {
			inc[i] = 1
		}
	}
	// The total error is kept in a sumTree: the same pairwise sum as
	// Totals and the report, updated in O(log tensors) per step, so the cut
	// rule and the reported errors agree to the last bit.
	errs := make([]float64, len(ts))
	for i := range ts {
		if !ts[i].Passthrough && ts[i].DuplicateOf == "" {
			errs[i] = ts[i].Layers[0].SqErr
		}
	}
	tree := newSumTree(errs)
	// Cut points: prefix lengths whose total error is ≤ every shorter one's.
	best := tree.sum()
	cuts := []int{0}
	for j, s := range steps {
		tree.set(s.t, ts[s.t].Layers[s.layer].SqErr)
		if e := tree.sum(); e <= best {
			best = e
			cuts = append(cuts, j+1)
		}
	}
	build := func(j int) (*Index, int64, error) {
		reset()
		for _, s := range steps[:j] {
			inc[s.t] = s.layer + 1
		}
		ix := streamIndex(a.idx, inc)
		_, size, err := layout(ix)
		return ix, size, err
	}
	_, minBytes, err := build(0)
	if err != nil {
		return nil, err
	}
	_, fullBytes, err := build(len(steps))
	if err != nil {
		return nil, err
	}
	if minBytes > maxBytes {
		return nil, &BudgetError{Path: a.path, MaxBytes: maxBytes, MinBytes: minBytes}
	}
	// Sizes grow with the prefix (each step adds a chunk and index bytes),
	// so binary search the cut points for the last that fits.
	lo, hi := 0, len(cuts)-1 // cuts[lo] fits
	for lo < hi {
		mid := (lo + hi + 1) / 2
		_, size, err := build(cuts[mid])
		if err != nil {
			return nil, err
		}
		if size <= maxBytes {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	ix, size, err := build(cuts[lo])
	if err != nil {
		return nil, err
	}
	return &streamPlan{ix: ix, size: size, minBytes: minBytes, fullBytes: fullBytes}, nil
}

// streamIndex copies src keeping inc[i] layers of each coded tensor.
func streamIndex(src *Index, inc []int) *Index {
	ix := &Index{Header: cloneHeader(src.Header), Tensors: make([]TensorEntry, len(src.Tensors)), Files: append([]FileEntry(nil), src.Files...)}
	for i := range src.Tensors {
		t := src.Tensors[i]
		t.Shape = append([]int64{}, t.Shape...)
		switch {
		case t.DuplicateOf != "":
		case t.Passthrough:
			r := *t.Raw
			t.Raw = &r
		default:
			t.OmittedLayers += len(t.Layers) - inc[i]
			t.Layers = append([]LayerEntry(nil), t.Layers[:inc[i]]...)
		}
		ix.Tensors[i] = t
	}
	return ix
}

// run is a tensor's next candidate: layers from..to-1, gaining gain per
// byte.
type run struct {
	t, from, to int
	ratio       float64
}

type runHeap []run

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if h[i].ratio != h[j].ratio {
		return h[i].ratio > h[j].ratio
	}
	return h[i].t < h[j].t
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(run)) }
func (h *runHeap) Pop() any     { x := (*h)[len(*h)-1]; *h = (*h)[:len(*h)-1]; return x }

// bestRun is tensor t's best next run when layers 0…from-1 are included
// and `avail` are available: the end with the highest cumulative error
// reduction per byte (ties: the shortest run).
func bestRun(t *TensorEntry, ti, from, avail int) (run, bool) {
	if from >= avail {
		return run{}, false
	}
	base := t.Layers[from-1].SqErr
	var bytes int64
	r := run{t: ti, from: from}
	for j := from; j < avail; j++ {
		bytes += t.Layers[j].Chunk.Length
		ratio := (base - t.Layers[j].SqErr) / float64(max(bytes, 1))
		if j == from || ratio > r.ratio {
			r.to, r.ratio = j+1, ratio
		}
	}
	return r, true
}

// streamOrder is the greedy order of every available enhancement layer.
func streamOrder(ts []TensorEntry, avail []int) []step {
	h := &runHeap{}
	for i := range ts {
		if ts[i].Passthrough || ts[i].DuplicateOf != "" {
			continue
		}
		if r, ok := bestRun(&ts[i], i, 1, avail[i]); ok {
			*h = append(*h, r)
		}
	}
	heap.Init(h)
	var out []step
	for h.Len() > 0 {
		r := heap.Pop(h).(run)
		for k := r.from; k < r.to; k++ {
			out = append(out, step{r.t, k})
		}
		if nr, ok := bestRun(&ts[r.t], r.t, r.to, avail[r.t]); ok {
			heap.Push(h, nr)
		}
	}
	return out
}
