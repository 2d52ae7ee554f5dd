package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/compress"
)

// Exit codes. This is the one place they are defined; README.md documents
// them and errors are mapped to them only in exitCode.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitFailure: anything else went wrong (unreadable input, NaN weights,
	// disk full, output exists, an internal error, ...). No output file is
	// left behind.
	ExitFailure = 1
	// ExitUsage: bad command line or configuration (unknown flag, missing
	// argument, codec setting out of range, unknown config key, a size
	// target out of reach, a plan that does not match the input, part
	// archives that do not make one whole).
	ExitUsage = 2
	// ExitIntegrity: an archive failed a hash or structure check (verify,
	// decompress, inspect). Nothing is written.
	ExitIntegrity = 3
	// ExitBudget: stream's --max-bytes is below the smallest possible
	// archive (header, index, base layers and exactly stored tensors); the
	// error states that minimum. Nothing is written.
	ExitBudget = 4
	// ExitInterrupted: cancelled by SIGINT/SIGTERM; partial output removed.
	ExitInterrupted = 130
)

// usageError marks a bad command line or configuration (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// hinter is an error that carries advice for the user: every package's
// error types implement it (archive, safetensors, torchload, compress, ...),
// and printError prints each Hint of the chain as a "seedlm: hint:" line.
type hinter interface{ Hint() string }

// hinted attaches a hint to an error.
type hinted struct {
	err  error
	hint string
}

func (e *hinted) Error() string { return e.err.Error() }
func (e *hinted) Unwrap() error { return e.err }
func (e *hinted) Hint() string  { return e.hint }

func withHint(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &hinted{err, fmt.Sprintf(format, args...)}
}

// hints lists the hints along err's chain, innermost (most specific) first.
func hints(err error) []string {
	var out []string
	for e := err; e != nil; {
		var h hinter
		if !errors.As(e, &h) {
			break
		}
		if s := h.Hint(); s != "" && !slices.Contains(out, s) {
			out = append([]string{s}, out...)
		}
		e = errors.Unwrap(h.(error))
	}
	return out
}

// isUsage reports whether err is a usage error: a bad command line or
// configuration, or settings or a plan that cannot work with this input.
func isUsage(err error) bool {
	var ue *usageError
	var se *compress.SettingsError
	var me *compress.MismatchError
	var pe *compress.PlanFileError
	var ge *archive.MergeError
	return errors.As(err, &ue) || errors.As(err, &se) || errors.As(err, &me) || errors.As(err, &pe) || errors.As(err, &ge)
}

// exitCode maps an error returned by a command to the process exit status.
func exitCode(err error) int {
	var be *budgetTooSmall
	switch {
	case err == nil:
		return ExitOK
	case isIntegrityError(err):
		return ExitIntegrity
	case errors.As(err, &be):
		return ExitBudget
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case isUsage(err):
		return ExitUsage
	default:
		return ExitFailure
	}
}

// printError writes err in the style of age: "seedlm: error: ..." and its
// hints as "seedlm: hint: ..." lines.
func printError(w io.Writer, err error) {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(w, "seedlm: error: interrupted; no output was written")
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		fmt.Fprintf(w, "seedlm: error: %s\n", line)
	}
	for _, h := range errorHints(err) {
		fmt.Fprintf(w, "seedlm: hint: %s\n", h)
	}
}

// errorHints are the hints printed for err: its own, or for a usage error
// without any, where to find the usage.
func errorHints(err error) []string {
	hs := hints(err)
	if len(hs) == 0 && isUsage(err) {
		hs = []string{"run \"seedlm help\" or \"seedlm COMMAND --help\" for usage"}
	}
	return hs
}

// internalError is a panic turned into an error: a bug, never a usage
// problem (Go's own exit status for a panic, 2, would claim one).
type internalError struct {
	value any
	stack []byte
}

func (e *internalError) Error() string {
	return fmt.Sprintf("internal error: %v\n%s", e.value, e.stack)
}

func (e *internalError) Hint() string {
	return "this is a bug in seedlm; please report it with the command line and the message above"
}
