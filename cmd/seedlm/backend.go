package main

// This file is the only place the CLI calls the checkpoint, safetensors and
// archive packages' constructors, so API changes there touch one file.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/encoder"
	"github.com/seedlm/seedlm/internal/safetensors"
)

// openSource opens a checkpoint (.safetensors, *.index.json or its folder,
// .bin/.pt/.pth).
func openSource(path string) (checkpoint.Source, error) { return checkpoint.Open(path) }

// archiveWriter is what compress needs from archive.Create.
type archiveWriter interface {
	AddPassthrough(info checkpoint.TensorInfo, rule string, raw []byte) error
	AddCoded(info checkpoint.TensorInfo, rule string, res *encoder.Result) error
	Commit() error
	Abort() error
}

type realArchiveWriter struct{ w *archive.Writer }

func (r realArchiveWriter) AddPassthrough(info checkpoint.TensorInfo, rule string, raw []byte) error {
	return r.w.AddPassthroughRule(info, rule, raw)
}
func (r realArchiveWriter) AddCoded(info checkpoint.TensorInfo, rule string, res *encoder.Result) error {
	return r.w.AddCoded(info, rule, res)
}
func (r realArchiveWriter) Commit() error { return r.w.Commit() }
func (r realArchiveWriter) Abort() error  { return r.w.Abort() }

// createArchive starts an archive at out (a temp file beside it until
// Commit). overwrite allows replacing an existing out; plan lays the
// archive out up front so it is written in one pass.
func createArchive(out string, h archive.Header, overwrite bool, inputs []string, plan []archive.PlannedTensor) (archiveWriter, error) {
	w, err := archive.CreateWith(out, h, archive.CreateOptions{Overwrite: overwrite, Inputs: inputs, Plan: plan})
	if err != nil {
		return nil, err
	}
	return realArchiveWriter{w}, nil
}

// archiveReader is what decompress, inspect, verify and stream need.
type archiveReader interface {
	Index() *archive.Index
	Verify(ctx context.Context) error
	// The weights (bytes) in bounded slices, in order.
	DecodeTensorTo(name string, layers int, emit func([]float32) error) error
	ReadPassthroughTo(name string, emit func([]byte) error) error
	// Partial files (opened with allowPartial): the chunks the file lacks
	// or holds only in part, and each tensor's complete leading layers.
	Missing() []archive.ChunkID
	AvailableLayers(name string) int
	Size() int64     // bytes on disk
	FullSize() int64 // bytes of the complete archive
	BaseBytes() int64
	HeaderAndIndexBytes() int64
	Close() error
}

type realArchiveReader struct{ *archive.Archive }

func (r realArchiveReader) HeaderAndIndexBytes() int64 {
	return archive.HeaderSize + r.IndexBytes()
}

// hintPartial is the hint for a file cut after its base layers.
const hintPartial = "the file is incomplete (an interrupted copy or download?): fetch it again; " +
	"its base layers are complete, so --allow-partial (decompress, inspect, stream) can use the chunks it holds"

// openArchive opens an archive. Without allowPartial a truncated file is an
// integrity error that names the first tensor and chunk it cuts and says
// whether --allow-partial could use it; with allowPartial a file cut
// anywhere after its base layers opens, and Missing lists what it lacks.
func openArchive(path string, allowPartial bool) (archiveReader, error) {
	a, err := archive.Open(path, archive.OpenOptions{AllowPartial: allowPartial})
	if err == nil {
		return realArchiveReader{a}, nil
	}
	var ie *archive.IntegrityError
	if !errors.As(err, &ie) || !errors.Is(err, archive.ErrTruncated) {
		return nil, err
	}
	if ie.Tensor == "" {
		// Cut inside the header or index: nothing is usable.
		return nil, &archive.IntegrityError{Path: path, Chunk: ie.Chunk, Offset: ie.Offset, Err: archive.ErrTruncated, Reason: ie.Reason,
			Hint: "the file is incomplete (an interrupted copy or download?) and ends before its index does; fetch it again"}
	}
	if allowPartial {
		// Cut inside the base layers: nothing decodes yet.
		return nil, &archive.IntegrityError{Path: path, Tensor: ie.Tensor, Chunk: ie.Chunk, Offset: ie.Offset, Err: archive.ErrTruncated,
			Reason: ie.Reason,
			Hint:   "even a partial file needs every base layer; finish the download (or fetch the file again)"}
	}
	p, perr := archive.Open(path, archive.OpenOptions{AllowPartial: true})
	if perr != nil {
		// Cut inside the index or the base layers: --allow-partial would
		// not help either.
		var pe *archive.IntegrityError
		if errors.As(perr, &pe) && pe.Tensor != "" {
			return nil, &archive.IntegrityError{Path: path, Tensor: pe.Tensor, Chunk: pe.Chunk, Offset: pe.Offset, Err: archive.ErrTruncated,
				Reason: ie.Reason + "; the file ends inside the base layers",
				Hint:   "the file is incomplete (an interrupted copy or download?); fetch it again (it is cut before its base layers end, so even --allow-partial cannot use it)"}
		}
		return nil, err
	}
	defer p.Close()
	missing := p.Missing()
	if len(missing) == 0 {
		return nil, err
	}
	m := missing[0]
	return nil, &archive.IntegrityError{Path: path, Tensor: m.Tensor, Chunk: m.Name(), Offset: m.Offset, Err: archive.ErrTruncated,
		Reason: fmt.Sprintf("truncated: the file is %d bytes, the archive %d; this chunk has %d of its %d bytes, %d chunk(s) are missing or incomplete",
			p.Size(), p.FullSize(), m.Have, m.Length, len(missing)),
		Hint: hintPartial}
}

// streamArchive writes the best archive from src that fits in maxBytes
// (archive.StreamWith).
func streamArchive(ctx context.Context, src, dst string, maxBytes int64, overwrite, allowPartial bool) (*archive.StreamReport, error) {
	return archive.StreamWith(ctx, src, dst, maxBytes, archive.StreamOptions{Overwrite: overwrite, AllowPartial: allowPartial})
}

// budgetError reports whether err is stream's refusal of a budget below
// the smallest possible archive.
func budgetError(err error) (*archive.BudgetError, bool) {
	var be *archive.BudgetError
	ok := errors.As(err, &be)
	return be, ok
}

func isIntegrityError(err error) bool {
	var ie *archive.IntegrityError
	return errors.As(err, &ie)
}

// sameFile reports whether a and b name the same existing file.
func sameFile(a, b string) bool { return safetensors.SameFile(a, b) }

// sourceIndexName is the base name of a sharded model's index file, given
// the index or its folder ("" if it cannot be found).
func sourceIndexName(path string) string {
	if strings.HasSuffix(path, ".json") {
		return filepath.Base(path)
	}
	p, err := safetensors.FindIndex(path)
	if err != nil {
		return ""
	}
	return filepath.Base(p)
}
