package compress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/presets"
	"github.com/seedlm/seedlm/internal/quality"
	"github.com/seedlm/seedlm/internal/tempfile"
)

// PlanFormat names the plan file format (docs/SCALE-OUT.md).
const PlanFormat = "seedlm-plan/1"

// Plan is what compress will do with every tensor of one source, decided
// once: the settings record, each tensor's codec (or exact storage), the
// target allocation's results and the warnings. It is JSON-serialisable
// and its SHA256 covers everything else in it, so parts made from one plan
// file can prove it.
type Plan struct {
	Format        string            `json:"format"` // PlanFormat
	SeedlmVersion string            `json:"seedlm_version"`
	Source        Source            `json:"source"`
	Settings      map[string]string `json:"settings,omitempty"` // Settings.Record
	Tensors       []TensorPlan      `json:"tensors"`
	// Sidecars are the model folder's small files stored byte for byte
	// (config.json, tokenizer files, ...); SkippedFiles the folder's other
	// entries, "name: reason" (the input was a folder; else both empty).
	Sidecars     []Sidecar `json:"sidecars,omitempty"`
	SkippedFiles []string  `json:"skipped_files,omitempty"`
	Warnings     []string  `json:"warnings,omitempty"`
	// Objective is what the target allocation minimized (presets
	// Objectives: "output", "relative" or "weights"); "" when the plan
	// allocated nothing.
	Objective string `json:"objective,omitempty"`
	// Sensitivity describes the output objective's probes (each tensor's
	// measured sensitivity is TensorPlan.Sensitivity); nil otherwise.
	Sensitivity *quality.Sensitivities `json:"sensitivity,omitempty"`
	// Model identifies the model config the output objective, max_kl or
	// the evaluation used.
	Model *ModelRef `json:"model,omitempty"`
	// Quality is the evaluation a run makes, as the archive's pending
	// quality record (text and tokens; the run fills the figures); nil
	// when the run makes none.
	Quality *archive.Quality `json:"quality,omitempty"`
	// EvalNote says why the plan makes no evaluation of a supported model
	// (the automatic rule), for the summary.
	EvalNote string `json:"eval_note,omitempty"`
	// Search is max_kl's budget search.
	Search *Search `json:"search,omitempty"`
	// SHA256 is the SHA-256 of the plan's compact JSON encoding with this
	// field empty (lowercase hex).
	SHA256 string `json:"sha256"`

	// evaluator is max_kl's, kept for the run's final evaluation when
	// the same process runs the plan (not serialised).
	evaluator *quality.Evaluator
}

// TensorPlan is one tensor's plan.
type TensorPlan struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Shard string  `json:"shard,omitempty"`
	// Rule names what decided the plan (presets.TensorPlan.Rule).
	Rule        string           `json:"rule"`
	Passthrough bool             `json:"passthrough"`
	Layers      []encoder.Params `json:"layers,omitempty"`
	// DuplicateOf names an earlier tensor with byte-identical contents
	// (tied weights), found before allocation: the archive stores that
	// tensor once and this one as a reference to it. Passthrough and
	// Layers mirror that tensor's; PlannedBits is 0.
	DuplicateOf string `json:"duplicate_of,omitempty"`
	// PlannedBits is the planned payload in bits (index excluded).
	PlannedBits int64 `json:"planned_bits"`
	// The target allocation's measurements (Measured): ‖w‖² and the
	// sampled estimate of ‖w − ŵ‖².
	Norm2    float64 `json:"norm2,omitempty"`
	EstSqErr float64 `json:"est_sq_err,omitempty"`
	Measured bool    `json:"measured,omitempty"`
	// Sensitivity is the tensor's measured sensitivity S (the output
	// objective's: predicted KL per unit relative squared error, rounded
	// to 4 significant digits), 0 under other objectives.
	Sensitivity float64 `json:"sensitivity,omitempty"`
	// SHA256 is the SHA-256 of the tensor's bytes (checkpoint.Source
	// ReadRaw), recorded by plans made with HashTensors; a run checks the
	// tensors it reads against it.
	SHA256 string `json:"sha256,omitempty"`
}

func (t *TensorPlan) info() checkpoint.TensorInfo {
	return checkpoint.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Shard: t.Shard}
}

// PlanOptions tune MakePlan; none changes the plan but HashTensors.
type PlanOptions struct {
	// Workers for the target allocation's measurements and the hashing
	// (0: GOMAXPROCS).
	Workers int
	// Progress, when set, is called after each tensor a measuring pass
	// reads.
	Progress func(done, total int, name string)
	// Stage, when set, is told what planning does next beyond measuring
	// ("sensitivity probes", "max_kl search: plan 3", ...).
	Stage func(what string)
	// HashTensors records every tensor's SHA-256 (one read of the whole
	// model), for a plan file that parts on other machines check.
	HashTensors bool
}

// Version is this build's seedlm version ("(devel)" for a build outside a
// module release).
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// MakePlan decides what to do with every tensor of src (presets.Plan, with
// the archive's real header and index counted against a size target).
//
// For output quality it also: finds the model's config (Settings.
// ModelConfig, else config.json beside the input) when the forward pass
// runs it; resolves the objective of a target allocation (auto: output for
// a supported model AutoMemory can hold, relative otherwise) and measures
// the output objective's sensitivities; decides whether the run evaluates
// the compressed model (Settings.Eval, else the EvalShare rule); and for
// max_kl searches the allocation budget, evaluating candidate plans. All
// of it is recorded in the plan, so parts on other machines need none of
// it again.
func MakePlan(ctx context.Context, src checkpoint.Source, s Settings, opt PlanOptions) (*Plan, error) {
	if err := s.Validate(); err != nil {
		return nil, &SettingsError{Err: err}
	}
	id, err := identify(src)
	if err != nil {
		return nil, err
	}
	p := &Plan{Format: PlanFormat, SeedlmVersion: Version(), Source: id, Settings: s.Record()}
	if dir := checkpoint.Folder(src); dir != "" {
		if p.Sidecars, p.SkippedFiles, err = scanSidecars(dir, sourceFileNames(src)); err != nil {
			return nil, err
		}
	}
	if keys := checkpoint.NonTensorKeys(src); len(keys) > 0 {
		p.Warnings = append(p.Warnings, nonTensorWarning(src.Path(), keys))
	}
	dups, _, err := findDuplicates(ctx, src)
	if err != nil {
		return nil, err
	}
	hdr, err := p.header(src)
	if err != nil {
		return nil, err
	}
	q, err := planQuality(ctx, src, s, dups, opt)
	if err != nil {
		return nil, err
	}
	hdr.Quality = q.pending
	overhead := func(infos []checkpoint.TensorInfo, plans []presets.TensorPlan) int64 {
		return overheadBytes(hdr, infos, plans, p.Sidecars)
	}
	popt := presets.Options{
		Flags:         s.Flags,
		FlagOrigins:   s.FlagOrigins,
		Encoder:       encoder.Options{Workers: opt.Workers},
		Progress:      opt.Progress,
		OverheadBytes: overhead,
		Weigh:         q.weigh(),
		DuplicateOf:   dups,
	}
	if q.objective != nil {
		popt.Objective = q.objective.Name
	}
	var srch *searcher
	if q.intent.MaxKL > 0 {
		srch = newSearcher(src, q.evaluator, q.intent.MaxKL, opt.Workers, opt.Stage)
		popt.Search = srch.search
	}
	plans, warnings, err := presets.Plan(ctx, s.File, src, popt)
	if err != nil {
		var ue *presets.UnreachableError
		if errors.As(err, &ue) {
			return nil, &SettingsError{Err: err}
		}
		return nil, err
	}
	p.Warnings = append(p.Warnings, warnings...)
	if q.warning != "" {
		p.Warnings = append(p.Warnings, q.warning)
	}
	for i, t := range src.Tensors() {
		tp := plans[i]
		p.Tensors = append(p.Tensors, TensorPlan{
			Name: t.Name, DType: t.DType, Shape: t.Shape, Shard: t.Shard,
			Rule: tp.Rule, Passthrough: tp.Passthrough, Layers: tp.Layers, DuplicateOf: tp.DuplicateOf, PlannedBits: tp.Bits,
			Norm2: archive.RoundStat(tp.Norm2), EstSqErr: archive.RoundStat(tp.EstSqErr), Measured: tp.Measured,
		})
		if q.record != nil && tp.Measured {
			p.Tensors[i].Sensitivity = q.record.Of(t.Name)
		}
	}
	if q.objective != nil {
		p.Objective = q.objective.Name
	}
	p.Sensitivity = q.record
	p.Model = q.ref
	p.Quality = q.pending
	p.EvalNote = q.note
	if srch != nil {
		p.Search = srch.result
	}
	p.evaluator = q.evaluator
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("internal: %w", err)
	}
	if opt.HashTensors {
		if err := p.hashTensors(ctx, src, opt.Workers); err != nil {
			return nil, err
		}
	}
	p.SHA256 = p.contentHash()
	return p, nil
}

// nonTensorWarning lists a checkpoint's non-tensor entries, which the
// archive does not keep.
func nonTensorWarning(path string, keys []string) string {
	const show = 10
	list := strings.Join(keys[:min(show, len(keys))], ", ")
	if len(keys) > show {
		list += fmt.Sprintf(", and %d more", len(keys)-show)
	}
	return fmt.Sprintf("%s holds %d entr%s that %s not tensors, which the archive does not keep: %s", path, len(keys),
		map[bool]string{true: "y", false: "ies"}[len(keys) == 1], map[bool]string{true: "is", false: "are"}[len(keys) == 1], list)
}

// overheadBytes estimates the archive's header, index and sidecar files
// for these plans (tensors not yet decided counted with one layer).
func overheadBytes(h archive.Header, infos []checkpoint.TensorInfo, plans []presets.TensorPlan, sidecars []Sidecar) int64 {
	ts := make([]archive.TensorEntry, len(infos))
	for i, t := range infos {
		p := plans[i]
		e := archive.TensorEntry{Name: t.Name, DType: t.DType, Shape: t.Shape, Shard: archiveShard(h.SourceFormat, t.Shard), Rule: p.Rule, Passthrough: p.Passthrough, DuplicateOf: p.DuplicateOf}
		if e.DuplicateOf != "" {
			e.Rule = fmt.Sprintf("duplicate of %q", e.DuplicateOf)
		}
		if e.Rule == "" {
			e.Rule = "flags: target 1.000 bits/weight, measured allocation"
		}
		layers := p.Layers
		if !p.Passthrough && len(layers) == 0 {
			layers = []encoder.Params{encoder.Paper4Bit}
		}
		for _, l := range layers {
			e.Layers = append(e.Layers, archive.LayerEntry{Params: l})
		}
		ts[i] = e
	}
	files := make([]archive.FileEntry, len(sidecars))
	for i, s := range sidecars {
		files[i] = archive.FileEntry{Name: s.Name, Chunk: archive.ChunkRef{Length: s.Size}}
	}
	return archive.EstimateOverheadBytes(h, ts, files)
}

// hashTensors records every tensor's SHA-256, workers tensors at a time.
func (p *Plan) hashTensors(ctx context.Context, src checkpoint.Source, workers int) error {
	workers = max(1, min(workersOr(workers), len(p.Tensors)))
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(p.Tensors) || ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				raw, err := src.ReadRaw(p.Tensors[i].Name)
				if err != nil {
					errs[w] = err
					return
				}
				p.Tensors[i].SHA256 = sha256Hex(raw)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// contentHash is the SHA-256 of the plan's compact JSON with SHA256 empty.
func (p *Plan) contentHash() string {
	c := *p
	c.SHA256 = ""
	b, err := json.Marshal(&c)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	return sha256Hex(b)
}

// check validates a plan's own contents (a plan file is input).
func (p *Plan) check() error {
	if len(p.Tensors) > archive.MaxTensors {
		return fmt.Errorf("%d tensors, more than %d", len(p.Tensors), archive.MaxTensors)
	}
	names := make(map[string]int, len(p.Tensors))
	for i := range p.Tensors {
		t := &p.Tensors[i]
		if _, dup := names[t.Name]; t.Name == "" || dup {
			return fmt.Errorf("tensor %d: name %q is empty or repeated", i, t.Name)
		}
		names[t.Name] = i
		if t.DuplicateOf != "" {
			j, ok := names[t.DuplicateOf]
			if !ok {
				return fmt.Errorf("tensor %q: duplicate of %q, which is not an earlier tensor", t.Name, t.DuplicateOf)
			}
			o := &p.Tensors[j]
			if o.DuplicateOf != "" || o.DType != t.DType || !slices.Equal(o.Shape, t.Shape) || o.Passthrough != t.Passthrough || !slices.Equal(o.Layers, t.Layers) {
				return fmt.Errorf("tensor %q: duplicate of %q, which is a duplicate itself or has another dtype, shape or plan", t.Name, t.DuplicateOf)
			}
		}
		switch {
		case t.Passthrough && len(t.Layers) != 0:
			return fmt.Errorf("tensor %q: stored exactly, yet it lists layers", t.Name)
		case !t.Passthrough && (len(t.Layers) == 0 || len(t.Layers) > archive.MaxLayers):
			return fmt.Errorf("tensor %q: %d layers, want 1 to %d", t.Name, len(t.Layers), archive.MaxLayers)
		}
		for k, l := range t.Layers {
			if err := l.Validate(); err != nil {
				return fmt.Errorf("tensor %q layer %d: %w", t.Name, k, err)
			}
		}
		if t.DuplicateOf != "" {
			j := slices.IndexFunc(p.Tensors[:i], func(o TensorPlan) bool { return o.Name == t.DuplicateOf })
			if j < 0 {
				return fmt.Errorf("tensor %q: duplicate of %q, which is not an earlier tensor", t.Name, t.DuplicateOf)
			}
			k := &p.Tensors[j]
			if k.DType != t.DType || !slices.Equal(k.Shape, t.Shape) || k.Passthrough != t.Passthrough || !slices.Equal(k.Layers, t.Layers) {
				return fmt.Errorf("tensor %q: duplicate of %q but planned differently", t.Name, t.DuplicateOf)
			}
		}
		if !(t.Sensitivity >= 0) || math.IsInf(t.Sensitivity, 0) {
			return fmt.Errorf("tensor %q: sensitivity %g", t.Name, t.Sensitivity)
		}
	}
	if q := p.Quality; q != nil && (q.Text == "" || q.Tokens < 1 || !q.Pending()) {
		return fmt.Errorf("quality: want a pending record (text and tokens, no figures)")
	}
	if p.Quality != nil && p.Model == nil {
		return fmt.Errorf("quality: an evaluation without a model config")
	}
	return nil
}

// WriteFile writes the plan as indented JSON to path, through a temporary
// file beside it; an existing file is replaced only with overwrite.
func (p *Plan) WriteFile(path string, overwrite bool) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil && !overwrite {
		return fmt.Errorf("plan file %s already exists", path)
	}
	// A locked temp file: the next run in this folder sweeps it if this
	// one is killed (package tempfile).
	f, err := tempfile.Create(path)
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// maxPlanBytes bounds a plan file (≈ 500 bytes per tensor).
const maxPlanBytes = 1 << 30

// PlanFileError is a plan file that cannot be used: unreadable, not a plan,
// edited since it was made, or inconsistent.
type PlanFileError struct {
	Path   string
	Reason string
}

func (e *PlanFileError) Error() string { return fmt.Sprintf("plan %s: %s", e.Path, e.Reason) }

// Hint says what to do.
func (e *PlanFileError) Hint() string {
	return "make the plan again with seedlm plan (it writes the file whole, with its hash)"
}

// ReadPlan reads and checks a plan file: its format, its hash (a plan edited
// by hand or cut short is refused) and its contents.
func ReadPlan(path string) (*Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPlanBytes+1))
	if err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) error {
		return &PlanFileError{Path: path, Reason: fmt.Sprintf(format, a...)}
	}
	if len(b) > maxPlanBytes {
		return nil, bad("larger than %d bytes", maxPlanBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	p := new(Plan)
	if err := dec.Decode(p); err != nil {
		return nil, bad("not a plan file: %v", err)
	}
	if dec.More() {
		return nil, bad("trailing data after the plan")
	}
	if p.Format != PlanFormat {
		return nil, bad("format %q, this seedlm reads %q", p.Format, PlanFormat)
	}
	if got := p.contentHash(); got != p.SHA256 {
		return nil, bad("content hash %s does not match the recorded %s (the file was edited or damaged)", short(got), short(p.SHA256))
	}
	if err := p.check(); err != nil {
		return nil, bad("%v", err)
	}
	return p, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

// Summary totals a plan: tensors, weights, planned payload bytes and the
// estimated encode cost in C8 P3 K16 weight-equivalents (see Cost).
// Duplicates are counted apart from Coded and Passthrough.
type Summary struct {
	Tensors, Coded, Passthrough, Duplicates int
	Weights                                 int64
	PlannedBytes                            int64
	Cost                                    float64
}

// Summarize totals the plan.
func (p *Plan) Summarize() Summary {
	var s Summary
	for i := range p.Tensors {
		t := &p.Tensors[i]
		s.Tensors++
		s.Weights += t.info().NumElements()
		s.PlannedBytes += (t.PlannedBits + 7) / 8
		s.Cost += t.Cost()
		if t.DuplicateOf != "" {
			s.Duplicates++
		} else if t.Passthrough {
			s.Passthrough++
		} else {
			s.Coded++
		}
	}
	return s
}
