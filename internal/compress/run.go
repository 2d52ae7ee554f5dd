package compress

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/quality"
)

// MaxRelErr is the sanity bound on a coded tensor's relative weight error
// ‖w−ŵ‖/‖w‖: a tensor whose code would be at least this far off (every
// setting seedlm offers does far better on real weights, about 0.05–0.5;
// 1.0 is what storing zeros gives) is stored exactly instead, with a
// warning. It catches weights the codec cannot represent, such as values
// near the float32 limit, beyond its exponent range.
const MaxRelErr = 0.9

// storedExactly rounds res's error figures as the archive records them
// (archive.RoundStat) and applies the MaxRelErr rule to its last layer:
// rel is the coded relative error, exact whether the run stores the
// tensor exactly instead. The run and the max_kl search both decide here,
// so the search measures the plan the run writes.
func storedExactly(res *encoder.Result) (rel float64, exact bool) {
	res.Norm2 = archive.RoundStat(res.Norm2)
	for k := range res.SqErr {
		res.SqErr[k] = archive.RoundStat(res.SqErr[k])
	}
	rel = res.RelErr(len(res.Layers) - 1)
	return rel, res.Norm2 > 0 && rel >= MaxRelErr
}

// RunOptions tune Run; none of them changes the archive.
type RunOptions struct {
	// Workers is the number of encoder goroutines (0: GOMAXPROCS). Several
	// small tensors are encoded side by side, one large one by all workers.
	Workers int
	// Overwrite lets the archive replace an existing file at out (never an
	// input).
	Overwrite bool
	// PlanPath names the plan in errors ("" for a plan made in-process).
	PlanPath string
	// Progress, when set, is called with weights done (once per layer), from
	// several goroutines.
	Progress func(weights int64)
	// Started, when set, is called with each tensor's name as its encoding
	// starts (for a progress line).
	Started func(name string)
	// TensorDone, when set, is called after the i-th tensor of the run is
	// added to the archive, in order.
	TensorDone func(i int)
	// ModelConfig is the model's config.json for a plan that evaluates
	// ("": beside the input); it must be the file the plan used.
	ModelConfig string
	// Evaluating, when set, is called as the evaluation starts.
	Evaluating func()
}

// Weights is the work a run does, in weights once per layer: the total its
// Progress callbacks add up to.
func (p *Plan) Weights(part Part) int64 {
	var w int64
	for _, i := range p.positions(part) {
		t := &p.Tensors[i]
		if !t.Passthrough && t.DuplicateOf == "" {
			w += t.info().NumElements() * int64(len(t.Layers))
		}
	}
	return w
}

// Run encodes the tensors of part (all of them for the zero Part) as the
// plan says and writes the archive to out: a temporary file beside it,
// renamed into place only when complete, so an error or a cancelled ctx
// leaves nothing at out. A part archive records the part and the plan's
// hash for archive.Merge.
//
// Tensors are read and encoded several at a time (up to Workers small ones
// side by side, memory bounded to a few tensors) and added to the archive
// in plan order, so the archive is the same whatever the worker count.
func Run(ctx context.Context, src checkpoint.Source, plan *Plan, part Part, out string, opt RunOptions) (rep *Report, err error) {
	start := time.Now()
	if err := plan.Match(src, opt.PlanPath); err != nil {
		return nil, err
	}
	if !part.Whole() {
		if part.Count < 1 || part.Index < 0 || part.Index >= part.Count {
			return nil, fmt.Errorf("part %d of %d is out of range", part.Index, part.Count)
		}
	}
	pos := plan.positions(part)
	hdr, err := plan.header(src)
	if err != nil {
		return nil, err
	}
	hdr.Quality = plan.Quality
	var ev *runEval
	if plan.Quality != nil && part.Whole() {
		if ev, err = newRunEval(src, plan, opt); err != nil {
			return nil, err
		}
	}
	files, err := plan.readSidecars(src, opt.PlanPath)
	if err != nil {
		return nil, err
	}
	input := src.Path()
	if dir := checkpoint.Folder(src); dir != "" {
		input = dir
	}
	rep = &Report{Input: input, Output: out, SourceFormat: src.Format(), Tensors: len(pos),
		InputBytes: hdr.SourceBytes, Kernel: encoder.KernelName(), Settings: nonNil(hdr.Settings),
		Warnings: append([]string(nil), plan.Warnings...), PlanSHA256: plan.SHA256, SkippedFiles: plan.SkippedFiles,
		Objective: plan.Objective, Search: plan.Search, EvalNote: plan.EvalNote}
	for _, f := range files {
		rep.Files = append(rep.Files, FileStat{Name: f.Name, Bytes: int64(len(f.Data))})
		rep.FileBytes += int64(len(f.Data))
	}
	if s := plan.Sensitivity; s != nil {
		rep.Probes = s.Probes
	}
	if !part.Whole() {
		hdr.Part = &archive.Part{Index: part.Index, Count: part.Count, PlanSHA256: plan.SHA256, Tensors: len(plan.Tensors), Positions: pos}
		rep.Part = &PartReport{Index: part.Index, Count: part.Count, Of: len(plan.Tensors)}
		rep.InputBytes = rep.FileBytes // this part's share, summed below
	}
	w, err := archive.CreateWith(out, hdr, archive.CreateOptions{Overwrite: opt.Overwrite, Inputs: InputFiles(src), Plan: plannedTensors(plan, pos), Files: files})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	rep.Workers = workersOr(opt.Workers)
	tEnc := time.Now()
	var codedWeightLayers int64
	err = pipeline(ctx, src, plan, pos, rep.Workers, opt, func(k int, j *job) error {
		t := &plan.Tensors[j.pos]
		info := plan.archiveInfo(t)
		st := j.stat
		rep.Weights += st.Weights
		if !part.Whole() {
			if sz, ok := dtype.Size(t.DType); ok {
				rep.InputBytes += st.Weights * int64(sz)
			}
		}
		if t.DuplicateOf != "" {
			if err := w.AddDuplicate(info, st.Rule, t.DuplicateOf); err != nil {
				return err
			}
			rep.DuplicateTensors++
			rep.DuplicateWeights += st.Weights
		} else if j.raw != nil || j.res == nil {
			if err := w.AddPassthroughRule(info, st.Rule, j.raw); err != nil {
				return err
			}
			rep.PassthroughTensors++
			if j.warning != "" {
				rep.Warnings = append(rep.Warnings, j.warning)
			}
		} else {
			if err := w.AddCoded(info, st.Rule, j.res); err != nil {
				return err
			}
			if err := ev.keep(t, j.res); err != nil {
				return err
			}
			rep.CodedTensors++
			rep.CodedWeights += st.Weights
			codedWeightLayers += st.Weights * int64(len(j.res.Layers))
		}
		rep.PerTensor = append(rep.PerTensor, st)
		if opt.TensorDone != nil {
			opt.TensorDone(k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.EncodeSeconds = time.Since(tEnc).Seconds()
	if ev != nil {
		if opt.Evaluating != nil {
			opt.Evaluating()
		}
		t0 := time.Now()
		fig, warn, err := ev.run(ctx)
		if err != nil {
			return nil, err
		}
		if warn != "" {
			rep.Warnings = append(rep.Warnings, warn)
		}
		// max_kl's promise holds for what is written: the search measured
		// this plan, so a miss here is a bug, never a written archive.
		if srch := plan.Search; srch != nil && (fig == nil || quality.Round(*fig.KLMean) > srch.MaxKL) {
			kl := math.NaN()
			if fig != nil {
				kl = *fig.KLMean
			}
			return nil, fmt.Errorf("internal error: max_kl %g: the search measured KL %.4g for this plan, the written archive measures %.4g; nothing is written", srch.MaxKL, srch.KL, kl)
		}
		if err := w.SetQuality(fig); err != nil {
			return nil, err
		}
		rep.Quality = fig
		rep.EvalSeconds = time.Since(t0).Seconds()
		if msg := QualityWarning(fig); msg != "" {
			rep.Warnings = append(rep.Warnings, msg)
		}
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	// Every number below is measured from what was written.
	fi, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	rep.OutputBytes = fi.Size()
	if err := fillStoredBytes(out, rep); err != nil {
		return nil, err
	}
	if rep.EncodeSeconds > 0 {
		rep.WeightsPerSecond = float64(codedWeightLayers) / rep.EncodeSeconds
	}
	rep.WallSeconds = time.Since(start).Seconds()
	rep.finish()
	return rep, nil
}

// plannedTensors declares the run's tensors (those at positions pos) to the
// archive writer, so it lays the archive out before encoding and writes it
// in one pass. A tensor the run stores exactly after all (MaxRelErr) is
// still accepted: the writer moves it out of place and copies at Commit.
func plannedTensors(plan *Plan, pos []int) []archive.PlannedTensor {
	out := make([]archive.PlannedTensor, len(pos))
	for k, i := range pos {
		t := &plan.Tensors[i]
		out[k] = archive.PlannedTensor{Info: plan.archiveInfo(t), Rule: t.Rule, DuplicateOf: t.DuplicateOf}
		if !t.Passthrough {
			out[k].Layers = t.Layers
		}
	}
	return out
}

func workersOr(n int) int {
	if n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// job is one tensor in flight.
type job struct {
	pos     int
	cost    int64 // admission weight: the tensor's element count
	done    chan struct{}
	res     *encoder.Result
	raw     []byte // passthrough bytes (also a coded tensor stored exactly)
	warning string
	stat    TensorStat
	err     error
}

// memWeights is how many weights the pipeline keeps in flight beyond the
// largest tensor (≈ 12 bytes each while encoding: weights, reconstruction,
// residual): 32 Mi weights, about 400 MB.
const memWeights = 32 << 20

// pipeline runs the tensors at positions pos through read and encode, up to
// workers at a time and at most max(largest, memWeights) weights in flight,
// and hands them to add in order on the calling goroutine.
func pipeline(ctx context.Context, src checkpoint.Source, plan *Plan, pos []int, workers int, opt RunOptions, add func(k int, j *job) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var largest int64
	for _, i := range pos {
		largest = max(largest, plan.Tensors[i].info().NumElements())
	}
	budget := max(largest, memWeights)
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var inflight int64
	running := 0
	queue := make(chan *job, workers+1)
	// Every job goroutine has stopped reading src when pipeline returns.
	var jobs sync.WaitGroup
	defer jobs.Wait()
	go func() {
		defer close(queue)
		for _, i := range pos {
			j := &job{pos: i, cost: max(1, plan.Tensors[i].info().NumElements()), done: make(chan struct{})}
			mu.Lock()
			for ctx.Err() == nil && running > 0 && (running >= workers || inflight+j.cost > budget) {
				cond.Wait()
			}
			if ctx.Err() != nil {
				mu.Unlock()
				return
			}
			running++
			inflight += j.cost
			mu.Unlock()
			jobs.Add(1)
			go func() {
				defer jobs.Done()
				defer close(j.done)
				defer func() {
					if p := recover(); p != nil {
						j.err = fmt.Errorf("internal error encoding tensor %q: %v\n%s", plan.Tensors[i].Name, p, debug.Stack())
					}
					mu.Lock()
					running-- // the slot frees now; the weights once written
					cond.Broadcast()
					mu.Unlock()
				}()
				j.err = encodeOne(ctx, src, plan, j, workers, opt)
			}()
			select {
			case queue <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Wake the producer when ctx is cancelled from outside.
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		cond.Broadcast()
		mu.Unlock()
	})
	defer stop()
	k := 0
	var firstErr error
	for j := range queue {
		<-j.done
		if firstErr == nil {
			firstErr = j.err
			if firstErr == nil {
				firstErr = add(k, j)
			}
			if firstErr != nil {
				cancel()
			}
		}
		k++
		j.res, j.raw = nil, nil
		mu.Lock()
		inflight -= j.cost
		cond.Broadcast()
		mu.Unlock()
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// encodeOne reads and encodes one tensor (or reads it, for exact storage),
// checking its bytes against the plan's hash when the plan has one.
func encodeOne(ctx context.Context, src checkpoint.Source, plan *Plan, j *job, workers int, opt RunOptions) error {
	t := &plan.Tensors[j.pos]
	n := t.info().NumElements()
	t0 := time.Now()
	j.stat = TensorStat{Name: t.Name, DType: t.DType, Shape: t.Shape, Rule: t.Rule, Passthrough: t.Passthrough, Weights: n, DuplicateOf: t.DuplicateOf}
	defer func() { j.stat.Seconds = time.Since(t0).Seconds() }()
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.DuplicateOf != "" {
		// Stored as a reference; a plan file's hash still proves its bytes.
		if t.SHA256 != "" {
			_, err := readRaw(src, plan, t, opt.PlanPath)
			return err
		}
		return nil
	}
	if t.Passthrough {
		raw, err := readRaw(src, plan, t, opt.PlanPath)
		j.raw = raw
		return err
	}
	if opt.Started != nil {
		opt.Started(t.Name)
	}
	var wts []float32
	if t.SHA256 != "" {
		raw, err := readRaw(src, plan, t, opt.PlanPath)
		if err != nil {
			return err
		}
		wts = make([]float32, n)
		if err := dtype.ToFloat32(t.DType, wts, raw); err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
	} else {
		var err error
		if wts, err = src.ReadFloat32(t.Name); err != nil {
			return err
		}
	}
	res, err := encoder.Encode(ctx, t.Name, wts, t.Layers, encoder.Options{Workers: workers, Progress: layerProgress(t.Layers, n, opt.Progress)})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return fmt.Errorf("%s: %w", src.Path(), err)
	}
	// The archive stores the error figures rounded, and everything below
	// (the exact-storage check, the report) uses what it stores.
	if rel, exact := storedExactly(res); exact {
		// The code would lose the tensor: keep it exactly.
		raw, err := readRaw(src, plan, t, opt.PlanPath)
		if err != nil {
			return err
		}
		j.raw = raw
		j.stat.Passthrough = true
		j.stat.Rule = fmt.Sprintf("passthrough: coded relative error %.4f ≥ %g", rel, MaxRelErr)
		j.warning = fmt.Sprintf("tensor %q: coded with %s its relative weight error would be %.4f (≥ %g, no better than zeros): stored exactly instead (%d bytes)",
			t.Name, LayersString(t.Layers), rel, MaxRelErr, len(raw))
		return nil
	}
	j.res = res
	j.stat.Codec = LayersString(t.Layers)
	for k := range res.Layers {
		j.stat.RelErr = append(j.stat.RelErr, res.RelErr(k))
		j.stat.SNRdB = append(j.stat.SNRdB, archive.SNRdB(res.Norm2, res.SqErr[k]))
	}
	return nil
}

// readRaw reads a tensor's bytes and checks them against the plan's hash.
func readRaw(src checkpoint.Source, plan *Plan, t *TensorPlan, planPath string) ([]byte, error) {
	raw, err := src.ReadRaw(t.Name)
	if err != nil {
		return nil, err
	}
	if t.SHA256 != "" {
		if got := sha256Hex(raw); got != t.SHA256 {
			return nil, &MismatchError{Plan: planPath, Diffs: []string{fmt.Sprintf("tensor %q has other bytes than the plan's (SHA-256 %s, the plan's %s)", t.Name, short(got), short(t.SHA256))}}
		}
	}
	return raw, nil
}

// layerProgress turns the encoder's "blocks done" callbacks into weights
// done. Layers run one after another, so the running block count tells
// which layer (and block size) a callback belongs to.
func layerProgress(layers []encoder.Params, n int64, progress func(int64)) func(int) {
	if progress == nil {
		return nil
	}
	var done atomic.Int64
	ends := make([]int64, len(layers))
	var acc int64
	for i, p := range layers {
		acc += int64(p.Blocks(int(n)))
		ends[i] = acc
	}
	return func(blocks int) {
		after := done.Add(int64(blocks))
		li := sort.Search(len(ends), func(i int) bool { return ends[i] >= after })
		li = min(li, len(layers)-1)
		progress(min(int64(blocks)*int64(layers[li].BlockSize), n))
	}
}

// fillStoredBytes reads the committed archive's index for each tensor's
// stored bytes and the coded tensors' bits per weight.
func fillStoredBytes(path string, rep *Report) error {
	a, err := archive.Open(path, archive.OpenOptions{})
	if err != nil {
		return fmt.Errorf("re-reading %s: %w", path, err)
	}
	defer a.Close()
	var codedBytes int64
	for i := range rep.PerTensor {
		st := &rep.PerTensor[i]
		if e, ok := a.Entry(st.Name); ok {
			st.StoredBytes = e.Bytes()
			if e.DuplicateOf != "" {
				if o, ok := a.Entry(e.DuplicateOf); ok {
					rep.DuplicateBytesSaved += o.Bytes()
				}
			} else if !e.Passthrough {
				codedBytes += st.StoredBytes
			}
		}
	}
	if rep.CodedWeights > 0 {
		rep.CodedBitsPerWeight = float64(codedBytes) * 8 / float64(rep.CodedWeights)
	}
	tot := a.Totals()
	rep.RelErr, rep.SNRdB = tot.RelErr, tot.SNRdB()
	return nil
}

// LayersString is "C8 P3 K16 B4 E4", "2× C8 P3 K16 B4 E4" or a list joined
// by " + ".
func LayersString(ls []encoder.Params) string {
	if len(ls) == 0 {
		return "-"
	}
	same := true
	for _, p := range ls[1:] {
		if p != ls[0] {
			same = false
		}
	}
	if same {
		if len(ls) == 1 {
			return ls[0].String()
		}
		return fmt.Sprintf("%d× %s", len(ls), ls[0])
	}
	parts := make([]string, len(ls))
	for i, p := range ls {
		parts[i] = p.String()
	}
	return strings.Join(parts, " + ")
}
