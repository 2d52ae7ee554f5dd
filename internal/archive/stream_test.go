package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestStreamBudgetSweep(t *testing.T) {
	dir := t.TempDir()
	ts, src, data := fixtureArchive(t, dir)
	a := openArchive(t, src)
	full, err := planStream(a, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	if full.fullBytes != int64(len(data)) || full.size != full.fullBytes {
		t.Fatalf("full plan is %d bytes (fullBytes %d), the source is %d", full.size, full.fullBytes, len(data))
	}

	// Every budget from below the minimum to past the full size: the error
	// never rises with the budget and the plan always fits.
	prevErr, prevSize := -1.0, int64(-1)
	sizes := map[int64]bool{}
	for budget := full.minBytes - 3; budget <= full.fullBytes+3; budget++ {
		pl, err := planStream(a, budget)
		if budget < full.minBytes {
			var be *BudgetError
			if !errors.As(err, &be) || be.MinBytes != full.minBytes || !strings.Contains(err.Error(), fmt.Sprint(full.minBytes)) {
				t.Fatalf("budget %d: %v, want a *BudgetError stating %d bytes", budget, err, full.minBytes)
			}
			continue
		}
		if err != nil {
			t.Fatalf("budget %d: %v", budget, err)
		}
		e := pl.ix.Totals().SqErr
		if pl.size > budget {
			t.Fatalf("budget %d: plan is %d bytes", budget, pl.size)
		}
		if prevErr >= 0 && (e > prevErr || pl.size < prevSize) {
			t.Fatalf("budget %d: error %v (size %d) after %v (size %d) at budget-1", budget, e, pl.size, prevErr, prevSize)
		}
		prevErr, prevSize = e, pl.size
		sizes[pl.size] = true
	}
	if len(sizes) < 4 {
		t.Errorf("only %d distinct output sizes over the sweep; the test fixture should exercise more", len(sizes))
	}

	// Write a few of them for real: exact size on disk, verifies, decodes
	// to the included layers, report consistent.
	budgets := []int64{full.minBytes, full.minBytes + (full.fullBytes-full.minBytes)/3, full.minBytes + 2*(full.fullBytes-full.minBytes)/3, full.fullBytes - 1, full.fullBytes, 1 << 40}
	for i, budget := range budgets {
		dst := filepath.Join(dir, fmt.Sprintf("s%d.seedlm", i))
		rep, err := Stream(context.Background(), src, dst, budget)
		if err != nil {
			t.Fatalf("Stream(%d): %v", budget, err)
		}
		fi, err := os.Stat(dst)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != rep.Bytes || rep.Bytes > budget || rep.MinBytes != full.minBytes || rep.FullBytes != full.fullBytes {
			t.Errorf("budget %d: file %d bytes, report %+v", budget, fi.Size(), rep)
		}
		o, err := Open(dst, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := o.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
		tot := o.Totals()
		if tot.SqErr != rep.SqErrAfter || tot.FileBytes != rep.Bytes || rep.SqErrBefore != a.Totals().SqErr || tot.RelErr != rep.RelErrAfter {
			t.Errorf("budget %d: output totals %+v, report %+v", budget, tot, rep)
		}
		for j, tt := range ts {
			e := &o.Index().Tensors[j]
			if rep.Tensors[j].Name != tt.info.Name || rep.Tensors[j].Bytes != e.Bytes() {
				t.Errorf("report tensor %d: %+v", j, rep.Tensors[j])
			}
			if tt.raw != nil {
				if b, err := o.ReadPassthrough(tt.info.Name); err != nil || !bytes.Equal(b, tt.raw) {
					t.Errorf("budget %d: passthrough %s: %v", budget, tt.info.Name, err)
				}
				continue
			}
			k := len(e.Layers)
			if rep.Tensors[j].Layers != k || e.OmittedLayers != len(tt.layers)-k {
				t.Errorf("budget %d: %s has %d layers (%d omitted), report says %d", budget, tt.info.Name, k, e.OmittedLayers, rep.Tensors[j].Layers)
			}
			got, err := o.DecodeTensor(tt.info.Name, 0)
			if err != nil || !equalF32(got, decodeRef(t, tt.res, k)) {
				t.Errorf("budget %d: %s does not decode to its %d layers: %v", budget, tt.info.Name, k, err)
			}
		}
		o.Close()
		if budget >= full.fullBytes {
			// Everything fits: the output is the source, byte for byte.
			if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
				t.Errorf("budget %d: full stream differs from the source", budget)
			}
		}
	}

	// Failures leave nothing behind and never touch the source.
	before := listDir(t, dir)
	if _, err := Stream(context.Background(), src, filepath.Join(dir, "tiny.seedlm"), full.minBytes-1); err == nil {
		t.Errorf("too-small budget accepted")
	}
	if _, err := Stream(context.Background(), src, filepath.Join(dir, "s0.seedlm"), 1<<40); err == nil {
		t.Errorf("Stream replaced an existing output without Overwrite")
	}
	if _, err := StreamWith(context.Background(), src, src, 1<<40, StreamOptions{Overwrite: true}); err == nil {
		t.Errorf("Stream overwrote its source")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Stream(ctx, src, filepath.Join(dir, "cancelled.seedlm"), 1<<40); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Stream: %v", err)
	}
	if after := listDir(t, dir); !reflect.DeepEqual(before, after) {
		t.Errorf("folder changed from %v to %v", before, after)
	}
	if b, _ := os.ReadFile(src); !bytes.Equal(b, data) {
		t.Errorf("source modified")
	}
}

// TestStreamCorruptSource: a source chunk that fails its hash is reported
// as an *IntegrityError, and no output is left.
func TestStreamCorruptSource(t *testing.T) {
	dir := t.TempDir()
	_, src, data := fixtureArchive(t, dir)
	data[len(data)-3] ^= 1 // inside the last layer-2 chunk
	os.WriteFile(src, data, 0o644)
	dst := filepath.Join(dir, "o.seedlm")
	_, err := Stream(context.Background(), src, dst, 1<<40)
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Tensor != "model.embed.weight" || ie.Chunk != "layer 2" {
		t.Fatalf("got %v, want an IntegrityError on model.embed.weight layer 2", err)
	}
	if names := listDir(t, dir); !reflect.DeepEqual(names, []string{"a.seedlm"}) {
		t.Errorf("left %v", names)
	}
}

// TestStreamPartialSource: with AllowPartial a cut source streams from its
// complete layers only.
func TestStreamPartialSource(t *testing.T) {
	dir := t.TempDir()
	_, src, data := fixtureArchive(t, dir)
	a, _ := Open(src, OpenOptions{})
	e, _ := a.Entry("model.mlp.weight")
	cutAt := e.Layers[1].Chunk.Offset + 1 // embed layer 1 complete, mlp layer 1 incomplete
	a.Close()
	os.WriteFile(src, data[:cutAt], 0o644)
	if _, err := Stream(context.Background(), src, filepath.Join(dir, "x.seedlm"), 1<<40); err == nil {
		t.Fatalf("partial source accepted without AllowPartial")
	}
	dst := filepath.Join(dir, "p.seedlm")
	rep, err := StreamWith(context.Background(), src, dst, 1<<40, StreamOptions{AllowPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"model.embed.weight": 2, "model.mlp.weight": 1, "model.attn.weight": 1, "model.out.weight": 1}
	for _, st := range rep.Tensors {
		if w, ok := want[st.Name]; ok && (st.Layers != w || st.SourceLayers != w) {
			t.Errorf("%s: %d of %d layers, want %d", st.Name, st.Layers, st.SourceLayers, w)
		}
	}
	if err := openAndCheck(dst, OpenOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestStreamOrder checks the greedy order on hand-made error figures.
func TestStreamOrder(t *testing.T) {
	mk := func(norm2 float64, errs []float64, lens []int64) TensorEntry {
		te := TensorEntry{Norm2: norm2}
		for i := range errs {
			te.Layers = append(te.Layers, LayerEntry{SqErr: errs[i], Chunk: ChunkRef{Length: lens[i]}})
		}
		return te
	}
	cases := []struct {
		name string
		ts   []TensorEntry
		want []step
	}{
		{"best ratio first", []TensorEntry{
			mk(100, []float64{50, 40}, []int64{10, 10}),  // layer 1: 10/10 = 1
			mk(100, []float64{50, 20}, []int64{10, 10}),  // layer 1: 30/10 = 3
			mk(100, []float64{50, 30}, []int64{10, 100}), // layer 1: 20/100 = 0.2
		}, []step{{1, 1}, {0, 1}, {2, 1}}},
		{"weak layer unlocking a strong one", []TensorEntry{
			mk(100, []float64{50, 40}, []int64{10, 5}),         // 10/5 = 2
			mk(100, []float64{50, 50, 0}, []int64{10, 10, 10}), // 0 then 50: run ratio 50/20 = 2.5
		}, []step{{1, 1}, {1, 2}, {0, 1}}},
		{"chain continues after its first run", []TensorEntry{
			mk(100, []float64{50, 10, 9}, []int64{10, 10, 10}), // 4, then 0.1
			mk(100, []float64{50, 40}, []int64{10, 10}),        // 1
		}, []step{{0, 1}, {1, 1}, {0, 2}}},
		{"harmful layer last", []TensorEntry{
			mk(100, []float64{50, 51}, []int64{10, 10}),
			mk(100, []float64{50, 49}, []int64{10, 10}),
		}, []step{{1, 1}, {0, 1}}},
		{"ties go to the earlier tensor", []TensorEntry{
			mk(100, []float64{50, 40}, []int64{10, 10}),
			mk(100, []float64{50, 40}, []int64{10, 10}),
		}, []step{{0, 1}, {1, 1}}},
		{"passthrough and single layers have nothing to add", []TensorEntry{
			{Passthrough: true, Raw: &ChunkRef{Length: 4}},
			mk(100, []float64{50}, []int64{10}),
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			avail := make([]int, len(c.ts))
			for i := range c.ts {
				avail[i] = max(1, len(c.ts[i].Layers))
			}
			if got := streamOrder(c.ts, avail); !reflect.DeepEqual(got, c.want) {
				t.Errorf("order %v, want %v", got, c.want)
			}
		})
	}
}

func TestSumTreeMatchesPairSum(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 5, 8, 13, 100} {
		v := make([]float64, n)
		r := gaussian(uint64(n), 3*n+1, 1)
		for i := range v {
			v[i] = float64(r[i]) * 1e-3 * float64(i%7+1)
		}
		tr := newSumTree(v)
		for u := 0; u <= 2*n; u++ {
			if got, want := tr.sum(), pairSum(v); got != want {
				t.Fatalf("n=%d after %d updates: tree %v, pairSum %v", n, u, got, want)
			}
			if n == 0 {
				break
			}
			i := u * 7 % n
			v[i] = float64(r[n+u%n]) * 1e-5
			tr.set(i, v[i])
		}
	}
}

// TestStreamCutRule: layers that raise the error are only ever included
// together with the later layers that more than make up for it, and a
// larger budget never gives a larger error.
func TestStreamCutRule(t *testing.T) {
	h := strings.Repeat("0", 64)
	p := pK8
	mk := func(name string, errs []float64, lens []int64) TensorEntry {
		te := TensorEntry{Name: name, DType: "F32", Shape: []int64{1}, Rule: "r", Norm2: 100}
		for i := range errs {
			te.Layers = append(te.Layers, LayerEntry{Params: p, N: 1, SqErr: errs[i], Chunk: ChunkRef{Length: lens[i], SHA256: h}})
		}
		return te
	}
	ix := &Index{Tensors: []TensorEntry{
		mk("a", []float64{50, 60, 10}, []int64{4, 40, 40}), // harmful layer 1 unlocks layer 2
		mk("b", []float64{50, 51}, []int64{4, 40}),         // harmful alone
		mk("c", []float64{50, 45}, []int64{4, 40}),
	}}
	a := &Archive{idx: ix, avail: []int{3, 2, 2}, path: "synthetic"}
	full, err := planStream(a, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	prev := -1.0
	for budget := full.minBytes; budget <= full.fullBytes+50; budget++ {
		pl, err := planStream(a, budget)
		if err != nil {
			t.Fatal(err)
		}
		la, lb := len(pl.ix.Tensors[0].Layers), len(pl.ix.Tensors[1].Layers)
		if la == 2 || lb == 2 {
			t.Fatalf("budget %d: included a harmful layer without its payoff (a: %d, b: %d layers)", budget, la, lb)
		}
		e := pl.ix.Totals().SqErr
		if prev >= 0 && e > prev {
			t.Fatalf("budget %d: error %v rose from %v", budget, e, prev)
		}
		prev = e
	}
	if got := full.ix.Totals().SqErr; got != 10+50+45 {
		t.Errorf("unlimited budget: total error %v, want %v", got, 10+50+45)
	}
}
