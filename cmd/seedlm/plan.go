package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/seedlm/seedlm/internal/compress"
	"github.com/seedlm/seedlm/internal/presets"
)

// This file is the one place where flags, SEEDLM_* variables and the config
// file become compress.Settings: flags and variables fill one
// presets.Config, the config file's plan keys another, and
// compress.Settings.Validate checks them together before any work.

// planKeys are the config keys that decide the plan. Their values from flags
// and the environment are parsed here; the config file's are read by
// presets.LoadConfig (which knows every plan key, layer_specific rules
// included).
var planKeys = append([]string{keyPreset, keyLevel, keyLayers, keyTargetBPW, keyTargetRatio, keyMinElements},
	presets.CodecKeys()...)

// runKeys are config keys the CLI reads itself; presets.LoadConfig skips
// them.
var runKeys = []string{keyWorkers, keyQuiet, keyDType}

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

// settingsFromConfig reads the plan settings, flags/env into Flags and the
// config file into File, and validates them: every problem is a usage
// error, found before any work.
func settingsFromConfig(c *config) (compress.Settings, error) {
	var s compress.Settings
	if c.file != "" {
		f, err := presets.LoadConfig(c.file, runKeys...)
		if err != nil {
			return s, withHint(usagef("config file %v", err), "configs/compression.yaml documents every key")
		}
		s.File = f
	}
	fl := &s.Flags
	var fromEnv []string
	for _, key := range planKeys {
		v, from := c.flagOrEnv(key)
		if from == "" {
			continue
		}
		if !strings.HasPrefix(from, "flag") {
			if s.FlagOrigins == nil {
				s.FlagOrigins = map[string]string{}
			}
			s.FlagOrigins[key] = "env"
			fromEnv = append(fromEnv, key)
		}
		v = strings.TrimSpace(v)
		var err error
		switch key {
		case keyPreset:
			fl.Preset = v
		case keyLevel, keyTargetBPW, keyTargetRatio:
			var x float64
			if x, err = strconv.ParseFloat(v, 64); err == nil && !(x > 0 && !math.IsInf(x, 0)) {
				// 0 would mean "unset" to presets: a given value must be
				// a positive number.
				err = fmt.Errorf("must be a positive number")
			}
			switch key {
			case keyLevel:
				fl.CompressionLevel = x
			case keyTargetBPW:
				fl.TargetBPW = x
			case keyTargetRatio:
				fl.TargetRatio = x
			}
		default:
			var n int
			if n, err = strconv.Atoi(v); err == nil && n < 1 {
				err = fmt.Errorf("must be ≥ 1")
			}
			switch key {
			case keyLayers:
				fl.Layers = n
			case keyMinElements:
				fl.MinElements = int64(n)
			default:
				fl.Codec.Set(key, n)
			}
		}
		if err != nil {
			return s, usagef("%s (from %s): %q: %v", key, from, v, unwrapNum(err))
		}
	}
	if err := fl.Validate(); err != nil {
		what := "flags"
		if len(fromEnv) > 0 {
			what = "flags and SEEDLM_* variables"
		}
		return s, withHint(usagef("%s: %v", what, err), "see \"seedlm compress --help\" and \"seedlm presets\"")
	}
	if err := s.Validate(); err != nil {
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

// describeSettings is a one-line summary of a settings record for humans.
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
