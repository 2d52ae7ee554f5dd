// Command seedlm compresses LLM checkpoints with SeedLM: every block of C
// weights is stored as an LFSR seed plus a few quantized coefficients.
//
//	seedlm compress model.safetensors        # → model.seedlm
//	seedlm inspect model.seedlm
//	seedlm verify model.seedlm
//	seedlm decompress model.seedlm -o out.safetensors
//	seedlm stream model.seedlm --max-bytes 100MB -o small.seedlm
//	seedlm plan model.safetensors -o plan.json      # then, on N machines:
//	seedlm compress model.safetensors --plan plan.json --part I/N
//	seedlm merge model.part-*-of-N.seedlm -o model.seedlm
//
// Exit codes are defined in errors.go and documented in README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() { os.Exit(mainExit()) }

// mainExit runs the CLI with Ctrl-C / SIGTERM cancelling the context: the
// running command stops, removes its temporary output and exits 130. A
// second Ctrl-C kills the process at once.
func mainExit() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// run executes one command line and returns the exit code; errors are
// printed here and only here.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	root, app := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	defer func() {
		// A panic is a bug: report it and exit 1, never Go's 2 (usage).
		if p := recover(); p != nil {
			err := &internalError{value: p, stack: debug.Stack()}
			printError(stderr, err)
			code = exitCode(err)
		}
	}()
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && !app.started {
		// Cobra failed before any command ran: unknown command or the
		// like.
		if _, ok := err.(*usageError); !ok {
			err = suggestion(&usageError{err})
		}
	}
	if err != nil {
		printError(stderr, err)
		if wantsJSON(cmd, args) {
			writeJSONError(stdout, err)
		}
	}
	return exitCode(err)
}

// wantsJSON reports whether the command line asked for --json: from the
// parsed flag, or (when parsing failed before it) from the arguments.
func wantsJSON(cmd *cobra.Command, args []string) bool {
	if cmd != nil {
		if f := cmd.Flags().Lookup("json"); f != nil && f.Changed {
			return f.Value.String() == "true"
		}
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
}

// jsonError is an error as --json prints it on stdout, for scripts: the
// message, the hints, the exit code and, for stream's budget error, the
// smallest budget that works.
type jsonError struct {
	Error    string   `json:"error"`
	Hint     string   `json:"hint"`
	Hints    []string `json:"hints"`
	ExitCode int      `json:"exit_code"`
	MinBytes *int64   `json:"min_bytes,omitempty"`
}

func writeJSONError(w io.Writer, err error) {
	je := jsonError{Error: strings.TrimSpace(err.Error()), Hints: errorHints(err), ExitCode: exitCode(err)}
	if errors.Is(err, context.Canceled) {
		je.Error = "interrupted; no output was written"
	}
	if je.Hints == nil {
		je.Hints = []string{}
	}
	je.Hint = strings.Join(je.Hints, "\n")
	var be *budgetTooSmall
	if errors.As(err, &be) {
		je.MinBytes = &be.minBytes
	}
	writeJSON(w, je)
}

// suggestion turns cobra's "unknown command" error, whose text ends in a
// "Did you mean this?" list, into the error's first line and one hint.
func suggestion(err error) error {
	first, rest, ok := strings.Cut(err.Error(), "\n\nDid you mean this?\n")
	if !ok {
		return err
	}
	var names []string
	for _, f := range strings.Fields(rest) {
		names = append(names, fmt.Sprintf("%q", f))
	}
	return withHint(&usageError{errors.New(first)}, "did you mean %s? (run \"seedlm help\" for the commands)", strings.Join(names, " or "))
}
