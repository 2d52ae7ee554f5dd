package compress

import (
	"context"
	"math/rand"
	"time"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/dtype"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/quality"
)

// Estimate is what a run of a plan would write and how long it would take,
// without running it: `seedlm compress --dry-run --json` prints it.
type Estimate struct {
	Input    string            `json:"input"`
	DryRun   bool              `json:"dry_run"`
	Workers  int               `json:"workers"`
	Kernel   string            `json:"kernel"`
	Settings map[string]string `json:"settings"`
	Part     *PartReport       `json:"part,omitempty"`
	// Objective, Sensitivity, Quality (the pending evaluation), EvalNote
	// and Search are the plan's (Plan).
	Objective   string                 `json:"objective,omitempty"`
	Sensitivity *quality.Sensitivities `json:"sensitivity,omitempty"`
	Quality     *archive.Quality       `json:"evaluation,omitempty"`
	EvalNote    string                 `json:"eval_note,omitempty"`
	Search      *Search                `json:"max_kl_search,omitempty"`
	Tensors     []EstimateRow          `json:"tensors"`
	// ExpectedPayloadBytes is the chunks' bytes (header and index not
	// counted); EstimatedSeconds the encode time at the measured rates.
	ExpectedPayloadBytes int64   `json:"expected_payload_bytes"`
	Weights              int64   `json:"weights"`
	EstimatedSeconds     float64 `json:"estimated_seconds"`
}

// EstimateRow is one tensor of an Estimate.
type EstimateRow struct {
	Name        string  `json:"name"`
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	Weights     int64   `json:"weights"`
	Rule        string  `json:"rule"`
	Passthrough bool    `json:"passthrough"`
	DuplicateOf string  `json:"duplicate_of,omitempty"`
	Codec       string  `json:"codec,omitempty"`
	// BitsPerWeight is the nominal rate of the codec (or the dtype's
	// width), ExpectedBytes the exact payload size.
	BitsPerWeight    float64 `json:"bits_per_weight"`
	ExpectedBytes    int64   `json:"expected_bytes"`
	EstimatedSeconds float64 `json:"estimated_seconds"`
	// Sensitivity is the output objective's measured sensitivity of the
	// tensor (TensorPlan.Sensitivity); 0 otherwise.
	Sensitivity float64 `json:"sensitivity,omitempty"`
}

// EstimateRun estimates the run of part of the plan on src: exact payload
// sizes, and encode times from this machine's measured rate for each codec
// (MeasureRate, on random weights: real weights often encode faster).
func EstimateRun(ctx context.Context, src checkpoint.Source, plan *Plan, part Part, workers int) (*Estimate, error) {
	workers = workersOr(workers)
	e := &Estimate{Input: src.Path(), DryRun: true, Workers: workers, Kernel: encoder.KernelName(), Settings: nonNil(plan.Settings),
		Objective: plan.Objective, Sensitivity: plan.Sensitivity, Quality: plan.Quality, EvalNote: plan.EvalNote, Search: plan.Search}
	if !part.Whole() {
		e.Part = &PartReport{Index: part.Index, Count: part.Count, Of: len(plan.Tensors)}
	}
	rates := map[encoder.Params]float64{}
	for _, i := range plan.positions(part) {
		p := &plan.Tensors[i]
		n := p.info().NumElements()
		r := EstimateRow{Name: p.Name, DType: p.DType, Shape: p.Shape, Weights: n, Rule: p.Rule, Passthrough: p.Passthrough, DuplicateOf: p.DuplicateOf, Sensitivity: p.Sensitivity}
		if p.DuplicateOf != "" {
			// Stored once, as its original: no bytes, no time.
		} else if p.Passthrough {
			// ByteLen is exact for sub-byte dtypes too (the reader checked
			// the file against it): no need to read the tensor.
			if sz, err := dtype.ByteLen(p.DType, p.Shape); err == nil {
				r.ExpectedBytes = sz
			} else if raw, err := src.ReadRaw(p.Name); err == nil {
				r.ExpectedBytes = int64(len(raw))
			}
			if n > 0 {
				r.BitsPerWeight = float64(r.ExpectedBytes) * 8 / float64(n)
			}
		} else {
			r.Codec = LayersString(p.Layers)
			for _, lp := range p.Layers {
				r.BitsPerWeight += lp.BitsPerWeight()
				r.ExpectedBytes += int64(lp.PayloadBytes(int(n)))
				rate, ok := rates[lp]
				if !ok {
					var err error
					if rate, err = MeasureRate(ctx, lp, workers); err != nil {
						return nil, err
					}
					rates[lp] = rate
				}
				r.EstimatedSeconds += float64(n) / rate
			}
		}
		e.ExpectedPayloadBytes += r.ExpectedBytes
		e.Weights += n
		e.EstimatedSeconds += r.EstimatedSeconds
		e.Tensors = append(e.Tensors, r)
	}
	return e, nil
}

// MeasureRate times the encoder on random normal weights with p, in
// weights per second with workers goroutines: one warm-up run (it builds
// the per-K tables), then growing runs until one takes at least 100 ms.
// Real weights often encode faster than random ones (the search prunes
// more), so this errs on the slow side.
func MeasureRate(ctx context.Context, p encoder.Params, workers int) (float64, error) {
	rng := rand.New(rand.NewSource(1))
	gen := func(blocks int) []float32 {
		w := make([]float32, blocks*p.BlockSize)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		return w
	}
	opt := encoder.Options{Workers: workers}
	if _, err := encoder.EncodeLayer(ctx, "calibration", gen(workers), p, opt); err != nil {
		return 0, err
	}
	blocks := 16 * workers
	for {
		w := gen(blocks)
		t0 := time.Now()
		if _, err := encoder.EncodeLayer(ctx, "calibration", w, p, opt); err != nil {
			return 0, err
		}
		d := time.Since(t0)
		if d >= 100*time.Millisecond || blocks >= 1<<16 {
			return float64(len(w)) / max(d.Seconds(), 1e-9), nil
		}
		blocks *= 4
	}
}

// SlowSecondsPerMillion is the encode time per million weights above which
// compress warns before starting (the paper's C8 P3 K16 takes a few seconds
// per million weights on a 2-core machine).
const SlowSecondsPerMillion = 180

// SlowEstimate says whether encoding part of the plan would be slow: when
// some codec is off the cost model's known-fast range (presets.LayerCost
// above 4× the paper's, or a block smaller than 8), it times the encoder
// as --dry-run does (EstimateRun) and returns the estimate, and slow when
// it exceeds SlowSecondsPerMillion per million coded weights. Plans of
// known-fast codecs return at once (nil), costing nothing.
func SlowEstimate(ctx context.Context, src checkpoint.Source, plan *Plan, part Part, workers int) (*Estimate, bool, error) {
	suspect := false
	for _, i := range plan.positions(part) {
		t := &plan.Tensors[i]
		if t.Passthrough || t.DuplicateOf != "" {
			continue
		}
		for _, l := range t.Layers {
			if presets.LayerCost(l) > 4 || l.BlockSize < 8 {
				suspect = true
			}
		}
	}
	if !suspect {
		return nil, false, nil
	}
	e, err := EstimateRun(ctx, src, plan, part, workers)
	if err != nil {
		return nil, false, err
	}
	coded := e.CodedWeights()
	return e, coded > 0 && e.EstimatedSeconds/(float64(coded)/1e6) > SlowSecondsPerMillion, nil
}

// CodedWeights is the weights the estimate's coded tensors hold.
func (e *Estimate) CodedWeights() int64 {
	var n int64
	for _, r := range e.Tensors {
		if !r.Passthrough && r.DuplicateOf == "" {
			n += r.Weights
		}
	}
	return n
}
