package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"testing"
)

// FuzzIndex explores the index parser and partial opening: the fuzzer
// writes the index text and a cut; the text goes behind a valid header and
// hash (so it reaches every structure check), followed by the current
// golden archive's chunks, and the file is opened strictly and, cut short
// by `cut` bytes, as a partial download. Whatever opens must verify, decode
// (whole and streamed, with the same floats) and report figures without
// panicking, hanging or allocating past the caps.
//
//	go test ./internal/archive -run '^$' -fuzz FuzzIndex -fuzztime 10m
func FuzzIndex(f *testing.F) {
	g, err := os.ReadFile(goldenCurrent)
	if err != nil {
		f.Fatal(err)
	}
	indexLen := binary.LittleEndian.Uint64(g[8:])
	idx, chunks := g[HeaderSize:HeaderSize+indexLen], g[HeaderSize+indexLen:]
	f.Add(idx, uint16(0))
	f.Add(idx, uint16(24))  // inside the last enhancement chunk
	f.Add(idx, uint16(100)) // inside the base layers
	f.Add(bytes.TrimRight(idx, " "), uint16(1))
	f.Fuzz(func(t *testing.T, ix []byte, cut uint16) {
		if len(ix) < 2 || len(ix) > 1<<20 {
			return
		}
		h := fixedHeader{version: Version, indexLen: uint64(len(ix)), fileLen: uint64(HeaderSize + len(ix) + len(chunks)), indexHash: sha256.Sum256(ix)}
		file := append(append(h.marshal(), ix...), chunks...)
		n := len(file) - int(cut)%(len(chunks)+1)
		for _, b := range [][]byte{file, file[:n]} {
			a, err := openBytes(b, OpenOptions{AllowPartial: true})
			if err != nil {
				continue
			}
			a.Totals()
			a.BaseBytes()
			a.Missing()
			if checkAll(a) != nil {
				continue
			}
			for _, e := range a.Index().Tensors {
				if e.Passthrough {
					var got []byte
					err := a.ReadPassthroughTo(e.Name, func(p []byte) error { got = append(got, p...); return nil })
					want, _ := a.ReadPassthrough(e.Name)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("%s: streamed raw bytes differ (%v)", e.Name, err)
					}
					continue
				}
				var got []float32
				err := a.DecodeTensorTo(e.Name, 0, func(w []float32) error { got = append(got, w...); return nil })
				want, _ := a.DecodeTensor(e.Name, 0)
				if err != nil || !equalF32(got, want) {
					t.Fatalf("%s: streamed decode differs (%v)", e.Name, err)
				}
			}
		}
	})
}
