package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/presets"
)

// This file is the one place where user settings become per-tensor plans:
// flags and SEEDLM_* variables fill one presets.Config, the config file's
// plan keys another, and presets.Plan folds them (flags > file > preset >
// default) into a plan per tensor.

// planKeys are the config keys that decide the plan. Their values from flags
// and the environment go to presets.Plan as "flags"; the config file's are
// read by presets.LoadConfig (which knows every plan key, layer_specific
// rules included).
var planKeys = []string{keyPreset, keyLevel, keyLayers, keyBlockSize, keyLatentDim, keySeedBits, keyCoeffBits,
	keyExpBits, keyTargetBPW, keyTargetRatio, keyMinElements}

// runKeys are config keys the CLI reads itself; presets.LoadConfig skips
// them.
var runKeys = []string{keyWorkers, keyQuiet, keyDType}

// planSettings are the settings that decide what compress does with each
// tensor. They are recorded in the archive (never workers, paths or times:
// the archive must not depend on them).
type planSettings struct {
	Flags presets.Config // from flags and the environment
	File  presets.Config // from the config file
}

// flagOrEnv returns key's value from its flag or SEEDLM_* variable, and
// where it came from ("" when neither sets it).
func (c *config) flagOrEnv(key string) (string, string) {
	if f := c.flags.Lookup(flagName(key)); f != nil && f.Changed {
		return f.Value.String(), "flag --" + f.Name
	}
	if v := os.Getenv(envName(key)); v != "" {
		return v, "environment " + envName(key)
	}
	return "", ""
}

// settingsFromConfig reads the plan settings: flags/env into Flags, the
// config file into File. Every problem is a usage error.
func settingsFromConfig(c *config) (planSettings, error) {
	var s planSettings
	if c.file != "" {
		f, err := presets.LoadConfig(c.file, runKeys...)
		if err != nil {
			return s, withHint(usagef("config file %v", err), "configs/compression.yaml documents every key")
		}
		s.File = f
	}
	fl := &s.Flags
	for _, key := range planKeys {
		v, from := c.flagOrEnv(key)
		if from == "" {
			continue
		}
		var err error
		switch key {
		case keyPreset:
			fl.Preset = strings.TrimSpace(v)
		case keyLevel:
			fl.CompressionLevel, err = strconv.ParseFloat(v, 64)
		case keyTargetBPW:
			fl.TargetBPW, err = strconv.ParseFloat(v, 64)
		case keyTargetRatio:
			fl.TargetRatio, err = strconv.ParseFloat(v, 64)
		default:
			var n int
			if n, err = strconv.Atoi(strings.TrimSpace(v)); err == nil {
				switch key {
				case keyLayers:
					fl.Layers = n
				case keyMinElements:
					fl.MinElements = int64(n)
				case keyBlockSize:
					fl.BlockSize = n
				case keyLatentDim:
					fl.LatentDim = n
				case keySeedBits:
					fl.SeedBits = n
				case keyCoeffBits:
					fl.CoeffBits = n
				case keyExpBits:
					fl.ExpBits = n
				}
				// 0 would mean "unset" to presets: every one of these
				// must be positive when given.
				if n < 1 {
					err = fmt.Errorf("must be ≥ 1")
				}
			}
		}
		if err != nil {
			return s, usagef("%s (from %s): %q: %v", key, from, v, unwrapNum(err))
		}
	}
	if err := fl.Validate(); err != nil {
		return s, withHint(usagef("flags: %v", err), "see \"seedlm compress --help\" and \"seedlm presets\"")
	}
	// Settings that conflict only in combination (a level and a target, ...)
	// are found by planning an empty model: no tensor data is read.
	if _, _, err := presets.Plan(context.Background(), s.File, noTensors{}, presets.Options{Flags: s.Flags}); err != nil {
		return s, withHint(usagef("settings: %v", err), "see configs/compression.yaml for how the settings combine")
	}
	return s, nil
}

func unwrapNum(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		return ne.Err
	}
	return err
}

type noTensors struct{}

func (noTensors) Tensors() []checkpoint.TensorInfo      { return nil }
func (noTensors) ReadFloat32(string) ([]float32, error) { return nil, fmt.Errorf("no tensors") }

// record is what the archive stores about the settings (key → value): each
// plan key set by flags or the file (flags win), and the rules' patterns.
func (s planSettings) record() map[string]string {
	m := map[string]string{}
	pick := func(key string, f, c presets.Config, get func(presets.Config) string) {
		if v := get(f); v != "" {
			m[key] = v
		} else if v := get(c); v != "" {
			m[key] = v
		}
	}
	num := func(x float64) string {
		if x == 0 {
			return ""
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	in := func(x int64) string {
		if x == 0 {
			return ""
		}
		return strconv.FormatInt(x, 10)
	}
	f, c := s.Flags, s.File
	pick(keyPreset, f, c, func(x presets.Config) string { return x.Preset })
	pick(keyLevel, f, c, func(x presets.Config) string { return num(x.CompressionLevel) })
	pick(keyLayers, f, c, func(x presets.Config) string { return in(int64(x.Layers)) })
	pick(keyBlockSize, f, c, func(x presets.Config) string { return in(int64(x.BlockSize)) })
	pick(keyLatentDim, f, c, func(x presets.Config) string { return in(int64(x.LatentDim)) })
	pick(keySeedBits, f, c, func(x presets.Config) string { return in(int64(x.SeedBits)) })
	pick(keyCoeffBits, f, c, func(x presets.Config) string { return in(int64(x.CoeffBits)) })
	pick(keyExpBits, f, c, func(x presets.Config) string { return in(int64(x.ExpBits)) })
	pick(keyTargetBPW, f, c, func(x presets.Config) string { return num(x.TargetBPW) })
	pick(keyTargetRatio, f, c, func(x presets.Config) string { return num(x.TargetRatio) })
	// min_elements at its default (configs/compression.yaml spells it out)
	// is not recorded, so the example config gives the default archive.
	if me := cmp.Or(f.MinElements, c.MinElements); me != 0 && me != presets.MinElements {
		m[keyMinElements] = in(me)
	}
	pick("base_quality", f, c, func(x presets.Config) string { return num(x.BaseQuality) })
	if len(c.QualityIncrements) > 0 {
		parts := make([]string, len(c.QualityIncrements))
		for i, q := range c.QualityIncrements {
			parts[i] = num(q)
		}
		m["quality_increments"] = strings.Join(parts, ",")
	}
	pick("adaptive", f, c, func(x presets.Config) string {
		if x.Adaptive == nil {
			return ""
		}
		if x.Adaptive.Method != "" {
			return x.Adaptive.Method
		}
		return "true"
	})
	if len(c.LayerSpecific) > 0 {
		pats := make([]string, len(c.LayerSpecific))
		for i, r := range c.LayerSpecific {
			pats[i] = strconv.Quote(r.Pattern)
		}
		m["layer_specific"] = strings.Join(pats, " ")
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// describe is a one-line summary of the settings for humans.
func describeSettings(m map[string]string) string {
	if len(m) == 0 {
		return "defaults (the paper's 4-bit configuration C8 P3 K16 B4 E4)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}

// makePlans returns compress's plan for every tensor of src, in order, and
// warnings for the user. In target mode presets.Plan codes a sample of
// every tensor first; measure reports that pass.
func makePlans(ctx context.Context, s planSettings, src checkpoint.Source, workers int, measure func(done, total int, name string)) ([]presets.TensorPlan, []string, error) {
	plans, warnings, err := presets.Plan(ctx, s.File, src, presets.Options{
		Flags:    s.Flags,
		Encoder:  encoder.Options{Workers: workers},
		Progress: measure,
	})
	if err != nil {
		return nil, nil, settingsError(err)
	}
	for i, p := range plans {
		for k, lp := range p.Layers {
			if err := lp.Validate(); err != nil {
				return nil, nil, usagef("tensor %q layer %d: %v", p.Name, k, err)
			}
		}
		if !p.Passthrough && len(p.Layers) == 0 {
			return nil, nil, fmt.Errorf("internal: plan for tensor %q (#%d) has no layers", p.Name, i)
		}
	}
	return plans, warnings, nil
}

// layersString is "C8 P3 K16 B4 E4" or "2× C8 P3 K16 B4 E4" or a list.
func layersString(ls []encoder.Params) string {
	if len(ls) == 0 {
		return "-"
	}
	same := true
	for _, p := range ls[1:] {
		if p != ls[0] {
			same = false
		}
	}
	if same {
		if len(ls) == 1 {
			return ls[0].String()
		}
		return fmt.Sprintf("%d× %s", len(ls), ls[0])
	}
	parts := make([]string, len(ls))
	for i, p := range ls {
		parts[i] = p.String()
	}
	return strings.Join(parts, " + ")
}

// nominalBPW is the sum of the layers' nominal bits per weight.
func nominalBPW(ls []encoder.Params) float64 {
	var b float64
	for _, p := range ls {
		b += p.BitsPerWeight()
	}
	return b
}
