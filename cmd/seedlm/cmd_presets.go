package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/seedlm/seedlm/internal/presets"
)

type presetsOptions struct {
	JSON bool
}

func (o *presetsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.JSON, "json", false, "print the presets as JSON: each one's fixed layers, or its target and candidate stacks, as numbers")
}

func newPresetsCmd(a *app) *cobra.Command {
	var o presetsOptions
	cmd := &cobra.Command{
		Use:   "presets",
		Short: "List the built-in presets and their settings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPresets(cmd.Context(), &o, args, a.stdout, a.stderr)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runPresets(_ context.Context, o *presetsOptions, _ []string, stdout, _ io.Writer) error {
	ps := presets.Presets()
	if o.JSON {
		rows := make([]presets.PresetSpec, len(ps))
		for i, p := range ps {
			rows[i] = p.Spec()
		}
		return writeJSON(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PRESET\tTARGET\tSETTINGS")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, p.Target, p.Settings())
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	for _, p := range ps {
		fmt.Fprintf(stdout, "%s: %s\n", p.Name, p.Summary)
	}
	fmt.Fprintln(stdout, "\nWith no preset, compress uses the paper's 4-bit configuration (C8 P3 K16 B4 E4, 4.000 bits/weight).")
	fmt.Fprintln(stdout, "Every preset is refined by the config file and flags; compress --dry-run shows the per-tensor result.")
	return nil
}
