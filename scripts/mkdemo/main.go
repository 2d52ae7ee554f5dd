// Command mkdemo cuts the demo model in testdata/models/ out of the real
// stories260K checkpoint (karpathy/tinyllamas, MIT): decoder layer 0 and the
// final norm, F32, byte-for-byte the original values.
//
//	go run ./scripts/mkdemo -src ../shared/data/stories260K/stories260K.f32.safetensors \
//	    -o testdata/models/stories260K-layer0.safetensors
//
// It reads and writes the safetensors layout directly (8-byte little-endian
// header length, JSON header, data) so it depends on nothing in internal/.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type entry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

func main() {
	src := flag.String("src", "../shared/data/stories260K/stories260K.f32.safetensors", "source checkpoint")
	out := flag.String("o", "testdata/models/stories260K-layer0.safetensors", "output file")
	keep := flag.String("keep", "model.layers.0.,model.norm.weight", "comma-separated name prefixes to keep")
	flag.Parse()
	if err := run(*src, *out, strings.Split(*keep, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "mkdemo: error:", err)
		os.Exit(1)
	}
}

func run(src, out string, prefixes []string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return fmt.Errorf("%s: reading header length: %w", src, err)
	}
	if n > 100<<20 {
		return fmt.Errorf("%s: header length %d is implausible", src, n)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return fmt.Errorf("%s: reading header: %w", src, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &raw); err != nil {
		return fmt.Errorf("%s: header: %w", src, err)
	}
	var meta map[string]string
	type named struct {
		name string
		e    entry
	}
	var kept []named
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return fmt.Errorf("%s: metadata: %w", src, err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return fmt.Errorf("%s: tensor %q: %w", src, name, err)
		}
		for _, p := range prefixes {
			if p != "" && strings.HasPrefix(name, p) {
				kept = append(kept, named{name, e})
				break
			}
		}
	}
	if len(kept) == 0 {
		return fmt.Errorf("%s: no tensor matches %q", src, prefixes)
	}
	// Keep the source's file order.
	sort.Slice(kept, func(i, j int) bool { return kept[i].e.DataOffsets[0] < kept[j].e.DataOffsets[0] })

	base := int64(8 + n)
	var data bytes.Buffer
	// The header is written as an ordered JSON object (file order), built by hand.
	var h bytes.Buffer
	h.WriteString("{")
	if meta == nil {
		meta = map[string]string{}
	}
	meta["seedlm_demo"] = "cut-down of stories260K (karpathy/tinyllamas, MIT): decoder layer 0 and the final norm"
	mb, _ := json.Marshal(meta)
	h.WriteString(`"__metadata__":`)
	h.Write(mb)
	for _, k := range kept {
		buf := make([]byte, k.e.DataOffsets[1]-k.e.DataOffsets[0])
		if _, err := f.ReadAt(buf, base+k.e.DataOffsets[0]); err != nil {
			return fmt.Errorf("%s: tensor %q: %w", src, k.name, err)
		}
		start := int64(data.Len())
		data.Write(buf)
		ne := entry{DType: k.e.DType, Shape: k.e.Shape, DataOffsets: [2]int64{start, int64(data.Len())}}
		nb, _ := json.Marshal(k.name)
		eb, _ := json.Marshal(ne)
		h.WriteString(",")
		h.Write(nb)
		h.WriteString(":")
		h.Write(eb)
	}
	h.WriteString("}")
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	var file bytes.Buffer
	binary.Write(&file, binary.LittleEndian, uint64(h.Len()))
	file.Write(h.Bytes())
	file.Write(data.Bytes())
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, file.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return err
	}
	fmt.Printf("wrote %s: %d tensors, %d bytes\n", out, len(kept), file.Len())
	return nil
}
