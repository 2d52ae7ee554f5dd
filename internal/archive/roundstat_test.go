package archive

import (
	"math"
	"math/rand"
	"strconv"
	"testing"
)

func TestRoundStat(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0, 0},
		{0.1194082774007386, 0.119408277},
		{0.11940827740073863, 0.119408277}, // the amd64/arm64 pair of issue 13
		{0.124953574314855, 0.124953574},
		{0.12495357431485501, 0.124953574},
		{1, 1},
		{123456789012, 123456789000},
		{2.5e-300, 2.5e-300},
		{math.SmallestNonzeroFloat64, math.SmallestNonzeroFloat64},
		{math.MaxFloat64, 1.79769313e308},
		{math.Inf(1), math.Inf(1)},
	} {
		if got := RoundStat(c.in); got != c.want {
			t.Errorf("RoundStat(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(RoundStat(math.NaN())) {
		t.Error("RoundStat(NaN) is not NaN")
	}
	r := rand.New(rand.NewSource(1))
	for range 100000 {
		x := math.Ldexp(r.Float64(), r.Intn(200)-100)
		y := math.Nextafter(x, math.Inf(1))
		if r.Intn(2) == 0 {
			y = x * (1 + r.Float64()*1e-8)
		}
		rx, ry := RoundStat(x), RoundStat(y)
		if rx > ry {
			t.Fatalf("not monotone: RoundStat(%v) = %v > RoundStat(%v) = %v", x, rx, y, ry)
		}
		if RoundStat(rx) != rx {
			t.Fatalf("not idempotent at %v", x)
		}
		if s := strconv.FormatFloat(rx, 'e', -1, 64); len(s) > len("1.23456789e-100") {
			t.Fatalf("RoundStat(%v) = %s: more than %d digits", x, s, StatDigits)
		}
		if x > 0 && math.Abs(rx-x) > 5e-9*x {
			t.Fatalf("RoundStat(%v) = %v: off by more than half a unit of the 9th digit", x, rx)
		}
	}
}
