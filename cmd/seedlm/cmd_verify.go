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
	JSON  bool
}

func (o *verifyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolP(flagName(keyQuiet), "q", false, "print nothing on success")
	fs.BoolVar(&o.JSON, "json", false, "print the result as one JSON object on stdout")
}

// resolve reads quiet from the flag, SEEDLM_QUIET or the config file.
func (o *verifyOptions) resolve(c *config) error {
	var err error
	o.Quiet, err = c.getBool(keyQuiet)
	return err
}

func newVerifyCmd(a *app) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify ARCHIVE",
		Short: "Check every hash and the structure of an archive (exit 0 only when intact)",
		Long: `Check an archive: the header, the index and the SHA-256 of every payload
chunk, sidecar files included. Exit 0 only when all of it is intact; exit 3
names the first damaged tensor (or file) and chunk. A partial file (an
interrupted download) is not intact: verify fails on it even where
decompress --allow-partial can use it.`,
		Args: exactArgs("ARCHIVE"),
		RunE: a.configured(o.resolve, func(ctx context.Context, args []string) error {
			return runVerify(ctx, &o, args, a.stdout, a.stderr)
		}),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// verifyReport is verify's result; --json prints it.
type verifyReport struct {
	Archive          string       `json:"archive"`
	OK               bool         `json:"ok"`
	Tensors          int          `json:"tensors"`
	DuplicateTensors int          `json:"duplicate_tensors"`
	Chunks           int          `json:"chunks"`
	Files            int          `json:"files"`
	PayloadBytes     int64        `json:"payload_bytes"`
	Part             *inspectPart `json:"part,omitempty"`
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
	ix := a.Index()
	rep := &verifyReport{Archive: path, OK: true, Tensors: len(ix.Tensors), Files: len(ix.Files)}
	for i := range ix.Tensors {
		t := &ix.Tensors[i]
		switch {
		case t.DuplicateOf != "":
			rep.DuplicateTensors++
		case t.Passthrough:
			rep.Chunks++
		default:
			rep.Chunks += len(t.Layers)
		}
		rep.PayloadBytes += t.Bytes()
	}
	for _, f := range ix.Files {
		rep.PayloadBytes += f.Chunk.Length
	}
	if p := ix.Header.Part; p != nil {
		rep.Part = &inspectPart{Index: p.Index, Count: p.Count, PlanSHA256: p.PlanSHA256, Tensors: p.Tensors}
	}
	if o.JSON {
		return writeJSON(stdout, rep)
	}
	if o.Quiet {
		return nil
	}
	tensors := plural(rep.Tensors, "tensor", "tensors")
	if rep.DuplicateTensors > 0 {
		tensors += fmt.Sprintf(" (%s)", plural(rep.DuplicateTensors, "duplicate", "duplicates"))
	}
	chunks := plural(rep.Chunks, "chunk", "chunks")
	if rep.Files > 0 {
		chunks += " and " + plural(rep.Files, "sidecar file", "sidecar files")
	}
	fmt.Fprintf(stdout, "ok: %s: %s, %s, %s payload bytes verified (SHA-256)\n", path, tensors, chunks, commas(rep.PayloadBytes))
	if p := ix.Header.Part; p != nil {
		fmt.Fprintf(stdout, "note: %s is %s; join the parts with seedlm merge before decompressing\n", path, partString(p))
	}
	return nil
}
