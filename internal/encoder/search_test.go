package encoder

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/seedlm/seedlm/internal/safetensors"
)

// windowFloorBlocks are blocks whose norms straddle the smallest step of a
// nonzero code (2^{emin+bias}), where quantization rather than the fit
// decides the error and the σ-class bounds do the pruning, plus sparse
// blocks (one large weight among tiny ones) that almost every seed fits
// exactly before quantization. The first block is large and fixes the
// exponent bias.
func windowFloorBlocks(seed uint64, n int, p Params) ([][]float64, int) {
	r := rand.New(rand.NewPCG(seed, 5))
	C := p.BlockSize
	ws := gaussBlocks(seed, n, C, 1)
	big := []float32{}
	for _, x := range ws[0] {
		big = append(big, float32(x))
	}
	bias := ExpBias(big, p)
	floor := math.Ldexp(1, p.emin()+bias)
	for i, w := range ws[1:] {
		var n2 float64
		for _, x := range w {
			n2 += x * x
		}
		// Target norms from 1e-4 to 30 smallest steps, log-uniform.
		target := floor * math.Pow(10, -4+5.5*r.Float64())
		s := target / math.Sqrt(n2)
		for c := range w {
			w[c] = float64(float32(w[c] * s))
		}
		if i%4 == 3 { // sparse: one weight dominates
			k := r.IntN(C)
			for c := range w {
				if c != k {
					w[c] = float64(float32(w[c] * 1e-6))
				}
			}
		}
	}
	return ws, bias
}

// The pruned search must keep the brute-force argmin for blocks near the
// bottom of the exponent window and for sparse blocks, with every kernel.
func TestSearchNearWindowFloor(t *testing.T) {
	for _, tc := range []struct {
		p Params
		n int
	}{
		{Params{8, 3, 10, 4, 4}, 300},
		{Params{12, 4, 9, 3, 3}, 150},
		{Params{8, 2, 10, 2, 2}, 150},
		{Params{16, 3, 9, 4, 1}, 80},
		{Paper4Bit, 16},
	} {
		if testing.Short() && tc.p.SeedBits > 10 {
			continue
		}
		ws, bias := windowFloorBlocks(uint64(tc.p.BlockSize*7+tc.p.SeedBits), tc.n, tc.p)
		want := reference(t, tc.p, bias, ws)
		checkKernels(t, tc.p, bias, ws, want, KernelAuto, kernelLooped, KernelGeneric)
	}
}

// Seeds wider than 16 bits go through projections of the truncated basis
// (the truncation error in the margin); they must keep the brute-force
// argmin too. K = 17 keeps the brute force affordable.
func TestSearchWideSeeds(t *testing.T) {
	if testing.Short() {
		t.Skip("brute force over 2^17 seeds")
	}
	for _, p := range []Params{{8, 3, 17, 4, 4}, {24, 3, 17, 3, 3}} {
		ws := gaussBlocks(77, 8, p.BlockSize, 1)
		ws = append(ws, edgeBlocks(p.BlockSize)[5:8]...)
		want := reference(t, p, 0, ws)
		checkKernels(t, p, 0, ws, want, KernelAuto, kernelLooped, KernelGeneric)
	}
}

// The assembly projections equal their Go twin bit for bit (exact integer
// sums, one float32 rounding), for every pair count, both the unrolled and
// looped kernels, and truncated (K > 16) bases.
func TestProjectionsMatchGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for _, p := range []Params{{8, 3, 16, 4, 4}, {7, 2, 12, 4, 4}, {12, 4, 16, 4, 4}, {33, 3, 10, 4, 4}, {70, 2, 9, 4, 4}, {8, 3, 20, 4, 4}, {24, 4, 18, 3, 3}, {5, 1, 21, 4, 4}} {
		dec, err := decTableFor(p.SeedBits, p.LatentDim)
		if err != nil {
			t.Fatal(err)
		}
		// The projections need only the decimated cycle, not the tables.
		bs := &basis{K: p.SeedBits, C: p.BlockSize, P: p.LatentDim, L: 1<<p.SeedBits - 1, dec: dec}
		for _, k := range []Kernel{KernelAuto, kernelLooped} {
			var tl tile
			tl.np = (p.BlockSize + 1) / 2
			for l := 0; l < lanes; l++ {
				w := make([]float64, p.BlockSize)
				for c := range w {
					w[c] = float64(float32(r.NormFloat64() * math.Ldexp(1, r.IntN(60)-30)))
				}
				tl.setLane(l, w)
			}
			k0 := r.IntN(bs.L / p.LatentDim)
			nk := 37
			got := make([]float32, nk*p.LatentDim*lanes)
			want := make([]float32, len(got))
			kernelsFor(k, bs).proj(dec, &tl, k0, nk, got)
			projGeneric(dec, &tl, k0, nk, want)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%v kernel %d: projection %d is %v, Go twin %v", p, k, i, got[i], want[i])
				}
			}
		}
	}
}

// No float32 subnormal reaches the kernels, whatever the weights: on some
// CPUs every arithmetic operation on one takes a microcode assist (issue:
// a tensor with 20 % of its weights at 1e-42 encoded 37× slower).
func TestKernelInputsNeverSubnormal(t *testing.T) {
	p := Paper4Bit
	bs, err := basisFor(p)
	if err != nil {
		t.Fatal(err)
	}
	s := newSearcher(newQuantizer(p, bs, 0, true), KernelAuto)
	s.startTile()
	// Write the ill kernels' thresholds too (the scan leaves them to
	// searchTile's update before searchIll), so both tables are checked.
	s.t.scanOnly = false
	r := rand.New(rand.NewPCG(9, 9))
	check := func(name string, x float32) {
		if x != 0 && math.Abs(float64(x)) < 0x1p-126 {
			t.Fatalf("%s: subnormal %g reaches the kernels", name, x)
		}
	}
	for trial := 0; trial < 50; trial++ {
		for l := 0; l < lanes; l++ {
			w := make([]float64, 8)
			for c := range w {
				switch r.IntN(4) {
				case 0:
					w[c] = float64(float32(1e-42 * (1 + float64(r.IntN(10)))))
				case 1:
					w[c] = float64(float32(r.NormFloat64() * 1e-40))
				default:
					w[c] = float64(float32(r.NormFloat64() * math.Ldexp(1, r.IntN(200)-100)))
				}
			}
			s.t.setLane(l, w)
			var n2 float64
			for _, x := range w {
				n2 += x * x
			}
			s.t.setThreshold(l, n2, n2*r.Float64())
		}
		for _, x := range s.t.wf[:8*lanes] {
			check("block weight", x)
		}
		for _, x := range s.t.n2 {
			check("‖w̃‖²", x)
		}
		for c := range s.t.thr {
			for l := range s.t.thr[c] {
				check("threshold", s.t.thr[c][l])
				check("threshold", s.t.thrK[c][l])
			}
		}
		s.c0, s.c1 = 0, 0
		s.project(r.IntN(bs.L))
		for _, x := range s.buf[:chunkSeeds*lanes] {
			check("projection", x)
		}
	}
	for _, x := range bs.pcoef {
		check("pair coefficient", x)
	}
}

// The pair kernels report the same (pair, lane, seed) hits as their Go twin
// over whole cycles, with thresholds spread over the bounds' range so that
// hits are frequent; they may differ only where the bound is within
// float32 rounding of the threshold (the margins cover that).
func TestPairKernelsMatchGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	for _, p := range []Params{Paper4Bit, Paper3Bit, {4, 1, 10, 4, 4}, {6, 2, 10, 4, 4}, {12, 5, 9, 4, 4}, {16, 6, 9, 4, 4}, {16, 7, 9, 4, 4}, {20, 8, 9, 4, 4}, {8, 3, 17, 4, 4}} {
		bs, err := basisFor(p)
		if err != nil {
			t.Fatal(err)
		}
		qz := newQuantizer(p, bs, 0, true)
		fast, slow := newSearcher(qz, KernelAuto), newSearcher(qz, KernelGeneric)
		fast.startTile()
		slow.t = fast.t
		slow.startTile()
		for l, w := range gaussBlocks(uint64(p.SeedBits), lanes, p.BlockSize, 1) {
			fast.t.setLane(l, w)
			for c := range fast.t.thrK {
				fast.t.thrK[c][l] = float32(r.Float64()) * fast.t.n2[l]
			}
		}
		type hit struct {
			pos  int
			mask uint32
		}
		all := func(s *searcher) []hit {
			var hs []hit
			end := 2 * len(bs.pclass)
			for pos := 0; pos < end; {
				p, mask := s.scan(pos, end)
				if mask == 0 {
					break
				}
				hs = append(hs, hit{p, mask})
				pos = p + 2
			}
			return hs
		}
		// Both searchers project their own buffers; the slow one is the
		// reference for the values near the threshold.
		hf, hs := all(fast), all(slow)
		set := func(hs []hit) map[[3]int]bool {
			m := map[[3]int]bool{}
			for _, h := range hs {
				for b := 0; b < 2*lanes; b++ {
					if h.mask>>b&1 != 0 {
						m[[3]int{h.pos + b/lanes, b % lanes}] = true
					}
				}
			}
			return m
		}
		sf, ss := set(hf), set(hs)
		if len(ss) < 100 {
			t.Fatalf("%v: only %d hits: the test does not exercise the kernels", p, len(ss))
		}
		differ := 0
		for k := range sf {
			if !ss[k] {
				differ++
			}
		}
		for k := range ss {
			if !sf[k] {
				differ++
			}
		}
		// Borderline values: at most a handful in thousands of hits.
		if differ > len(ss)/1000+2 {
			t.Errorf("%v: kernel and Go twin differ on %d of %d hits", p, differ, len(ss))
		}
		t.Logf("%v: %d hits, %d differ", p, len(ss), differ)
	}
}

// Tensors of subnormal-laden and very small or very large weights code as
// well as ordinary ones: the exponent bias reaches every float32 magnitude
// (issue: Gaussian weights ×1e-34 gave relative error 0.55, ×3e37 gave 1.0).
func TestExtremeMagnitudes(t *testing.T) {
	p := Params{8, 3, 10, 4, 4}
	base := gaussTensor(12, 8*400, 1)
	ref, err := Encode(context.Background(), "t", base, []Params{p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, scale := range []float64{1e-34, 1e-38, 1e-41, 3e37, 5e37} {
		w := make([]float32, len(base))
		for i, x := range base {
			w[i] = float32(math.Max(-math.MaxFloat32, math.Min(math.MaxFloat32, float64(x)*scale)))
		}
		res, err := Encode(context.Background(), "t", w, []Params{p}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := res.RelErr(0)
		t.Logf("×%g: relative error %.4f (bias %d; ×1: %.4f)", scale, got, res.Layers[0].ExpBias, ref.RelErr(0))
		// Below 1e-38 the input itself is quantized by float32's subnormal
		// grid, and the decoder rounds to it too: a little more error.
		tol := 0.01
		if scale < 1e-40 {
			tol = 0.05
		}
		if math.IsNaN(got) || got > ref.RelErr(0)+tol {
			t.Errorf("×%g: relative error %.4f, want within %.2f of %.4f", scale, got, tol, ref.RelErr(0))
		}
	}
}

// A tensor with 20 % of its weights at 1e-42 costs no more candidate
// evaluations per block than the same tensor without them.
func TestSubnormalWeightsNoExtraWork(t *testing.T) {
	p := Params{8, 3, 12, 4, 4}
	var counts [2]float64
	for i, frac := range []float64{0, 0.2} {
		w := gaussTensor(13, 8*512, 1)
		r := rand.New(rand.NewPCG(1, 2))
		for j := range w {
			if r.Float64() < frac {
				w[j] = 1e-42
			}
		}
		counts[i] = candidatesPerBlock(t, p, w)
	}
	t.Logf("candidates per block: %.1f plain, %.1f with 20%% subnormals", counts[0], counts[1])
	if counts[1] > 1.5*counts[0]+2 {
		t.Errorf("subnormals: %.1f candidates per block against %.1f", counts[1], counts[0])
	}
}

// candidatesPerBlock runs the pruned search over w's blocks and returns the
// kernel hits per block.
func candidatesPerBlock(t *testing.T, p Params, w []float32) float64 {
	t.Helper()
	bs, err := basisFor(p)
	if err != nil {
		t.Fatal(err)
	}
	s := newSearcher(newQuantizer(p, bs, ExpBias(w, p), true), KernelAuto)
	C := p.BlockSize
	nb := p.Blocks(len(w))
	ws := make([][]float64, nb)
	for b := range ws {
		ws[b] = make([]float64, C)
		for c := 0; c < C && b*C+c < len(w); c++ {
			ws[b][c] = float64(w[b*C+c])
		}
	}
	out := make([]code, nb)
	for b := 0; b < nb; b += lanes {
		e := min(b+lanes, nb)
		s.searchTile(ws[b:e], out[b:e])
	}
	return float64(s.candidates) / float64(nb)
}

// Real weights far below their tensor's largest (PP-OCRv4 has whole
// channels of subnormals and near-zeros) must not make every seed a
// candidate: before the σ-class bounds, conv2d_106.w_0 made 1,165
// candidates per block (70× a Gaussian tensor).
func TestRealWeightsCandidates(t *testing.T) {
	if testing.Short() {
		t.Skip("K=16 search over real tensors")
	}
	path := "../../../shared/data/ppocrv4-rec/ch_PP-OCRv4_rec.f32.safetensors"
	f, err := safetensors.Open(path)
	if err != nil {
		t.Skipf("real weights not available: %v", err)
	}
	defer f.Close()
	for _, name := range []string{"conv2d_106.w_0", "conv2d_118.w_0"} {
		w, err := f.ReadFloat32(name)
		if err != nil {
			t.Fatal(err)
		}
		w = w[:min(len(w), 8*1024)]
		got := candidatesPerBlock(t, Paper4Bit, w)
		t.Logf("%s: %.1f candidates per block", name, got)
		if got > 60 {
			t.Errorf("%s: %.1f candidates per block", name, got)
		}
	}
}

// searchTile's check of quickPair's upper bounds: with every bound made
// too low (half the true one), pruning goes wrong, the check must catch
// it, and the blocks searched again must still get the brute-force argmin.
func TestQuickPairBoundsChecked(t *testing.T) {
	p := Params{8, 3, 10, 4, 4}
	ws := gaussBlocks(31, 200, p.BlockSize, 1)
	want := reference(t, p, 0, ws)
	bs, err := basisFor(p)
	if err != nil {
		t.Fatal(err)
	}
	quickPairHook = func(ub float64) float64 { return ub / 2 }
	defer func() { quickPairHook = nil }()
	for _, k := range []Kernel{KernelAuto, KernelGeneric} {
		s := newSearcher(newQuantizer(p, bs, 0, true), k)
		out := make([]code, len(ws))
		for b := 0; b < len(ws); b += lanes {
			e := min(b+lanes, len(ws))
			s.searchTile(ws[b:e], out[b:e])
		}
		for i := range ws {
			if out[i] != want[i] {
				t.Fatalf("kernel %d block %d: seed %d, reference %d", k, i, out[i].seed, want[i].seed)
			}
		}
		if s.redone == 0 {
			t.Fatalf("kernel %d: no block searched again with bounds made too low", k)
		}
		t.Logf("kernel %d: %d of %d blocks searched again", k, s.redone, len(ws))
	}
}
