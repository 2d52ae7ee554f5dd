package main

// This file turns the archive package's errors into the CLI's: opening an
// archive (with what --allow-partial could use of a cut file) and the
// errors exitCode and stream tell apart.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/seedlm/seedlm/internal/archive"
)

// hintPartial is the hint for a file cut after its base layers.
const hintPartial = "the file is incomplete (an interrupted copy or download?): fetch it again; " +
	"its base layers are complete, so --allow-partial (decompress, inspect, stream) can use the chunks it holds"

// openArchive opens an archive. Without allowPartial a truncated file is an
// integrity error that names the first tensor and chunk it cuts and says
// whether --allow-partial could use it; with allowPartial a file cut
// anywhere after its base layers opens, and Missing lists what it lacks.
func openArchive(path string, allowPartial bool) (*archive.Archive, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, withHint(fmt.Errorf("archive %s does not exist", path), "check the path; seedlm compress writes MODEL.seedlm beside the model by default")
	}
	a, err := archive.Open(path, archive.OpenOptions{AllowPartial: allowPartial})
	if err == nil {
		return a, nil
	}
	var ie *archive.IntegrityError
	if !errors.As(err, &ie) || !errors.Is(err, archive.ErrTruncated) {
		return nil, err
	}
	if ie.Tensor == "" && ie.File == "" {
		// Cut inside the header or index: nothing is usable.
		return nil, &archive.IntegrityError{Path: path, Chunk: ie.Chunk, Offset: ie.Offset, Err: archive.ErrTruncated, Reason: ie.Reason,
			Advice: "the file is incomplete (an interrupted copy or download?) and ends before its index does; fetch it again"}
	}
	if allowPartial {
		// Cut inside the base layers: nothing decodes yet.
		return nil, &archive.IntegrityError{Path: path, Tensor: ie.Tensor, File: ie.File, Chunk: ie.Chunk, Offset: ie.Offset, Err: archive.ErrTruncated,
			Reason: ie.Reason,
			Advice: "even a partial file needs every base layer and sidecar file; finish the download (or fetch the file again)"}
	}
	p, perr := archive.Open(path, archive.OpenOptions{AllowPartial: true})
	if perr != nil {
		// Cut inside the index or the base layers: --allow-partial would
		// not help either.
		var pe *archive.IntegrityError
		if errors.As(perr, &pe) && (pe.Tensor != "" || pe.File != "") {
			return nil, &archive.IntegrityError{Path: path, Tensor: pe.Tensor, File: pe.File, Chunk: pe.Chunk, Offset: pe.Offset, Err: archive.ErrTruncated,
				Reason: ie.Reason + "; the file ends inside the base layers",
				Advice: "the file is incomplete (an interrupted copy or download?); fetch it again (it is cut before its base layers end, so even --allow-partial cannot use it)"}
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
		Reason: fmt.Sprintf("truncated: the file is %s bytes, the archive %s; this chunk has %s of its %s bytes, %s missing or incomplete",
			commas(p.Size()), commas(p.FullSize()), commas(m.Have), commas(m.Length), plural(len(missing), "chunk is", "chunks are")),
		Advice: hintPartial}
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

// partString describes a part archive's part record for messages.
func partString(p *archive.Part) string {
	return fmt.Sprintf("part %d of %d (numbered from 0) of an archive compressed with --part, holding %d of its %d tensors", p.Index, p.Count, len(p.Positions), p.Tensors)
}
