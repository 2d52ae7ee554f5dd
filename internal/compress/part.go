package compress

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/seedlm/seedlm/internal/presets"
)

// Part is one share of a compression split over machines: part Index of
// Count (0 ≤ Index < Count). The zero Part means the whole archive, with no
// part record.
type Part struct {
	Index, Count int
}

// Whole reports whether p is the whole archive rather than a part.
func (p Part) Whole() bool { return p.Count == 0 }

func (p Part) String() string { return fmt.Sprintf("%d/%d", p.Index, p.Count) }

// ParsePart reads "I/N" (0 ≤ I < N), the form Kubernetes' completion index
// and Slurm's array task id give once the count is appended.
func ParsePart(s string) (Part, error) {
	i, n, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Part{}, fmt.Errorf("part %q: want I/N, e.g. 0/4 (parts are numbered from 0)", s)
	}
	return newPart(i, n, s)
}

func newPart(i, n, what string) (Part, error) {
	ix, err1 := strconv.Atoi(strings.TrimSpace(i))
	cnt, err2 := strconv.Atoi(strings.TrimSpace(n))
	switch {
	case err1 != nil || err2 != nil:
		return Part{}, fmt.Errorf("part %q: index and count must be integers", what)
	case cnt < 1 || cnt > maxParts:
		return Part{}, fmt.Errorf("part %q: count %d out of range [1, %d]", what, cnt, maxParts)
	case ix < 0 || ix >= cnt:
		return Part{}, fmt.Errorf("part %q: index %d out of range [0, %d] (parts are numbered from 0)", what, ix, cnt-1)
	}
	return Part{Index: ix, Count: cnt}, nil
}

// maxParts bounds the part count (far above any cluster; keeps a typo
// from making a million empty parts).
const maxParts = 1 << 16

// PartFromEnv finds this process's part from the batch engine's
// environment, in this order:
//
//   - SEEDLM_PART and SEEDLM_PARTS (set by hand, or by a CI matrix);
//   - Kubernetes Indexed Job: JOB_COMPLETION_INDEX, with the count from
//     SEEDLM_PARTS (Kubernetes does not expose spec.completions to the pod);
//   - Slurm job array: SLURM_ARRAY_TASK_ID, numbered from
//     SLURM_ARRAY_TASK_MIN, with the count SLURM_ARRAY_TASK_COUNT (or
//     MAX − MIN + 1); the array must be contiguous (no :step).
//
// It returns the part and which variables it used.
func PartFromEnv(getenv func(string) string) (Part, string, error) {
	if v := getenv("SEEDLM_PART"); v != "" {
		n := getenv("SEEDLM_PARTS")
		if n == "" {
			return Part{}, "", fmt.Errorf("SEEDLM_PART=%s is set but SEEDLM_PARTS (the count) is not", v)
		}
		p, err := newPart(v, n, v+"/"+n)
		return p, "SEEDLM_PART/SEEDLM_PARTS", err
	}
	if v := getenv("JOB_COMPLETION_INDEX"); v != "" {
		n := getenv("SEEDLM_PARTS")
		if n == "" {
			return Part{}, "", fmt.Errorf("JOB_COMPLETION_INDEX=%s (a Kubernetes Indexed Job) needs SEEDLM_PARTS set to the Job's completions", v)
		}
		p, err := newPart(v, n, v+"/"+n)
		return p, "JOB_COMPLETION_INDEX/SEEDLM_PARTS (Kubernetes Indexed Job)", err
	}
	if v := getenv("SLURM_ARRAY_TASK_ID"); v != "" {
		lo, hi, cnt := getenv("SLURM_ARRAY_TASK_MIN"), getenv("SLURM_ARRAY_TASK_MAX"), getenv("SLURM_ARRAY_TASK_COUNT")
		minID, err1 := strconv.Atoi(lo)
		maxID, err2 := strconv.Atoi(hi)
		id, err3 := strconv.Atoi(v)
		if err1 != nil || err2 != nil || err3 != nil {
			return Part{}, "", fmt.Errorf("SLURM_ARRAY_TASK_ID=%q needs integer SLURM_ARRAY_TASK_MIN (%q) and SLURM_ARRAY_TASK_MAX (%q)", v, lo, hi)
		}
		n := maxID - minID + 1
		if cnt != "" {
			if c, err := strconv.Atoi(cnt); err != nil || c != n {
				return Part{}, "", fmt.Errorf("the Slurm array has %s tasks between ids %d and %d: use a contiguous array (--array=%d-%d, no :step or list)", cnt, minID, maxID, minID, maxID)
			}
		}
		p, err := newPart(strconv.Itoa(id-minID), strconv.Itoa(n), fmt.Sprintf("%d/%d", id-minID, n))
		return p, "SLURM_ARRAY_TASK_ID/MIN/MAX (Slurm job array)", err
	}
	return Part{}, "", fmt.Errorf("no part number in the environment (looked for SEEDLM_PART and SEEDLM_PARTS, JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID)")
}

// Cost is a tensor's estimated encode cost in weight-equivalents of the
// paper's 4-bit configuration (presets.LayerCost per layer); tensors stored
// exactly cost a hundredth of a weight per weight (they are only read and
// copied). Every tensor also costs a fixed 256 (opening, hashing, the index
// entry), so many tiny tensors are spread too.
func (t *TensorPlan) Cost() float64 {
	n := float64(t.info().NumElements())
	c := 256.0
	if t.DuplicateOf != "" {
		return c // nothing to read or encode
	}
	if t.Passthrough {
		return c + n/100
	}
	for _, l := range t.Layers {
		// Rounded before it is added (no fused multiply-add): every
		// machine of a split computes Assign itself, and must agree.
		c += float64(n * presets.LayerCost(l))
	}
	return c
}

// Assign splits the plan's tensors into count parts of about equal
// estimated cost: largest first, each to the part with the least cost so
// far (ties: the lower part). A duplicate goes to its original's part, so
// every part archive holds what its references point to. Deterministic;
// each part lists tensor positions in increasing order. A part may be
// empty when there are more parts than tensors.
func (p *Plan) Assign(count int) [][]int {
	order := make([]int, 0, len(p.Tensors))
	costs := make([]float64, len(p.Tensors))
	pos := make(map[string]int, len(p.Tensors))
	for i := range p.Tensors {
		pos[p.Tensors[i].Name] = i
		costs[i] = p.Tensors[i].Cost()
		if p.Tensors[i].DuplicateOf == "" {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return costs[order[a]] > costs[order[b]] })
	parts := make([][]int, count)
	load := make([]float64, count)
	partOf := make([]int, len(p.Tensors))
	for _, i := range order {
		best := 0
		for k := 1; k < count; k++ {
			if load[k] < load[best] {
				best = k
			}
		}
		parts[best] = append(parts[best], i)
		partOf[i] = best
		load[best] += costs[i]
	}
	for i := range p.Tensors {
		if o := p.Tensors[i].DuplicateOf; o != "" {
			k := partOf[pos[o]]
			parts[k] = append(parts[k], i)
		}
	}
	for _, ps := range parts {
		sort.Ints(ps)
	}
	return parts
}

// positions is the tensors part p holds (every tensor for the whole).
func (p *Plan) positions(part Part) []int {
	if part.Whole() {
		all := make([]int, len(p.Tensors))
		for i := range all {
			all[i] = i
		}
		return all
	}
	return p.Assign(part.Count)[part.Index]
}
