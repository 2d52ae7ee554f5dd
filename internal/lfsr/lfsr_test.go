package lfsr

import "testing"

// The paper's figure: K=3, taps (0,1), seed 4, C=4, P=2.
func TestPaperVectorK3(t *testing.T) {
	c, err := CycleFor(3)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Following(4, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{2, 5, 6, 7, 3, 1, 4, 2}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("V(4) row-major = %v, want %v", got, want)
		}
	}
}

func TestPaperVectorK16(t *testing.T) {
	c, err := CycleFor(16)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := c.Following(1, 12)
	want := []uint32{32768, 16384, 8192, 4096, 34816, 17408, 8704, 4352, 34944, 17472, 8736, 4368}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("states after seed 1 = %v, want %v", got, want)
		}
	}
}

// Every width from 2 to 24 must visit all 2^K−1 nonzero states before
// returning to its seed (the notes' pitfall: taps from the wrong end gave 63).
func TestMaximalPeriods(t *testing.T) {
	for k := MinBits; k <= MaxBits; k++ {
		r, err := New(k)
		if err != nil {
			t.Fatal(err)
		}
		s := uint32(1)
		n := 0
		for {
			s = r.Step(s)
			n++
			if s == 1 || s == 0 || n > 1<<k {
				break
			}
		}
		if s != 1 || n != r.Period() {
			t.Errorf("K=%d: period %d, want %d", k, n, r.Period())
		}
	}
}

func TestCycleTables(t *testing.T) {
	for _, k := range []int{8, 12, 16} {
		c, err := CycleFor(k)
		if err != nil {
			t.Fatal(err)
		}
		n := c.Reg.Period()
		seen := make([]bool, n+1)
		for i := 0; i < n; i++ {
			s := c.State[i]
			if s == 0 || int(s) > n || seen[s] {
				t.Fatalf("K=%d: bad or repeated state %d at %d", k, s, i)
			}
			seen[s] = true
			if int(c.Pos[s]) != i {
				t.Fatalf("K=%d: Pos[%d]=%d, want %d", k, s, c.Pos[s], i)
			}
			if c.State[i+1] != c.Reg.Step(s) {
				t.Fatalf("K=%d: State[%d] is not Step(State[%d])", k, i+1, i)
			}
		}
		for i := 0; i < c.Ext; i++ {
			if c.State[n+i] != c.State[i%n] {
				t.Fatalf("K=%d: extension differs at %d", k, i)
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	for _, k := range []int{-1, 0, 1, 25, 64} {
		if _, err := New(k); err == nil {
			t.Errorf("K=%d accepted", k)
		}
	}
	c, _ := CycleFor(8)
	if _, err := c.Following(0, 4); err == nil {
		t.Error("seed 0 accepted")
	}
	if _, err := c.Following(256, 4); err == nil {
		t.Error("seed 256 accepted for K=8")
	}
}
