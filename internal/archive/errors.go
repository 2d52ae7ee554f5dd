package archive

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of *IntegrityError, for errors.Is (e.g. to pick an exit code).
var (
	// ErrNotArchive: the file does not start with the SEEDLM magic
	// (reported as a *NotArchiveError).
	ErrNotArchive = errors.New("not a seedlm archive")
	// ErrVersion: a format version this build does not read.
	ErrVersion = errors.New("unsupported seedlm format version")
	// ErrTruncated: the file is shorter than its header says.
	ErrTruncated = errors.New("truncated seedlm archive")
	// ErrCorrupt: any other failed hash or structure check.
	ErrCorrupt = errors.New("corrupt seedlm archive")
)

// NotArchiveError is a file that is not a seedlm archive at all (no magic):
// wrong input, not damage, so it is not an *IntegrityError.
// errors.Is(err, ErrNotArchive) reports it.
type NotArchiveError struct {
	Path   string
	Reason string
}

func (e *NotArchiveError) Unwrap() error { return ErrNotArchive }

func (e *NotArchiveError) Error() string {
	return fmt.Sprintf("%s is not a seedlm archive (%s)", e.Path, e.Reason)
}

// Hint says what to do about it.
func (e *NotArchiveError) Hint() string { return "give a .seedlm file made by seedlm compress" }

// IntegrityError reports stored bytes that fail a hash or structure check:
// the file is corrupt, truncated, or not a valid archive. It always names the
// part of the file at fault, so the user knows what to re-fetch.
type IntegrityError struct {
	Path string
	// Tensor is the tensor whose chunk failed ("" for the header and index).
	Tensor string
	// File is the sidecar file whose chunk failed (Chunk "file").
	File string
	// Chunk is "header", "index", "raw" (a passthrough tensor's bytes),
	// "layer K" (a coded tensor's K-th progressive layer) or "file" (a
	// sidecar file's bytes).
	Chunk string
	// Offset is where the failing part starts in the file (-1 if unknown).
	Offset int64
	// Reason says what failed, e.g. "SHA-256 mismatch".
	Reason string
	// Advice says what to do about it ("": the generic advice for a
	// corrupt archive); see Hint.
	Advice string
	// Err is the kind: ErrVersion, ErrTruncated, or nil
	// for ErrCorrupt. Unwrap reports it.
	Err error
}

// Unwrap makes errors.Is(err, ErrTruncated) (etc.) work.
func (e *IntegrityError) Unwrap() error {
	if e.Err == nil {
		return ErrCorrupt
	}
	return e.Err
}

func (e *IntegrityError) Error() string {
	var b strings.Builder
	b.WriteString("seedlm archive")
	if e.Path != "" {
		fmt.Fprintf(&b, " %q", e.Path)
	}
	b.WriteString(": ")
	if e.Tensor != "" {
		fmt.Fprintf(&b, "tensor %q, ", e.Tensor)
	}
	if e.File != "" {
		fmt.Fprintf(&b, "file %q, ", e.File)
	}
	if e.Chunk != "" {
		fmt.Fprintf(&b, "chunk %q", e.Chunk)
		if e.Offset >= 0 {
			fmt.Fprintf(&b, " at offset %d", e.Offset)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Hint says what to do about the failure.
func (e *IntegrityError) Hint() string {
	if e.Advice == "" {
		return hintCorrupt
	}
	return e.Advice
}

// hintError is an error with advice for the user (Hint); callers find it
// with errors.As and an interface{ Hint() string }.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }
func (e *hintError) Hint() string  { return e.hint }

// errorf is fmt.Errorf with a hint.
func errorf(hint, format string, a ...any) error {
	return &hintError{fmt.Errorf(format, a...), hint}
}

const (
	hintCorrupt   = "the archive is corrupt; re-download it or re-create it with seedlm compress"
	hintTruncated = "the archive is truncated; finish or repeat the download (or open it allowing a partial file)"
)

// ChunkID names one payload chunk of an archive.
type ChunkID struct {
	Tensor string
	// Layer is the progressive layer, or -1 for a passthrough tensor's raw
	// bytes.
	Layer int
	// Offset and Length locate the chunk in the complete file.
	Offset, Length int64
	// Have is how many of its bytes the (partial) file holds: 0 for a
	// missing chunk, 0 < Have < Length for an incomplete one.
	Have int64
}

// Name is the chunk's name in errors: "raw" or "layer K".
func (c ChunkID) Name() string { return chunkName(c.Layer) }

func chunkName(layer int) string {
	switch {
	case layer == fileLayer:
		return "file"
	case layer < 0:
		return "raw"
	}
	return fmt.Sprintf("layer %d", layer)
}
