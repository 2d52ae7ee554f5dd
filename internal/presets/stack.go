package presets

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/seedlm/seedlm/internal/encoder"
)

// StackBPW is the nominal bits per weight of a layer stack: the sum of its
// layers' (K+E+P·B)/C.
func StackBPW(layers []encoder.Params) float64 {
	var b float64
	for _, p := range layers {
		b += p.BitsPerWeight()
	}
	return b
}

// FormatStack writes a stack as its layers' compact forms joined by " + ",
// e.g. "C8 P3 K16 B4 E4 + C12 P3 K16 B3 E3"; ParseStack reads it back.
func FormatStack(layers []encoder.Params) string {
	s := make([]string, len(layers))
	for i, p := range layers {
		s[i] = p.String()
	}
	return strings.Join(s, " + ")
}

// ParseParams reads one layer's settings in encoder.Params.String form,
// spaces optional ("C8 P3 K16 B4 E4", "C8P3K16B4E4"). Letters may come in any
// order; a missing letter takes the paper's 4-bit value.
func ParseParams(s string) (encoder.Params, error) {
	p := encoder.Paper4Bit
	str := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	if str == "" {
		return p, fmt.Errorf("empty layer settings")
	}
	seen := map[byte]bool{}
	for i := 0; i < len(str); {
		c := str[i]
		j := i + 1
		for j < len(str) && str[j] >= '0' && str[j] <= '9' {
			j++
		}
		if j == i+1 {
			return p, fmt.Errorf("layer settings %q: expected a number after %q", s, c)
		}
		v, _ := strconv.Atoi(str[i+1 : j])
		if seen[c] {
			return p, fmt.Errorf("layer settings %q: %c given twice", s, c)
		}
		seen[c] = true
		if !setLetter(&p, c, v) {
			return p, fmt.Errorf("layer settings %q: unknown letter %q (want C, P, K, B, E)", s, c)
		}
		i = j
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("layer settings %q: %w", s, err)
	}
	return p, nil
}

// ParseStack reads layers joined by "+" (see FormatStack).
func ParseStack(s string) ([]encoder.Params, error) {
	var out []encoder.Params
	for _, part := range strings.Split(s, "+") {
		p, err := ParseParams(part)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
