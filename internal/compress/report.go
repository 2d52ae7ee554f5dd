package compress

import (
	"fmt"

	"github.com/seedlm/seedlm/internal/archive"
)

// Report is what a run did, measured from what it wrote: the one schema
// `seedlm compress --json` prints and scripts read.
type Report struct {
	Input              string `json:"input"`
	Output             string `json:"output"`
	SourceFormat       string `json:"source_format"`
	Tensors            int    `json:"tensors"`
	CodedTensors       int    `json:"coded_tensors"`
	PassthroughTensors int    `json:"passthrough_tensors"`
	// DuplicateTensors are stored as references to an earlier tensor with
	// the same bytes (tied weights); DuplicateWeights their weights, and
	// DuplicateBytesSaved the bytes their originals take (what storing
	// them again would have cost).
	DuplicateTensors    int   `json:"duplicate_tensors"`
	DuplicateWeights    int64 `json:"duplicate_weights"`
	DuplicateBytesSaved int64 `json:"duplicate_bytes_saved"`
	// Files are the model folder's sidecar files stored byte for byte
	// (FileBytes in all); SkippedFiles the folder's other entries, with
	// the reason ("name: reason").
	Files        []FileStat `json:"files,omitempty"`
	FileBytes    int64      `json:"file_bytes,omitempty"`
	SkippedFiles []string   `json:"skipped_files,omitempty"`
	Weights      int64      `json:"weights"`
	CodedWeights int64      `json:"coded_weights"`
	InputBytes   int64      `json:"input_bytes"`
	OutputBytes  int64      `json:"output_bytes"`
	RatioVsInput float64    `json:"ratio_vs_input"`
	RatioVsFP32  float64    `json:"ratio_vs_fp32"`
	// BitsPerWeight is the file's bits over all weights; CodedBitsPerWeight
	// the coded tensors' chunk bits over their weights.
	BitsPerWeight      float64 `json:"bits_per_weight"`
	CodedBitsPerWeight float64 `json:"coded_bits_per_weight"`
	// RelErr is √(Σ‖w−ŵ‖²/Σ‖w‖²) over the coded tensors (weight error, not
	// output quality); SNR in dB per tensor, nil when exact.
	RelErr float64 `json:"rel_err"`
	// SNRdB is the archive-wide SNR of the coded tensors (from the same
	// sums as RelErr: what inspect prints); SNRMeanDB the mean of the
	// tensors' SNRs.
	SNRdB          *float64 `json:"snr_db"`
	SNRMeanDB      *float64 `json:"snr_mean_db"`
	SNRWorstDB     *float64 `json:"snr_worst_db"`
	SNRWorstTensor string   `json:"snr_worst_tensor,omitempty"`
	WallSeconds    float64  `json:"wall_seconds"`
	// EncodeSeconds is the wall time from the first tensor read to the last
	// tensor written; WeightsPerSecond the coded weights (once per layer)
	// over it: the end-to-end encode rate with every worker.
	EncodeSeconds    float64           `json:"encode_seconds"`
	WeightsPerSecond float64           `json:"weights_per_second"`
	Workers          int               `json:"workers"`
	Kernel           string            `json:"kernel"`
	Settings         map[string]string `json:"settings"`
	// Warnings are the plan's and the run's (tensors stored exactly because
	// coding them would have lost them, see MaxRelErr).
	Warnings []string `json:"warnings,omitempty"`
	// Part is set for a part archive (compress --part).
	Part *PartReport `json:"part,omitempty"`
	// PlanSHA256 is the plan's content hash.
	PlanSHA256 string `json:"plan_sha256"`
	// Objective is what the target allocation minimized ("" without one);
	// Probes the output objective's probe design.
	Objective string `json:"objective,omitempty"`
	Probes    string `json:"sensitivity_probes,omitempty"`
	// Search is max_kl's budget search.
	Search *Search `json:"max_kl_search,omitempty"`
	// Quality is the evaluation of the compressed model (output quality:
	// KL(original ‖ decoded), top-1 agreement), as the archive records it;
	// nil when none was made, and EvalNote says why for a supported model.
	Quality     *archive.Quality `json:"quality,omitempty"`
	EvalNote    string           `json:"eval_note,omitempty"`
	EvalSeconds float64          `json:"eval_seconds,omitempty"`
	PerTensor   []TensorStat     `json:"per_tensor"`
}

// KLWarning is the mean KL above which compress warns: the compressed
// model no longer predicts like the original.
const KLWarning = 1.0

// QualityWarning is the warning compress and merge give when the measured
// mean KL exceeds KLWarning ("" when q is nil or below it).
func QualityWarning(q *archive.Quality) string {
	if q == nil || *q.KLMean <= KLWarning {
		return ""
	}
	return fmt.Sprintf("the compressed model's predictions differ substantially from the original's (mean KL %.4g nats, top-1 agreement %.4g %%); see seedlm eval", *q.KLMean, 100**q.Top1)
}

// FileStat is a sidecar file stored in the archive.
type FileStat struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

// PartReport says which part a run wrote.
type PartReport struct {
	Index int `json:"index"`
	Count int `json:"count"`
	// Of is the number of tensors in the whole archive.
	Of int `json:"of"`
}

// TensorStat is one tensor's line in the report.
type TensorStat struct {
	Name        string     `json:"name"`
	DType       string     `json:"dtype"`
	Shape       []int64    `json:"shape"`
	Rule        string     `json:"rule"`
	Passthrough bool       `json:"passthrough"`
	DuplicateOf string     `json:"duplicate_of,omitempty"`
	Codec       string     `json:"codec,omitempty"`
	Weights     int64      `json:"weights"`
	StoredBytes int64      `json:"stored_bytes"`
	RelErr      []float64  `json:"rel_err,omitempty"` // after 1, 2, … layers
	SNRdB       []*float64 `json:"snr_db,omitempty"`  // null: exact
	// Seconds is the tensor's read + encode time (tensors overlap).
	Seconds float64 `json:"seconds"`
}

// finish computes the derived totals.
func (r *Report) finish() {
	if r.OutputBytes > 0 {
		r.RatioVsInput = float64(r.InputBytes) / float64(r.OutputBytes)
		r.RatioVsFP32 = float64(4*r.Weights) / float64(r.OutputBytes)
	}
	if r.Weights > 0 {
		r.BitsPerWeight = float64(r.OutputBytes) * 8 / float64(r.Weights)
	}
	// RelErr and SNRdB come from the written index (fillStoredBytes), by
	// the sums inspect uses.
	var sum float64
	var cnt int
	for _, st := range r.PerTensor {
		if st.Passthrough || len(st.RelErr) == 0 {
			continue
		}
		last := len(st.RelErr) - 1
		if s := st.SNRdB[last]; s != nil {
			sum += *s
			cnt++
			if r.SNRWorstDB == nil || *s < *r.SNRWorstDB {
				v := *s
				r.SNRWorstDB = &v
				r.SNRWorstTensor = st.Name
			}
		}
	}
	if cnt > 0 {
		m := sum / float64(cnt)
		r.SNRMeanDB = &m
	}
}

// nonNil is a settings record for JSON: {} rather than null when empty.
func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
