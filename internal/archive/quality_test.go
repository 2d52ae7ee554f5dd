package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func f64(x float64) *float64 { return &x }

func testQuality() *Quality {
	return &Quality{Text: "3 sequences × 20 tokens sampled from the original at temperature 1 from BOS (token 1), seed 1", Tokens: 60,
		KLMean: f64(0.2705), KLP95: f64(0.8982), KLMax: f64(4.054), Top1: f64(0.7441), PPLOriginal: f64(3.54), PPLCandidate: f64(4.649)}
}

func pendingQuality() *Quality {
	q := testQuality()
	return &Quality{Text: q.Text, Tokens: q.Tokens}
}

// writeWithQuality writes the fixture as compress does with an evaluation:
// the header created with a pending record (its room reserved), the
// figures set before Commit (set false: left pending).
func writeWithQuality(t *testing.T, path string, q *Quality, set bool) error {
	t.Helper()
	ts := fixture()
	encodeAll(t, ts)
	h := testHeader()
	h.Quality = pendingQuality()
	w, err := CreateWith(path, h, CreateOptions{Plan: planOf(ts)})
	if err != nil {
		return err
	}
	defer w.Abort()
	for _, tt := range ts {
		if err := addTensor(w, tt); err != nil {
			return err
		}
	}
	if set {
		if err := w.SetQuality(q); err != nil {
			return err
		}
	}
	return w.Commit()
}

// The quality record is reserved before encoding, filled at commit, read
// back exactly, and laid out the same whatever its figures; merge fills a
// pending record and gives the one-machine archive byte for byte; stream
// drops it once layers are left out.
func TestQualityRecord(t *testing.T) {
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.seedlm")
	if err := writeWithQuality(t, whole, testQuality(), true); err != nil {
		t.Fatal(err)
	}
	a, err := Open(whole, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := a.Index().Header.Quality
	a.Close()
	if got == nil || *got.KLMean != 0.2705 || *got.Top1 != 0.7441 || got.Tokens != 60 || got.Pending() {
		t.Fatalf("read back %+v", got)
	}
	// Other figures (wider or narrower) lay out the same chunks: the
	// reserve does not depend on them.
	other := testQuality()
	other.KLMean, other.KLMax = f64(1.234e-7), f64(123456789)
	alt := filepath.Join(dir, "alt.seedlm")
	if err := writeWithQuality(t, alt, other, true); err != nil {
		t.Fatal(err)
	}
	ia, _ := os.ReadFile(whole)
	ib, _ := os.ReadFile(alt)
	if len(ia) != len(ib) {
		t.Errorf("archives with other figures differ in size: %d vs %d", len(ia), len(ib))
	}
	// Dropping the record (an evaluation that failed) still commits.
	if err := writeWithQuality(t, filepath.Join(dir, "dropped.seedlm"), nil, true); err != nil {
		t.Errorf("dropping the record: %v", err)
	}
	// A whole archive may not keep a pending record.
	if err := writeWithQuality(t, filepath.Join(dir, "pending.seedlm"), nil, false); err == nil || !strings.Contains(err.Error(), "only a part archive") {
		t.Errorf("a pending record in a whole archive: %v", err)
	}

	// Parts carry the pending record; merge needs the figures.
	ph := testHeader()
	ph.Quality = pendingQuality()
	paths := writeParts(t, dir, ph, fixture(), [][]int{{0, 2, 4, 6}, {1, 3, 5}}, testPlanHash)
	out := filepath.Join(dir, "merged.seedlm")
	_, err = Merge(context.Background(), out, paths, CreateOptions{})
	var me *MergeError
	if !errors.As(err, &me) || !me.NeedsQuality {
		t.Fatalf("merge without figures: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused merge wrote its output")
	}
	wrong := testQuality()
	wrong.Tokens = 61
	if _, err := Merge(context.Background(), out, paths, CreateOptions{Quality: wrong}); err == nil {
		t.Error("figures for another text accepted")
	}
	if _, err := Merge(context.Background(), out, paths, CreateOptions{Quality: testQuality()}); err != nil {
		t.Fatal(err)
	}
	mb, _ := os.ReadFile(out)
	if !bytes.Equal(mb, ia) {
		t.Errorf("merged archive with figures differs from the one-machine archive (%d vs %d bytes)", len(mb), len(ia))
	}

	// Stream: with every layer the figures still hold; with fewer, not.
	full := filepath.Join(dir, "full.seedlm")
	if _, err := Stream(context.Background(), whole, full, int64(len(ia))); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.seedlm")
	if _, err := Stream(context.Background(), whole, small, int64(len(ia))-20); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want bool
	}{{full, true}, {small, false}} {
		a, err := Open(c.path, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if has := a.Index().Header.Quality != nil; has != c.want {
			t.Errorf("%s: quality record kept %v, want %v", filepath.Base(c.path), has, c.want)
		}
		a.Close()
	}
}

func TestQualityRecordValidation(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(q *Quality)
		want string
	}{
		{"no text", func(q *Quality) { q.Text = "" }, "text"},
		{"no tokens", func(q *Quality) { q.Tokens = 0 }, "tokens"},
		{"negative", func(q *Quality) { q.KLMean = f64(-1) }, "finite"},
		{"top1 above 1", func(q *Quality) { q.Top1 = f64(1.5) }, "above 1"},
		{"some figures", func(q *Quality) { q.KLMax = nil }, "all or none"},
	} {
		q := testQuality()
		c.edit(q)
		if err := q.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := testQuality().check(); err != nil {
		t.Error(err)
	}
	if err := pendingQuality().check(); err != nil {
		t.Error(err)
	}
}
