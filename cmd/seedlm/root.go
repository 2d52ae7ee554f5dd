package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/compress"
	"github.com/seedlm/seedlm/internal/encoder"
)

// app is per-invocation state shared by the commands.
type app struct {
	stdout, stderr io.Writer
	configFile     string
	started        bool // a command's RunE was reached
}

func newRootCmd(stdout, stderr io.Writer) (*cobra.Command, *app) {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "seedlm",
		Short: "Compress LLM checkpoints with SeedLM (weights as pseudo-random generator seeds)",
		Long: `seedlm compresses model checkpoints with SeedLM: every block of C weights is
stored as the seed of a linear-feedback shift register plus a few quantized
coefficients (w ≈ U(seed)·q·2^e). Lossy for coded tensors, byte-exact for the
rest (norms, biases, integer tensors).

Exit codes: 0 ok, 1 failure, 2 usage, 3 archive integrity failure, 4 stream budget too
small, 130 interrupted.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRun: func(*cobra.Command, []string) {
			a.started = true
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(a.stderr, cmd.UsageString())
			return usagef("missing command")
		},
	}
	root.Version = buildVersion().String()
	root.SetVersionTemplate("seedlm {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.PersistentFlags().StringVar(&a.configFile, "config", "",
		"config file (default ./seedlm.yaml, else the user config dir's seedlm/config.yaml)")
	root.CompletionOptions.DisableDefaultCmd = true

	root.AddCommand(
		newCompressCmd(a),
		newPlanCmd(a),
		newMergeCmd(a),
		newDecompressCmd(a),
		newInspectCmd(a),
		newVerifyCmd(a),
		newStreamCmd(a),
		newPresetsCmd(a),
		newVersionCmd(a),
	)
	return root, a
}

// exactArgs is cobra.ExactArgs with a usage error naming what is missing.
func exactArgs(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return withHint(usagef("%s: missing %s", cmd.Name(), what), "usage: %s", cmd.UseLine())
		case len(args) > 1:
			return withHint(usagef("%s: expected one %s, got %d arguments", cmd.Name(), what, len(args)), "usage: %s", cmd.UseLine())
		}
		return nil
	}
}

// configured is the RunE of a command that takes settings: load flags,
// SEEDLM_* variables and the config file, resolve them into the command's
// options, then run.
func (a *app) configured(resolve func(*config) error, run func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := a.loadConfigFor(cmd.Flags())
		if err != nil {
			return err
		}
		if err := resolve(c); err != nil {
			return err
		}
		return run(cmd.Context(), args)
	}
}

// loadConfigFor loads flags/env/config for a command.
func (a *app) loadConfigFor(fs *pflag.FlagSet) (*config, error) {
	return loadConfig(fs, a.configFile)
}

// versionInfo is what version prints (--json as is).
type versionInfo struct {
	// Version is the module version ("(devel)" for a build from a
	// checkout); Revision, RevisionTime and Modified the VCS state it was
	// built from (empty when the build recorded none).
	Version      string `json:"version"`
	Revision     string `json:"revision,omitempty"`
	RevisionTime string `json:"revision_time,omitempty"`
	Modified     bool   `json:"modified"`
	Go           string `json:"go"`
	Platform     string `json:"platform"`
	Kernel       string `json:"kernel"`
}

// The VCS state make build stamps with -ldflags -X (for builds where Go's
// own -buildvcs stamping is off or unavailable); Go's stamp wins when set.
var (
	vcsRevision string
	vcsTime     string
	vcsModified string
)

func buildVersion() versionInfo {
	v := versionInfo{Version: version(), Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Kernel: encoder.KernelName(),
		Revision: vcsRevision, RevisionTime: vcsTime, Modified: vcsModified == "true"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.RevisionTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

// String is the one-line form: version, revision, Go, platform, kernel.
func (v versionInfo) String() string {
	rev := "no VCS revision recorded"
	if v.Revision != "" {
		rev = "revision " + v.Revision[:min(12, len(v.Revision))]
		var notes []string
		if v.RevisionTime != "" {
			notes = append(notes, v.RevisionTime)
		}
		if v.Modified {
			notes = append(notes, "with uncommitted changes")
		}
		if len(notes) > 0 {
			rev += " (" + strings.Join(notes, ", ") + ")"
		}
	}
	return fmt.Sprintf("%s, %s, %s %s, encoder kernel %s", v.Version, rev, v.Go, v.Platform, v.Kernel)
}

func newVersionCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, the VCS revision it was built from, and the encoder kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			if asJSON {
				return writeJSON(a.stdout, v)
			}
			fmt.Fprintf(a.stdout, "seedlm %s\n", v)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the version as one JSON object on stdout")
	return cmd
}

func version() string { return compress.Version() }
