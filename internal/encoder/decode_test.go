package encoder

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/seedlm/seedlm/internal/lfsr"
)

var update = flag.Bool("update", false, "rewrite testdata/decode_vectors.json")

// refDecode is an independent, bit-by-bit decoder written straight from
// docs/FORMAT.md: it steps the LFSR itself and reads one bit at a time.
func refDecode(t *testing.T, l *Layer) []float32 {
	p := l.Params
	reg, err := lfsr.New(p.SeedBits)
	if err != nil {
		t.Fatal(err)
	}
	bit := 0
	read := func(n int) uint64 {
		var v uint64
		for i := 0; i < n; i++ {
			if l.Payload[bit/8]>>(bit%8)&1 == 1 {
				v |= 1 << i
			}
			bit++
		}
		return v
	}
	signed := func(v uint64, n int) int64 {
		if v&(1<<(n-1)) != 0 {
			return int64(v) - 1<<n
		}
		return int64(v)
	}
	h := int64(1) << (p.SeedBits - 1)
	out := make([]float32, 0, l.N)
	for b := 0; b < p.Blocks(l.N); b++ {
		s := uint32(read(p.SeedBits))
		e := signed(read(p.ExpBits), p.ExpBits) + int64(l.ExpBias)
		q := make([]int64, p.LatentDim)
		for i := range q {
			q[i] = signed(read(p.CoeffBits), p.CoeffBits)
		}
		states := make([]int64, p.BlockSize*p.LatentDim)
		for i := range states {
			s = reg.Step(s)
			states[i] = int64(s)
		}
		for c := 0; c < p.BlockSize && len(out) < l.N; c++ {
			var sum int64
			for i := 0; i < p.LatentDim; i++ {
				sum += (states[c*p.LatentDim+i] - h) * q[i]
			}
			out = append(out, float32(float64(sum)*(math.Ldexp(1, int(e))/float64(h-1))))
		}
	}
	return out
}

type vector struct {
	Params  Params `json:"params"`
	ExpBias int    `json:"exp_bias"`
	N       int    `json:"n"`
	Payload string `json:"payload_hex"`
	// Want holds the decoded float32 bit patterns, hex.
	Want string `json:"want_f32le_hex"`
}

// TestDecodeVectors pins the decoder's output bit for bit on committed
// vectors, so any platform or later version must reproduce them, and checks
// them against the independent bit-by-bit decoder.
func TestDecodeVectors(t *testing.T) {
	var vs []vector
	golden(t, "testdata/decode_vectors.json", func() any {
		var vs []vector
		for i, p := range []Params{Paper4Bit, Paper3Bit, {8, 3, 8, 4, 4}, {5, 2, 11, 3, 3}, {12, 4, 24, 8, 8}, {16, 9, 9, 2, 1}} {
			w := gaussTensor(uint64(100+i), 3*p.BlockSize+2, 0.02)
			l, err := EncodeLayer(context.Background(), "v", w, p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := DecodeLayers([]*Layer{l}, l.N)
			vs = append(vs, vector{p, l.ExpBias, l.N, hex.EncodeToString(l.Payload), f32hex(got)})
		}
		return vs
	}, &vs)
	if len(vs) < 6 {
		t.Fatalf("%d vectors", len(vs))
	}
	for i, v := range vs {
		payload, _ := hex.DecodeString(v.Payload)
		l := &Layer{Params: v.Params, ExpBias: v.ExpBias, N: v.N, Payload: payload}
		got, err := DecodeLayers([]*Layer{l}, l.N)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if f32hex(got) != v.Want {
			t.Errorf("vector %d (%v): decoded bits differ from the committed vector", i, v.Params)
		}
		if f32hex(refDecode(t, l)) != v.Want {
			t.Errorf("vector %d (%v): independent decoder disagrees", i, v.Params)
		}
		for _, workers := range []int{1, 3} {
			d := make([]float32, l.N)
			if err := l.DecodeParallel(d, false, workers); err != nil || f32hex(d) != v.Want {
				t.Errorf("vector %d: DecodeParallel(%d) differs (%v)", i, workers, err)
			}
		}
	}
}

// golden reads the committed vectors at path into out, after rewriting the
// file from gen() when the test runs with -update.
func golden(t *testing.T, path string, gen func() any, out any) {
	t.Helper()
	if *update {
		b, _ := json.MarshalIndent(gen(), "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

func f32hex(x []float32) string {
	b := make([]byte, 4*len(x))
	for i, f := range x {
		u := math.Float32bits(f)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return hex.EncodeToString(b)
}

// The parallel decoder splits at arbitrary block boundaries; compare it
// with the reference on a layer big enough to be split.
func TestParallelDecodeMatchesReference(t *testing.T) {
	p := Params{8, 3, 9, 4, 4}
	w := gaussTensor(4, parallelDecodeMin+77, 1)
	l, err := EncodeLayer(context.Background(), "t", w, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := f32hex(refDecode(t, l))
	for _, workers := range []int{1, 2, 5} {
		got := make([]float32, l.N)
		if err := l.DecodeParallel(got, false, workers); err != nil {
			t.Fatal(err)
		}
		if f32hex(got) != want {
			t.Fatalf("workers=%d: decode differs from the reference", workers)
		}
	}
}

// Every decode path (SIMD where the shape allows it, portable otherwise, set
// and add modes, tail blocks) must equal the independent decoder bit for bit.
func TestDecodePathsMatchReference(t *testing.T) {
	for _, p := range []Params{
		{8, 3, 16, 4, 4}, {16, 1, 9, 4, 4}, {24, 5, 10, 3, 4}, {8, 8, 9, 8, 8},
		{12, 4, 10, 4, 4}, {32, 2, 20, 6, 3},
	} {
		n := 40*p.BlockSize + 5 // a partial tail block
		l := randomLayer(uint64(p.BlockSize*31+p.LatentDim), p, n)
		want := refDecode(t, l)
		got := make([]float32, n)
		if err := l.Decode(got, false); err != nil {
			t.Fatal(err)
		}
		if f32hex(got) != f32hex(want) {
			t.Fatalf("%v: decode differs from the reference (simd=%v)", p, simdDecodable(p))
		}
		base := gaussTensor(5, n, 1)
		sum := append([]float32(nil), base...)
		if err := l.Decode(sum, true); err != nil {
			t.Fatal(err)
		}
		for i := range sum {
			if sum[i] != base[i]+want[i] {
				t.Fatalf("%v: add mode differs at %d", p, i)
			}
		}
	}
}

// randomLayer is a layer of n weights with random (valid) codes: decoding
// does not care whether a code is the best one, and this needs no search.
func randomLayer(seed uint64, p Params, n int) *Layer {
	r := rand.New(rand.NewPCG(seed, 3))
	codes := make([]code, p.Blocks(n))
	for i := range codes {
		c := &codes[i]
		c.seed = 1 + uint32(r.IntN(1<<p.SeedBits-1))
		c.e = int8(p.emin() + r.IntN(p.emax()-p.emin()+1))
		for k := 0; k < p.LatentDim; k++ {
			c.q[k] = int8(p.qmin() + r.IntN(p.qmax()-p.qmin()+1))
		}
	}
	return &Layer{Params: p, ExpBias: r.IntN(21) - 10, N: n, Payload: pack(p, codes)}
}
