package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/seedlm/seedlm/internal/presets"
)

// Configuration keys. Every key can be set, from highest to lowest
// precedence, by a command-line flag (the key with "-" for "_"; --level for
// compression_level), a SEEDLM_* environment variable (SEEDLM_ + the key in
// upper case), the config file, or the built-in default.
// configs/compression.yaml documents each of them. The plan keys (plan.go)
// and the file's richer keys (layer_specific, adaptive, ...) are read and
// validated by presets.LoadConfig; the run keys (runKeys) are read here with
// viper.
const (
	keyPreset      = "preset"
	keyLevel       = "compression_level" // flag --level
	keyLayers      = "layers"
	keyBlockSize   = "block_size"
	keyLatentDim   = "latent_dim"
	keySeedBits    = "seed_bits"
	keyCoeffBits   = "coeff_bits"
	keyExpBits     = "exponent_bits"
	keyTargetBPW   = "target_bpw"
	keyTargetRatio = "target_ratio"
	keyMinElements = "min_elements"
	keyTargetScope = "target_scope"
	keyObjective   = "objective"
	keyMaxKL       = "max_kl"
	keyEval        = "eval" // also --no-eval
	keyModelConfig = "model_config"
	keyWorkers     = "workers"
	keyQuiet       = "quiet"
	keyDType       = "dtype"
	configEnvPref  = "SEEDLM"
)

// flagName is the command-line spelling of a key.
func flagName(key string) string {
	if key == keyLevel {
		return "level"
	}
	return strings.ReplaceAll(key, "_", "-")
}

// envName is the environment spelling of a key.
func envName(key string) string { return configEnvPref + "_" + strings.ToUpper(key) }

// config resolves settings with the precedence flags > environment > config
// file > defaults. It is built per command invocation (no globals), so tests
// can run commands side by side.
type config struct {
	v     *viper.Viper
	flags *pflag.FlagSet
	file  string // the config file in use, "" if none
}

// userConfigFile is where a per-user config lives.
func userConfigFile() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "seedlm", "config.yaml")
}

// loadConfig binds flags and the environment and reads the config file:
// explicit (from --config; must exist), else ./seedlm.yaml, else the user
// config file, else none. Every key of the file is checked (an unknown key
// or a bad value is a usage error naming the line).
func loadConfig(flags *pflag.FlagSet, explicit string) (*config, error) {
	if err := checkEnv(os.Environ()); err != nil {
		return nil, err
	}
	v := viper.New()
	v.SetEnvPrefix(configEnvPref)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	for _, k := range runKeys {
		if f := flags.Lookup(flagName(k)); f != nil {
			if err := v.BindPFlag(k, f); err != nil {
				return nil, err
			}
		}
	}
	c := &config{v: v, flags: flags}
	file := explicit
	if file == "" {
		for _, cand := range []string{"seedlm.yaml", userConfigFile()} {
			if cand == "" {
				continue
			}
			if st, err := os.Stat(cand); err == nil && st.Mode().IsRegular() {
				file = cand
				break
			}
		}
	}
	if file == "" {
		return c, nil
	}
	if _, err := os.Stat(file); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, withHint(usagef("config file %s does not exist", file),
				"see configs/compression.yaml for an example of every key")
		}
		return nil, usagef("config file: %v", err)
	}
	if _, err := presets.LoadConfig(file, runKeys...); err != nil {
		return nil, withHint(usagef("config file %v", err), "configs/compression.yaml documents every key")
	}
	v.SetConfigFile(file)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return nil, withHint(usagef("config file %s: %v", file, err), "the config file is YAML; see configs/compression.yaml")
	}
	c.file = file
	return c, nil
}

// envOnlyNames are SEEDLM_* variables that are not config keys.
var envOnlyNames = []string{"SEEDLM_PART", "SEEDLM_PARTS"}

// checkEnv refuses a SEEDLM_* variable that is no setting (a misspelling
// such as SEEDLM_SEEDBITS would otherwise be ignored without a word), as a
// config file's unknown key is refused, suggesting the nearest name; and a
// key only a config file can hold (layer_specific, adaptive, ...).
func checkEnv(environ []string) error {
	known := map[string]bool{}
	for _, n := range envOnlyNames {
		known[n] = true
	}
	for _, k := range append(append([]string{}, planKeys...), runKeys...) {
		known[envName(k)] = true
	}
	var names []string
	for n := range known {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, configEnvPref+"_") || known[name] || val == "" {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(name, configEnvPref+"_"))
		if slices.Contains(presets.FileKeys, key) {
			return withHint(usagef("environment %s: %s can only be set in a config file", name, key),
				"put it in seedlm.yaml or the file given with --config (configs/compression.yaml documents it), and unset %s", name)
		}
		hint := "the variables are SEEDLM_ plus a key in upper case: " + strings.Join(names, ", ")
		if near := nearest(name, names); near != "" {
			hint = fmt.Sprintf("did you mean %s? (unset %s)", near, name)
		}
		return withHint(usagef("environment %s=%s: %s is not a seedlm setting", name, val, name), "%s", hint)
	}
	return nil
}

// nearest is the name within edit distance 3 of s with the smallest
// distance ("" if none).
func nearest(s string, names []string) string {
	best, bd := "", 4
	for _, n := range names {
		if d := editDistance(s, n); d < bd {
			best, bd = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// origin says where a key's value comes from, for error messages.
func (c *config) origin(key string) string {
	if f := c.flags.Lookup(flagName(key)); f != nil && f.Changed {
		return "flag --" + f.Name
	}
	if os.Getenv(envName(key)) != "" { // viper ignores empty variables too
		return "environment " + envName(key)
	}
	if c.file != "" && c.v.InConfig(key) {
		return "config " + c.file
	}
	return "default"
}

func (c *config) getInt(key string) (int, error) {
	v := c.v.Get(key)
	// cast truncates 2.5 to 2: a YAML float is only an integer if it is
	// whole, as on the command line.
	if f, ok := v.(float64); ok && f != math.Trunc(f) {
		return 0, usagef("%s (from %s): %q is not an integer", key, c.origin(key), fmt.Sprint(v))
	}
	n, err := cast.ToIntE(v)
	if err != nil {
		return 0, usagef("%s (from %s): %q is not an integer", key, c.origin(key), fmt.Sprint(v))
	}
	return n, nil
}

func (c *config) getString(key string) string { return strings.TrimSpace(cast.ToString(c.v.Get(key))) }

func (c *config) getBool(key string) (bool, error) {
	b, err := cast.ToBoolE(c.v.Get(key))
	if err != nil {
		return false, usagef("%s (from %s): %q is not true or false", key, c.origin(key), fmt.Sprint(c.v.Get(key)))
	}
	return b, nil
}

// quietAndWorkers reads the run keys compress and plan share.
func (c *config) quietAndWorkers() (quiet bool, workers int, err error) {
	if quiet, err = c.getBool(keyQuiet); err != nil {
		return
	}
	if workers, err = c.getInt(keyWorkers); err != nil {
		return
	}
	if workers < 0 {
		err = usagef("workers (from %s) must be ≥ 0, got %d", c.origin(keyWorkers), workers)
	}
	return
}

// workerCount is the number of workers a --workers value means (0: one
// per core).
func workerCount(n int) int {
	if n == 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// parseDTypeFlag maps decompress's --dtype to a safetensors dtype ("" = the
// source's).
func parseDTypeFlag(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "source":
		return "", nil
	case "f32", "float32":
		return "F32", nil
	case "f16", "float16", "half":
		return "F16", nil
	case "bf16", "bfloat16":
		return "BF16", nil
	}
	return "", usagef("--dtype %q: want source, f32, f16 or bf16", s)
}
