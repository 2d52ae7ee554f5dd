package main

import (
	"context"
	"fmt"
	"io"

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
small, 5 quality requirement failed (eval --max-kl gate, compress --max-kl out of reach),
130 interrupted.`,
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
	root.Version = fmt.Sprintf("%s (encoder kernel %s)", version(), encoder.KernelName())
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
		newEvalCmd(a),
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

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the encoder kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.stdout, "seedlm %s (encoder kernel %s)\n", version(), encoder.KernelName())
			return nil
		},
	}
}

func version() string { return compress.Version() }
