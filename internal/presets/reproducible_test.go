package presets

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand"
	"testing"

	"github.com/seedlm/seedlm/internal/encoder"
)

// TestReproducibleVarianceRates pins the bits of the variance heuristic's
// rates and the choices of VarianceRates and AllocateByVariance on random
// inputs (drawn without math's transcendental functions, whose last bit
// varies by architecture): the same on every machine. cmd/seedlm's
// TestCrossArch runs the TestReproducible tests built for arm64 (under
// qemu-aarch64) and with GOAMD64=v3, where Go fuses multiply-adds.
func TestReproducibleVarianceRates(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	h := sha256.New()
	put := func(x uint64) {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], x)
		h.Write(b[:])
	}
	for trial := 0; trial < 300; trial++ {
		n := 1 + r.Intn(40)
		elements := make([]int64, n)
		sigma2 := make([]float64, n)
		opts := make([][]Option, n)
		var total float64
		for i := range n {
			elements[i] = 1024 + r.Int63n(1<<24)
			sigma2[i] = math.Ldexp(0.5+r.Float64()/2, -r.Intn(40))
			for _, p := range Ladder {
				opts[i] = append(opts[i], Option{Bits: float64(StackBits([]encoder.Params{p}, elements[i]))})
			}
			total += float64(elements[i])
		}
		theta := 1 + float64(r.Intn(40))/8
		for _, x := range varianceRates(elements, sigma2, theta) {
			put(math.Float64bits(x))
		}
		for _, c := range VarianceRates(opts, elements, sigma2, theta) {
			put(uint64(c))
		}
		budget := float64(total * (1 + float64(r.Intn(24))/8))
		choice, ok := AllocateByVariance(opts, elements, sigma2, budget)
		for _, c := range choice {
			put(uint64(c))
		}
		if ok {
			put(1)
		}
	}
	const want = "20c056e0d4571051522a1f92a52d250fa1f1efa6f76659bb1e2d635dd71ab77d"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("variance allocation bits hash %s, want %s", got, want)
	}
}
