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
// Commit). overwrite allows replacing an existing out.
func createArchive(out string, h archive.Header, overwrite bool, inputs []string) (archiveWriter, error) {
	w, err := archive.CreateWith(out, h, archive.CreateOptions{Overwrite: overwrite, Inputs: inputs})
	if err != nil {
		return nil, err
	}
	return realArchiveWriter{w}, nil
}

// archiveReader is what decompress, inspect and verify need.
type archiveReader interface {
	Index() *archive.Index
	Verify(ctx context.Context) error
	DecodeTensor(name string, layers int) ([]float32, error)
	ReadPassthrough(name string) ([]byte, error)
	Close() error
}

// openArchive opens a complete archive. A truncated file is an integrity
// error that names the first tensor and chunk it cuts (the archive package
// can tell them apart only when it is allowed to open the partial file).
func openArchive(path string) (archiveReader, error) {
	a, err := archive.Open(path, archive.OpenOptions{})
	var strictErr *archive.IntegrityError
	if err == nil || !errors.As(err, &strictErr) || strictErr.Tensor != "" {
		return a, err
	}
	p, perr := archive.Open(path, archive.OpenOptions{AllowPartial: true})
	if perr != nil {
		// A cut base chunk: the partial open names it.
		var strict, pe *archive.IntegrityError
		if errors.As(err, &strict) && errors.As(perr, &pe) && pe.Tensor != "" {
			return nil, &archive.IntegrityError{Path: path, Tensor: pe.Tensor, Chunk: pe.Chunk, Offset: pe.Offset,
				Reason: strict.Reason + "; this is the first incomplete chunk",
				Hint:   "the file is incomplete (an interrupted copy or download?); fetch it again"}
		}
		return nil, err
	}
	defer p.Close()
	missing := p.Missing()
	if len(missing) == 0 {
		return nil, err
	}
	m := missing[0]
	return nil, &archive.IntegrityError{Path: path, Tensor: m.Tensor, Chunk: m.Name(), Offset: m.Offset,
		Reason: fmt.Sprintf("truncated: the file is %d bytes, the archive %d; this chunk has %d of its %d bytes, %d chunk(s) are missing or incomplete",
			p.Size(), p.FullSize(), m.Have, m.Length, len(missing)),
		Hint: "the file is incomplete (an interrupted copy or download?); fetch it again"}
}

func isIntegrityError(err error) bool {
	var ie *archive.IntegrityError
	return errors.As(err, &ie)
}

// tensorWriter writes a safetensors file (or a sharded folder) tensor by
// tensor; nothing appears at the output path before Commit.
type tensorWriter interface {
	WriteTensor(name string, data []byte) error
	Commit() error
	Abort() error
}

// outTensor is one tensor of the file decompress writes.
type outTensor struct {
	Name  string
	DType string
	Shape []int64
	Shard string
}

func createSafetensors(out string, ts []outTensor, meta map[string]string) (tensorWriter, error) {
	hs := make([]safetensors.TensorHeader, len(ts))
	for i, t := range ts {
		hs[i] = safetensors.TensorHeader{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	w, err := safetensors.NewWriter(out, hs, meta)
	if err != nil {
		return nil, err
	}
	return stWriter{w}, nil
}

type stWriter struct{ w *safetensors.Writer }

func (s stWriter) WriteTensor(name string, data []byte) error { return s.w.WriteTensor(name, data) }
func (s stWriter) Commit() error                              { return s.w.Commit() }
func (s stWriter) Abort() error                               { s.w.Abort(); return nil }

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
