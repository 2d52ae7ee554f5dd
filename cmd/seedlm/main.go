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
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
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
	err := root.ExecuteContext(ctx)
	if err != nil && !app.started {
		// Cobra failed before any command ran: unknown command or the
		// like.
		if _, ok := err.(*usageError); !ok {
			err = &usageError{err}
		}
	}
	if err != nil {
		printError(stderr, err)
	}
	return exitCode(err)
}
