package encoder

import (
	"runtime"
	"testing"
	"time"
)

func TestZZMem(t *testing.T) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	h0 := ms.HeapAlloc
	for _, p := range []Params{{32, 3, 20, 3, 3}, {32, 4, 20, 3, 3}, {24, 2, 20, 3, 3}, {24, 3, 20, 3, 3}, {24, 4, 20, 3, 3}, {16, 3, 20, 3, 3}} {
		t0 := time.Now()
		if _, err := basisFor(p); err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		t.Logf("%v: built in %v, heap %.1f MB (sys %.1f MB)", p, time.Since(t0), float64(ms.HeapAlloc-h0)/1e6, float64(ms.Sys)/1e6)
	}
}
