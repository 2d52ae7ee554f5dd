package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// MergeError is Merge's refusal of a set of part archives that do not make
// one whole archive: parts of different plans or sources, a part missing or
// given twice, or a file that is not a part. Nothing is written.
type MergeError struct {
	Reason string
	Advice string
	// Missing lists the part numbers not given (of Count), when that is
	// the problem.
	Missing []int
	Count   int
	// NeedsQuality says the parts wait for an evaluation of the merged
	// model (CreateOptions.Quality).
	NeedsQuality bool
}

func (e *MergeError) Error() string { return "merge: " + e.Reason }

// Hint says what to do about it.
func (e *MergeError) Hint() string { return e.Advice }

// MergeReport describes what Merge wrote.
type MergeReport struct {
	Parts   int   `json:"parts"`
	Tensors int   `json:"tensors"`
	Bytes   int64 `json:"bytes"`
}

// partFile is one opened part archive.
type partFile struct {
	path string
	a    *Archive
	p    *Part
}

// Merge joins the part archives at paths (one machine's share each, see
// Header.Part) into the archive out that one machine compressing every
// tensor would have written: the same header (less the part record), the
// tensors in their original order, and each chunk's bytes copied without
// decoding and re-hashed on the way (a mismatch is an *IntegrityError naming
// the part). It refuses (*MergeError), before writing anything, parts whose
// plan, source or settings differ, a part given twice and missing parts,
// naming the missing part numbers. Memory holds the parts' indexes, not
// their chunks. opt works as for CreateWith; the parts are inputs.
func Merge(ctx context.Context, out string, paths []string, opt CreateOptions) (*MergeReport, error) {
	if len(paths) == 0 {
		return nil, &MergeError{Reason: "no part archives given", Advice: "name every part archive of the model"}
	}
	parts := make([]*partFile, 0, len(paths))
	defer func() {
		for _, pf := range parts {
			pf.a.Close()
		}
	}()
	for _, p := range paths {
		a, err := Open(p, OpenOptions{})
		if err != nil {
			return nil, err
		}
		parts = append(parts, &partFile{path: p, a: a, p: a.idx.Header.Part})
		if a.idx.Header.Part == nil {
			return nil, &MergeError{Reason: fmt.Sprintf("%s is a whole archive, not a part (it has no part record)", p),
				Advice: "merge part archives (those with a part record), or use the whole archive as it is"}
		}
	}
	ix, src, err := mergedIndex(parts)
	if err != nil {
		return nil, err
	}
	if q := ix.Header.Quality; q != nil {
		f := opt.Quality
		switch {
		case f == nil:
			return nil, &MergeError{Reason: "the parts were planned with an evaluation of the compressed model (a pending quality record), which needs the original model",
				Advice: "evaluate the parts against the original model and merge with the figures (the seedlm CLI does both)", NeedsQuality: true}
		case f.Text != q.Text || f.Tokens != q.Tokens || f.Pending():
			return nil, fmt.Errorf("merge: the quality figures given are for %q (%d tokens), the parts planned %q (%d tokens)", f.Text, f.Tokens, q.Text, q.Tokens)
		}
		c := *f
		ix.Header.Quality = &c
	}
	opt.Inputs = append(append([]string(nil), opt.Inputs...), paths...)
	if err := checkOutput(out, opt.Overwrite, opt.Inputs); err != nil {
		return nil, err
	}
	// at remembers the chunk being copied, so a copy error can be traced to
	// the part and chunk at fault.
	var at struct {
		pf *partFile
		s  slot // in pf's index
	}
	srcAt := func(s slot) (io.ReaderAt, int64) {
		at.pf, at.s = parts[0], s // every part holds the same files
		if s.layer != fileLayer {
			at.pf, at.s = src[s.t].pf, slot{src[s.t].i, s.layer}
		}
		return at.pf.a.f, at.pf.a.idx.ref(at.s).Offset
	}
	if err := assemble(out, ix, opt, srcAt, ctx.Err); err != nil {
		if ctx.Err() == nil && at.pf != nil {
			if _, cerr := at.pf.a.readChunk(at.s); cerr != nil {
				return nil, cerr
			}
		}
		return nil, err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	return &MergeReport{Parts: len(parts), Tensors: len(ix.Tensors), Bytes: fi.Size()}, nil
}

// source is where a merged tensor's chunks come from.
type source struct {
	pf *partFile
	e  *TensorEntry
	i  int // e's position in pf's index
}

// mergedIndex checks that the parts make one whole and returns the merged
// index (offsets still to be laid out) and, per tensor, its part.
func mergedIndex(parts []*partFile) (*Index, []source, error) {
	first := parts[0]
	fh, err := headerSansPart(first.a.idx.Header)
	if err != nil {
		return nil, nil, err
	}
	byIndex := map[int]*partFile{}
	for _, pf := range parts {
		p := pf.p
		switch {
		case p.PlanSHA256 != first.p.PlanSHA256:
			return nil, nil, &MergeError{
				Reason: fmt.Sprintf("%s and %s come from different plans (%s… and %s…)", first.path, pf.path, first.p.PlanSHA256[:12], p.PlanSHA256[:12]),
				Advice: "merge only the parts compressed from one plan file; re-run the parts of the odd one out"}
		case p.Count != first.p.Count || p.Tensors != first.p.Tensors:
			return nil, nil, &MergeError{
				Reason: fmt.Sprintf("%s is part %d of %d, %s part %d of %d", first.path, first.p.Index, first.p.Count, pf.path, p.Index, p.Count),
				Advice: "every part of one archive must be made with the same part count"}
		}
		h, err := headerSansPart(pf.a.idx.Header)
		if err != nil {
			return nil, nil, err
		}
		if !bytes.Equal(h, fh) {
			return nil, nil, &MergeError{
				Reason: fmt.Sprintf("%s and %s record a different source or settings", first.path, pf.path),
				Advice: "compress every part from the same input files"}
		}
		if d := diffFiles(first.a.idx.Files, pf.a.idx.Files); d != "" {
			return nil, nil, &MergeError{
				Reason: fmt.Sprintf("%s and %s hold different sidecar files: %s", first.path, pf.path, d),
				Advice: "compress every part from the same model folder"}
		}
		if prev, dup := byIndex[p.Index]; dup {
			return nil, nil, &MergeError{Reason: fmt.Sprintf("part %d of %d is given twice: %s and %s", p.Index, p.Count, prev.path, pf.path),
				Advice: "name each part once"}
		}
		byIndex[p.Index] = pf
	}
	if n := first.p.Count; len(byIndex) != n {
		var missing []string
		var nums []int
		for i := 0; i < n; i++ {
			if byIndex[i] == nil {
				missing = append(missing, fmt.Sprint(i))
				nums = append(nums, i)
			}
		}
		return nil, nil, &MergeError{
			Reason: fmt.Sprintf("missing part(s) %s of %d (have %d)", strings.Join(missing, ", "), n, len(byIndex)),
			Advice: "make the missing parts from the same plan and merge again", Missing: nums, Count: n}
	}
	src := make([]source, first.p.Tensors)
	for _, pf := range parts {
		for j, pos := range pf.p.Positions {
			if prev := src[pos].pf; prev != nil {
				return nil, nil, &MergeError{Reason: fmt.Sprintf("tensor %d is in both %s and %s", pos, prev.path, pf.path),
					Advice: "the parts disagree with their own plan: compress them again"}
			}
			src[pos] = source{pf, &pf.a.idx.Tensors[j], j}
		}
	}
	ix := &Index{Header: cloneHeader(first.a.idx.Header), Tensors: make([]TensorEntry, len(src)), Files: append([]FileEntry(nil), first.a.idx.Files...)}
	ix.Header.Part = nil
	names := make(map[string]bool, len(src))
	for i, s := range src {
		if s.pf == nil {
			return nil, nil, &MergeError{Reason: fmt.Sprintf("no part holds tensor %d of %d", i, len(src)),
				Advice: "the parts disagree with their own plan: compress them again"}
		}
		if names[s.e.Name] {
			return nil, nil, &MergeError{Reason: fmt.Sprintf("tensor %q is in two parts", s.e.Name), Advice: "compress the parts again"}
		}
		names[s.e.Name] = true
		ix.Tensors[i] = cloneEntry(s.e)
	}
	return ix, src, nil
}

// diffFiles says how two parts' sidecar files differ ("" if they agree
// in names, lengths and hashes).
func diffFiles(a, b []FileEntry) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d and %d files", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Chunk.Length != y.Chunk.Length || x.Chunk.SHA256 != y.Chunk.SHA256 {
			return fmt.Sprintf("file %d is %q (%d bytes, SHA-256 %.12s…) and %q (%d bytes, SHA-256 %.12s…)",
				i, x.Name, x.Chunk.Length, x.Chunk.SHA256, y.Name, y.Chunk.Length, y.Chunk.SHA256)
		}
	}
	return ""
}

// headerSansPart is the canonical encoding of h without its part record:
// what every part of one archive shares, and the merged archive's header.
func headerSansPart(h Header) ([]byte, error) {
	h.Part = nil
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	return b, nil
}

// cloneEntry copies an index entry so laying out the merged index leaves the
// part's own index untouched.
func cloneEntry(e *TensorEntry) TensorEntry {
	c := *e
	c.Shape = append([]int64{}, e.Shape...)
	if e.Raw != nil {
		r := *e.Raw
		c.Raw = &r
	}
	c.Layers = append([]LayerEntry(nil), e.Layers...)
	return c
}
