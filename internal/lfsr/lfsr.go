// Package lfsr generates the pseudo-random state sequences SeedLM bases are
// built from: a K-bit Fibonacci LFSR that shifts right and feeds back into the
// most significant bit, with the maximal-length taps of the SeedLM notes.
//
// For K = 16 the taps are (0, 1, 3, 12):
//
//	b = (s ^ s>>1 ^ s>>3 ^ s>>12) & 1;  s = s>>1 | b<<15
//
// Every nonzero state lies on one cycle of length 2^K−1; 0 is absorbing and is
// never a valid seed.
package lfsr

import (
	"fmt"
	"sync"
)

// MinBits and MaxBits bound the register widths with known maximal taps.
const (
	MinBits = 2
	MaxBits = 24
)

// taps[k] lists the bit indices XORed into the feedback bit for a k-bit
// register (maximal-length; from the SeedLM notes).
var taps = [MaxBits + 1][]uint{
	2: {0, 1}, 3: {0, 1}, 4: {0, 1}, 5: {0, 2}, 6: {0, 1}, 7: {0, 1},
	8: {0, 2, 3, 4}, 9: {0, 4}, 10: {0, 3}, 11: {0, 2}, 12: {0, 1, 2, 8},
	13: {0, 1, 2, 5}, 14: {0, 1, 2, 12}, 15: {0, 1}, 16: {0, 1, 3, 12},
	17: {0, 3}, 18: {0, 7}, 19: {0, 1, 2, 5}, 20: {0, 3}, 21: {0, 2},
	22: {0, 1}, 23: {0, 5}, 24: {0, 1, 2, 7},
}

// Taps returns the feedback taps for a k-bit register.
func Taps(k int) ([]uint, error) {
	if k < MinBits || k > MaxBits {
		return nil, fmt.Errorf("lfsr: seed width K=%d out of range [%d, %d]", k, MinBits, MaxBits)
	}
	return append([]uint(nil), taps[k]...), nil
}

// Register is a K-bit Fibonacci LFSR.
type Register struct {
	k    uint
	mask uint32 // feedback mask: bit t set for every tap t
}

// New returns the register for width k.
func New(k int) (Register, error) {
	t, err := Taps(k)
	if err != nil {
		return Register{}, err
	}
	var m uint32
	for _, b := range t {
		m |= 1 << b
	}
	return Register{k: uint(k), mask: m}, nil
}

// Bits is the register width K.
func (r Register) Bits() int { return int(r.k) }

// Period is 2^K − 1, the number of valid seeds.
func (r Register) Period() int { return 1<<r.k - 1 }

// Step returns the state that follows s.
func (r Register) Step(s uint32) uint32 {
	b := parity(s & r.mask)
	return s>>1 | b<<(r.k-1)
}

func parity(x uint32) uint32 {
	x ^= x >> 16
	x ^= x >> 8
	x ^= x >> 4
	x ^= x >> 2
	x ^= x >> 1
	return x & 1
}

// Cycle is the full state sequence of a register, shared read-only.
//
// State[i] is the state at cycle position i, starting from seed 1 at
// position 0; State has Period()+Ext entries, the tail repeating the start, so
// that the Ext states that follow any position can be read without wrapping.
// Pos[s] is the cycle position of state s (Pos[0] is -1).
type Cycle struct {
	Reg   Register
	State []uint32
	Pos   []int32
	Ext   int
}

// MaxExt is how many states past the end of the period a Cycle repeats; it
// bounds C·P for the bases built on it.
const MaxExt = 4096

var (
	cycleMu    sync.Mutex
	cycleCache = map[int]*Cycle{}
)

// CycleFor returns the (cached) cycle for width k. Building the K=24 cycle
// takes about 0.1 s and 128 MiB; K=16 takes well under a millisecond.
func CycleFor(k int) (*Cycle, error) {
	cycleMu.Lock()
	defer cycleMu.Unlock()
	if c, ok := cycleCache[k]; ok {
		return c, nil
	}
	r, err := New(k)
	if err != nil {
		return nil, err
	}
	n := r.Period()
	c := &Cycle{Reg: r, State: make([]uint32, n+MaxExt), Pos: make([]int32, n+1), Ext: MaxExt}
	c.Pos[0] = -1
	s := uint32(1)
	for i := 0; i < n; i++ {
		if s == 0 || (i > 0 && s == 1) {
			return nil, fmt.Errorf("lfsr: K=%d taps are not maximal (cycle closed after %d states)", k, i)
		}
		c.State[i] = s
		c.Pos[s] = int32(i)
		s = r.Step(s)
	}
	if s != 1 {
		return nil, fmt.Errorf("lfsr: K=%d taps are not maximal", k)
	}
	for i := 0; i < MaxExt; i++ {
		c.State[n+i] = c.State[i%n]
	}
	cycleCache[k] = c
	return c, nil
}

// Following returns the m states that follow seed s (the first is Step(s)).
func (c *Cycle) Following(s uint32, m int) ([]uint32, error) {
	if s == 0 || int(s) >= len(c.Pos) {
		return nil, fmt.Errorf("lfsr: seed %d out of range [1, %d]", s, len(c.Pos)-1)
	}
	if m > c.Ext {
		return nil, fmt.Errorf("lfsr: %d states requested, at most %d", m, c.Ext)
	}
	p := int(c.Pos[s]) + 1
	return c.State[p : p+m], nil
}
