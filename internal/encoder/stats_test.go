package encoder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/seedlm/seedlm/internal/safetensors"
)

// statsVector pins what Encode returns for one input, bit for bit: the
// payload of every layer and every float statistic that reaches an
// archive (‖w‖², the squared error after each layer). The same vectors
// must come out on every architecture (no fused multiply-adds, fixed
// summation order) and with every kernel and worker count.
type statsVector struct {
	Name    string   `json:"name"`
	Layers  []Params `json:"layers"`
	Biases  []int    `json:"exp_biases"`
	Payload []string `json:"payload_sha256"`
	Norm2   string   `json:"norm2_bits"`
	SqErr   []string `json:"sq_err_bits"`
}

// statsInputs are small tensors with what makes float statistics fragile:
// many layers, subnormals, wide dynamic range, huge and tiny magnitudes,
// and real weights (a slice of the demo model, where a fused multiply-add
// in the error sum changed the last bit on arm64).
func statsInputs(t *testing.T) []struct {
	name   string
	w      []float32
	layers []Params
} {
	mixed := gaussTensor(41, 8*64+3, 0.02)
	for i := range mixed {
		switch i % 5 {
		case 1:
			mixed[i] = 1e-42 // subnormal
		case 3:
			mixed[i] *= 1e-6
		}
	}
	huge := gaussTensor(42, 8*40, 1)
	for i := range huge {
		huge[i] *= 3e37
	}
	tiny := gaussTensor(43, 12*30, 1)
	for i := range tiny {
		tiny[i] *= 1e-36
	}
	f, err := safetensors.Open("../../testdata/models/stories260K-layer0.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	real, err := f.ReadFloat32("model.layers.0.mlp.gate_proj.weight")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name   string
		w      []float32
		layers []Params
	}{
		{"demo-gate-proj", real[:2048], []Params{{8, 4, 12, 4, 3}, {8, 3, 10, 4, 4}}},
		{"gauss-3layers", gaussTensor(40, 8*96+5, 0.02), []Params{{8, 3, 10, 4, 4}, {8, 3, 10, 4, 4}, {12, 4, 9, 3, 3}}},
		{"mixed-subnormal", mixed, []Params{{8, 3, 11, 4, 4}}},
		{"huge", huge, []Params{{8, 3, 10, 4, 4}}},
		{"tiny", tiny, []Params{{12, 4, 9, 4, 4}, {8, 2, 9, 3, 3}}},
	}
}

func computeStats(t *testing.T, name string, w []float32, layers []Params, opt Options) statsVector {
	t.Helper()
	res, err := Encode(context.Background(), name, w, layers, opt)
	if err != nil {
		t.Fatal(err)
	}
	v := statsVector{Name: name, Layers: layers, Norm2: fmt.Sprintf("%016x", math.Float64bits(res.Norm2))}
	for k, l := range res.Layers {
		sum := sha256.Sum256(l.Payload)
		v.Biases = append(v.Biases, l.ExpBias)
		v.Payload = append(v.Payload, hex.EncodeToString(sum[:]))
		v.SqErr = append(v.SqErr, fmt.Sprintf("%016x", math.Float64bits(res.SqErr[k])))
	}
	return v
}

// TestStatsVectors checks Encode's payloads and statistics against the
// committed vectors (regenerate with -update, on any machine: they must
// not change), for the assembly and pure-Go kernels and several worker
// counts. Run under qemu-aarch64 (GOARCH=arm64 go test -c) it checks arm64.
func TestStatsVectors(t *testing.T) {
	path := "testdata/stats_vectors.json"
	in := statsInputs(t)
	var want []statsVector
	golden(t, path, func() any {
		var vs []statsVector
		for _, x := range in {
			vs = append(vs, computeStats(t, x.name, x.w, x.layers, Options{}))
		}
		return vs
	}, &want)
	if len(want) != len(in) {
		t.Fatalf("%d vectors for %d inputs", len(want), len(in))
	}
	for i, x := range in {
		wb, _ := json.Marshal(want[i])
		for _, opt := range []Options{{Workers: 1}, {Workers: 3}, {Workers: 2, Kernel: KernelGeneric}, {Workers: 1, Kernel: kernelLooped}} {
			got := computeStats(t, x.name, x.w, x.layers, opt)
			if gb, _ := json.Marshal(got); string(gb) != string(wb) {
				t.Errorf("%s, %+v (kernel %s):\n got %s\nwant %s", x.name, opt, KernelName(), gb, wb)
			}
		}
	}
}
