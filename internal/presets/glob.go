package presets

import (
	"fmt"
	"strings"
)

// Match reports whether a layer_specific pattern matches a full tensor name.
//
// Patterns are matched against the WHOLE name. '*' matches any run of
// characters, dots included (unlike path.Match's '*', which stops at '/';
// tensor names use '.' as their separator and a rule such as "*.mlp.*"
// must reach into "model.layers.0.mlp.gate_proj.weight"); '?' matches one
// character; everything else matches itself. So "*.attention.*" matches
// "layers.0.attention.wq.weight" but NOT Hugging Face Llama's
// "model.layers.0.self_attn.q_proj.weight" (write "*.self_attn.*" or
// "*attn*" there); "*.weight" matches every weight; "model.layers.1?.*"
// matches layers 10–19.
func Match(pattern, name string) bool {
	// Iterative wildcard match with single-star backtracking: linear in
	// practice, no recursion blow-up on many stars.
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == name[n]) && pattern[p] != '*':
			p++
			n++
		case p < len(pattern) && pattern[p] == '*':
			starP, starN = p, n
			p++
		case starP >= 0:
			starN++
			p, n = starP+1, starN
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// checkPattern rejects patterns that could never mean what their author
// intended.
func checkPattern(p string) error {
	if p == "" {
		return fmt.Errorf("empty pattern")
	}
	if strings.ContainsAny(p, "[]{}") {
		// Not supported: say so instead of matching the brackets literally.
		return fmt.Errorf("only '*' and '?' are wildcards; character classes and braces are not supported")
	}
	return nil
}
