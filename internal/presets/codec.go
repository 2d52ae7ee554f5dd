package presets

import (
	"fmt"
	"strings"

	"github.com/seedlm/seedlm/internal/encoder"
)

// Codec holds explicit codec settings; 0 means "not set" (0 is out of range
// for every one of them, and the YAML loader rejects an explicit 0).
type Codec struct {
	BlockSize int `yaml:"block_size,omitempty"`    // C
	LatentDim int `yaml:"latent_dim,omitempty"`    // P
	SeedBits  int `yaml:"seed_bits,omitempty"`     // K
	CoeffBits int `yaml:"coeff_bits,omitempty"`    // B
	ExpBits   int `yaml:"exponent_bits,omitempty"` // E
}

// codecKeys is the one table of the codec settings: the config key, the
// letter of encoder.Params.String, and the field in Codec and in
// encoder.Params. Everything that maps between them goes through it.
var codecKeys = [...]struct {
	key    string
	letter byte
	codec  func(*Codec) *int
	param  func(*encoder.Params) *int
}{
	{"block_size", 'C', func(c *Codec) *int { return &c.BlockSize }, func(p *encoder.Params) *int { return &p.BlockSize }},
	{"latent_dim", 'P', func(c *Codec) *int { return &c.LatentDim }, func(p *encoder.Params) *int { return &p.LatentDim }},
	{"seed_bits", 'K', func(c *Codec) *int { return &c.SeedBits }, func(p *encoder.Params) *int { return &p.SeedBits }},
	{"coeff_bits", 'B', func(c *Codec) *int { return &c.CoeffBits }, func(p *encoder.Params) *int { return &p.CoeffBits }},
	{"exponent_bits", 'E', func(c *Codec) *int { return &c.ExpBits }, func(p *encoder.Params) *int { return &p.ExpBits }},
}

// CodecKeys lists the codec settings' config keys, in C P K B E order.
func CodecKeys() []string {
	out := make([]string, len(codecKeys))
	for i, k := range codecKeys {
		out[i] = k.key
	}
	return out
}

func isCodecKey(key string) bool {
	for _, k := range codecKeys {
		if k.key == key {
			return true
		}
	}
	return false
}

// CodecOf is the Codec that sets every field of p.
func CodecOf(p encoder.Params) Codec {
	var c Codec
	for _, k := range codecKeys {
		*k.codec(&c) = *k.param(&p)
	}
	return c
}

// Set sets the field of a codec key; false for an unknown key.
func (c *Codec) Set(key string, v int) bool {
	for _, k := range codecKeys {
		if k.key == key {
			*k.codec(c) = v
			return true
		}
	}
	return false
}

// Get is the field of a codec key (0: not set or unknown key).
func (c Codec) Get(key string) int {
	for _, k := range codecKeys {
		if k.key == key {
			return *k.codec(&c)
		}
	}
	return 0
}

// IsZero says whether no field is set.
func (c Codec) IsZero() bool { return c == Codec{} }

// Apply overrides p's fields with the set ones.
func (c Codec) Apply(p encoder.Params) encoder.Params {
	for _, k := range codecKeys {
		if v := *k.codec(&c); v != 0 {
			*k.param(&p) = v
		}
	}
	return p
}

// String lists the set fields as YAML keys, e.g. "block_size=16 latent_dim=8".
func (c Codec) String() string {
	var s []string
	for _, k := range codecKeys {
		if v := *k.codec(&c); v != 0 {
			s = append(s, fmt.Sprintf("%s=%d", k.key, v))
		}
	}
	return strings.Join(s, " ")
}

// setLetter sets p's field of a Params.String letter; false for an unknown
// letter.
func setLetter(p *encoder.Params, letter byte, v int) bool {
	for _, k := range codecKeys {
		if k.letter == letter {
			*k.param(p) = v
			return true
		}
	}
	return false
}
