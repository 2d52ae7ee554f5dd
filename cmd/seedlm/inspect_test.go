package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/seedlm/seedlm/internal/archive"
)

// inspect produces its rows as it prints them; the output must be exactly
// what printing a report holding every row gives (writeJSON, tabwriter).
func TestInspectStreamsLikeAFullReport(t *testing.T) {
	dir := t.TempDir()
	b := compressFixture(t, dir, "m", map[string]string{"flags": "--layers 3"})
	p := filepath.Join(dir, "m.seedlm")
	a, err := archive.Open(p, archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	in := newInspection(p, int64(len(b)), a.Index(), nil)

	full := *in.rep
	for i := range in.ix.Tensors {
		full.Tensors = append(full.Tensors, in.row(i))
	}
	var want, got bytes.Buffer
	if err := writeJSON(&want, &full); err != nil {
		t.Fatal(err)
	}
	if err := in.writeJSON(&got); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("streamed JSON differs:\n%s\nwant:\n%s", got.String(), want.String())
	}

	got.Reset()
	if err := in.print(&got); err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENSOR\tDTYPE\tSHAPE\tCODEC\tBYTES\tBITS/W\t×FP32\t×SRC\tREL.ERR by layers\tSNR dB by layers\tRULE")
	for _, x := range full.Tensors {
		fmt.Fprintln(tw, strings.Join(tableRow(x), "\t"))
	}
	tw.Flush()
	if !strings.Contains(got.String(), "\n\n"+table.String()+"\n") {
		t.Fatalf("table differs from tabwriter's:\n%s\nwant:\n%s", got.String(), table.String())
	}
	os.Remove(p)
}
