package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type verifyOptions struct {
	Quiet bool
}

func (o *verifyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&o.Quiet, "quiet", "q", false, "print nothing on success")
}

func newVerifyCmd(a *app) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify ARCHIVE",
		Short: "Check every hash and the structure of an archive (exit 0 only when intact)",
		Long: `Check an archive: the header, the index and the SHA-256 of every payload
chunk. Exit 0 only when all of it is intact; exit 3 names the first damaged
tensor and chunk. A partial file (an interrupted download) is not intact:
verify fails on it even where decompress --allow-partial can use it.`,
		Args: exactArgs("ARCHIVE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), &o, args, a.stdout, a.stderr)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runVerify(ctx context.Context, o *verifyOptions, args []string, stdout, _ io.Writer) error {
	path := args[0]
	a, err := openArchive(path, false)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Verify(ctx); err != nil {
		return err
	}
	if o.Quiet {
		return nil
	}
	ix := a.Index()
	chunks := 0
	var bytes int64
	for i := range ix.Tensors {
		t := &ix.Tensors[i]
		if t.Passthrough {
			chunks++
		} else {
			chunks += len(t.Layers)
		}
		bytes += t.Bytes()
	}
	fmt.Fprintf(stdout, "ok: %s: %d tensors, %d chunks, %s payload bytes verified (SHA-256)\n",
		path, len(ix.Tensors), chunks, commas(bytes))
	if p := ix.Header.Part; p != nil {
		fmt.Fprintf(stdout, "note: %s is %s; join the parts with seedlm merge before decompressing\n", path, partString(p))
	}
	return nil
}
