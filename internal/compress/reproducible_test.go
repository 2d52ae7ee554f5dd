package compress

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/presets"
)

// TestReproducibleAssign pins the bits of every tensor's estimated cost and
// the parts Assign makes of them: each machine of a split computes Assign
// itself, so all must agree, whatever their architecture. cmd/seedlm's
// TestCrossArch runs the TestReproducible tests built for arm64 (under
// qemu-aarch64) and with GOAMD64=v3, where Go fuses multiply-adds.
func TestReproducibleAssign(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	p := &Plan{}
	stacks := [][]encoder.Params{{encoder.Paper4Bit}}
	for _, l := range presets.Ladder {
		stacks = append(stacks, []encoder.Params{l}, []encoder.Params{encoder.Paper4Bit, l})
		for _, k := range []int{8, 10, 12, 18, 20, 24} {
			q := l
			q.SeedBits = k
			stacks = append(stacks, []encoder.Params{q})
		}
	}
	for i := range 500 {
		tp := TensorPlan{Name: fmt.Sprint(i), DType: "F32", Shape: []int64{1 + rng.Int63n(1<<12), 1 + rng.Int63n(1<<12)}}
		if i%9 == 0 {
			tp.Passthrough = true
		} else {
			tp.Layers = stacks[rng.Intn(len(stacks))]
		}
		p.Tensors = append(p.Tensors, tp)
	}
	h := sha256.New()
	put := func(x uint64) {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], x)
		h.Write(b[:])
	}
	for i := range p.Tensors {
		put(math.Float64bits(p.Tensors[i].Cost()))
	}
	put(math.Float64bits(p.Summarize().Cost))
	for _, count := range []int{2, 3, 5, 8, 13} {
		for _, part := range p.Assign(count) {
			put(uint64(len(part)))
			for _, i := range part {
				put(uint64(i))
			}
		}
	}
	const want = "1931bfcef424521c06ac8da8c89a06be4055f7c3d483f7e3a25847b803d83222"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("cost and assignment bits hash %s, want %s", got, want)
	}
}
