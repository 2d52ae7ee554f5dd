package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/seedlm/seedlm/internal/dtype"
)

// convertRaw converts raw little-endian elements of dtype to float32 in
// *buf (grown as needed). It returns how many there were and how many
// finite F64 values were beyond float32's range (now ±Inf).
func convertRaw(dt string, raw []byte, buf *[]float32) (n int, over int64, err error) {
	size, ok := dtype.Size(dt)
	if !ok || len(raw)%size != 0 {
		return 0, 0, fmt.Errorf("cannot convert %d bytes of %s", len(raw), dt)
	}
	n = len(raw) / size
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	w := (*buf)[:n]
	if err := dtype.ToFloat32(dt, w, raw); err != nil {
		return 0, 0, err
	}
	if dt == "F64" {
		for i, x := range w {
			if math.IsInf(float64(x), 0) && !math.IsInf(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])), 0) {
				over++
			}
		}
	}
	return n, over, nil
}

// countOverflow counts the finite weights of w that dtype.FromFloat32 wrote to
// data as ±Inf (F16, BF16, F8_E5M2) or saturated (F8_E4M3, which has no
// infinity): values beyond the dtype's range. The output code is looked at
// first, so the common case costs one integer test per weight.
func countOverflow(dt string, w []float32, data []byte) int64 {
	finite := func(x float32) bool { return !math.IsInf(float64(x), 0) && !math.IsNaN(float64(x)) }
	var n int64
	switch dt {
	case "F16", "BF16":
		inf := uint16(0x7c00)
		if dt == "BF16" {
			inf = 0x7f80
		}
		for i := range w {
			if binary.LittleEndian.Uint16(data[2*i:])&0x7fff == inf && finite(w[i]) {
				n++
			}
		}
	case "F8_E5M2":
		for i := range w {
			if data[i]&0x7f == 0x7c && finite(w[i]) {
				n++
			}
		}
	case "F8_E4M3":
		for _, x := range w {
			if finite(x) && math.Abs(float64(x)) > 448 {
				n++
			}
		}
	}
	return n
}

// warnOverflow lists the tensors with weights beyond their output dtype.
func warnOverflow(w io.Writer, over []tensorOverflow) {
	const show = 10
	for i, o := range over {
		if i == show {
			fmt.Fprintf(w, "seedlm: warning: … and %d more tensor(s) with values out of range\n", len(over)-show)
			break
		}
		fmt.Fprintf(w, "seedlm: warning: tensor %q: %s of %s weights are beyond the range of %s and were written as ±Inf%s\n",
			o.Tensor, commas(o.Weights), commas(o.Of), o.DType, saturateNote(o.DType))
	}
	if len(over) > 0 {
		fmt.Fprintf(w, "seedlm: hint: decompress with --dtype f32 (or bf16, which has float32's range) to keep them finite\n")
	}
}

func saturateNote(dtype string) string {
	if dtype == "F8_E4M3" {
		return " (F8_E4M3 has no infinity: saturated to ±448)"
	}
	return ""
}
