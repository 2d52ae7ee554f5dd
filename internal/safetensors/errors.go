package safetensors

import (
	"strconv"
	"strings"
)

// Error is returned for every problem with a file's contents or with a
// caller's request: it names the file and, where one is involved, the tensor,
// and may carry advice on what to do (Hint).
type Error struct {
	File   string
	Tensor string // "" when the problem is not about one tensor
	Msg    string
	Advice string // what to do about it, for Hint
	Err    error  // underlying cause (I/O, JSON), if any
}

// Hint is the advice on what to do ("" if none); callers find it with
// errors.As and an interface{ Hint() string }.
func (e *Error) Hint() string { return e.Advice }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Tensor != "" {
		b.WriteString(": tensor ")
		b.WriteString(quote(e.Tensor))
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// quote keeps hostile names short and printable in messages.
func quote(s string) string {
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strconv.Quote(strings.ToValidUTF8(s, "\uFFFD"))
}
