package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes. This is the one place they are defined; README.md documents
// them and errors are mapped to them only in exitCode.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitFailure: anything else went wrong (unreadable input, NaN weights,
	// disk full, output exists, ...). No output file is left behind.
	ExitFailure = 1
	// ExitUsage: bad command line or configuration (unknown flag, missing
	// argument, codec setting out of range, unknown config key).
	ExitUsage = 2
	// ExitIntegrity: an archive failed a hash or structure check (verify,
	// decompress, inspect). Nothing is written.
	ExitIntegrity = 3
	// ExitBudget: stream's --max-bytes is below the smallest possible
	// archive (header, index, base layers and exactly stored tensors); the
	// error states that minimum. Nothing is written.
	ExitBudget = 4
	// ExitQuality: eval's --max-kl gate failed (the candidate's mean
	// KL(original ‖ candidate) is above the limit); the report is printed.
	ExitQuality = 5
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

// hinted attaches a "seedlm: hint:" line to an error.
type hinted struct {
	err  error
	hint string
}

func (e *hinted) Error() string { return e.err.Error() }
func (e *hinted) Unwrap() error { return e.err }

func withHint(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &hinted{err, fmt.Sprintf(format, args...)}
}

// exitCode maps an error returned by a command to the process exit status.
func exitCode(err error) int {
	var ue *usageError
	var be *budgetTooSmall
	var qe *qualityGateError
	switch {
	case err == nil:
		return ExitOK
	case isIntegrityError(err):
		return ExitIntegrity
	case errors.As(err, &be):
		return ExitBudget
	case errors.As(err, &qe):
		return ExitQuality
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ue):
		return ExitUsage
	default:
		return ExitFailure
	}
}

// printError writes err in the style of age: "seedlm: error: ..." and any
// hints as "seedlm: hint: ..." lines.
func printError(w io.Writer, err error) {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(w, "seedlm: error: interrupted; no output was written")
		return
	}
	msg, hints := splitHints(strings.TrimSpace(err.Error()))
	for _, line := range strings.Split(msg, "\n") {
		fmt.Fprintf(w, "seedlm: error: %s\n", line)
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if h, ok := e.(*hinted); ok {
			hints = append(hints, h.hint)
		}
	}
	for _, h := range hints {
		fmt.Fprintf(w, "seedlm: hint: %s\n", h)
	}
	if len(hints) > 0 {
		return
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(w, "seedlm: hint: run \"seedlm help\" or \"seedlm COMMAND --help\" for usage")
	}
	if isIntegrityError(err) {
		fmt.Fprintln(w, "seedlm: hint: the archive is damaged; restore it from a good copy or compress the model again")
	}
}

// splitHints moves the hints the internal packages embed in messages
// ("...; hint: X" or "... (hint: X)") onto their own lines.
func splitHints(msg string) (string, []string) {
	var hints []string
	for {
		if i := strings.LastIndex(msg, "; hint: "); i >= 0 {
			hints = append([]string{strings.TrimSpace(msg[i+len("; hint: "):])}, hints...)
			msg = msg[:i]
			continue
		}
		if strings.HasSuffix(msg, ")") {
			if i := strings.LastIndex(msg, " (hint: "); i >= 0 {
				hints = append([]string{strings.TrimSuffix(msg[i+len(" (hint: "):], ")")}, hints...)
				msg = msg[:i]
				continue
			}
		}
		return msg, hints
	}
}
