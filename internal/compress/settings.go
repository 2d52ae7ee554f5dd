// Package compress is seedlm's compress pipeline: settings → plan → encode →
// archive → report. The CLI (cmd/seedlm) only turns flags and config into
// Settings and prints what comes back; scripts use the same calls.
//
//	s := compress.Settings{Flags: flags, File: file}
//	if err := s.Validate(); err != nil { ... }            // before any work
//	plan, err := compress.MakePlan(ctx, src, s, compress.PlanOptions{})
//	rep, err := compress.Run(ctx, src, plan, compress.Part{}, "model.seedlm", compress.RunOptions{})
//
// A plan is serialisable (WriteFile/ReadPlan) and carries the source's
// identity and its own content hash, so one compression can be split over
// machines: each runs Run with Part{Index: i, Count: n} (Plan.Assign
// balances the parts by estimated encode cost) and archive.Merge joins the
// part archives into the archive one Run with Part{} writes, byte for byte.
package compress

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/seedlm/seedlm/internal/presets"
)

// Settings are the user's choices that decide the plan. They are recorded in
// the archive (Record); nothing that must not change the output (workers,
// paths, times) belongs here.
type Settings struct {
	Flags presets.Config // from flags and SEEDLM_* variables (highest precedence)
	File  presets.Config // from the config file
	// FlagOrigins says where each key of Flags came from ("flags" or
	// "env"), for the plan's rules; not part of Record.
	FlagOrigins map[string]string
}

// Validate checks every value and every combination, as planning would,
// without reading a model: it is the one check for flags, environment and
// config file alike, run before any work.
func (s Settings) Validate() error {
	if err := s.Flags.Validate(); err != nil {
		return err
	}
	if err := s.File.Validate(); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return presets.Check(s.File, s.Flags)
}

// Record is what the archive stores about the settings (key → value): each
// plan key set by flags or the file (flags win), and the rules' patterns.
// nil when nothing is set.
func (s Settings) Record() map[string]string {
	m := map[string]string{}
	f, c := s.Flags, s.File
	pick := func(key string, get func(presets.Config) string) {
		if v := cmp.Or(get(f), get(c)); v != "" {
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
	pick("preset", func(x presets.Config) string { return x.Preset })
	pick("compression_level", func(x presets.Config) string { return num(x.CompressionLevel) })
	pick("layers", func(x presets.Config) string { return in(int64(x.Layers)) })
	for _, k := range presets.CodecKeys() {
		pick(k, func(x presets.Config) string { return in(int64(x.Codec.Get(k))) })
	}
	pick("target_bpw", func(x presets.Config) string { return num(x.TargetBPW) })
	pick("target_ratio", func(x presets.Config) string { return num(x.TargetRatio) })
	// min_elements at its default (configs/compression.yaml spells it out)
	// is not recorded, so the example config gives the default archive.
	if me := cmp.Or(f.MinElements, c.MinElements); me != 0 && me != presets.MinElements {
		m["min_elements"] = in(me)
	}
	pick("base_quality", func(x presets.Config) string { return num(x.BaseQuality) })
	if len(c.QualityIncrements) > 0 {
		parts := make([]string, len(c.QualityIncrements))
		for i, q := range c.QualityIncrements {
			parts[i] = num(q)
		}
		m["quality_increments"] = strings.Join(parts, ",")
	}
	pick("adaptive", func(x presets.Config) string {
		if x.Adaptive == nil {
			return ""
		}
		return cmp.Or(x.Adaptive.Method, "true")
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
