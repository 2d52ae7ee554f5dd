package compress

import (
	"fmt"
	"strings"
)

// SettingsError is a setting, or a combination of settings, that cannot
// work: a value out of range, conflicting keys, a size target no plan can
// meet. Nothing was read or written.
type SettingsError struct{ Err error }

func (e *SettingsError) Error() string { return e.Err.Error() }
func (e *SettingsError) Unwrap() error { return e.Err }

// MismatchError is a plan used with another input, another seedlm or other
// settings than it was made for. Diffs says what differs, one item each.
type MismatchError struct {
	Plan  string // the plan file, for messages
	Diffs []string
}

func (e *MismatchError) Error() string {
	const show = 8
	d := e.Diffs
	more := ""
	if len(d) > show {
		more = fmt.Sprintf("; and %d more difference(s)", len(d)-show)
		d = d[:show]
	}
	return fmt.Sprintf("the plan %s does not match: %s%s", e.Plan, strings.Join(d, "; "), more)
}

// Hint says what to do.
func (e *MismatchError) Hint() string {
	return "run every part with the same input files, seedlm version and settings as seedlm plan (or make the plan again)"
}
