package main

import (
	"fmt"
	"io"

	"github.com/seedlm/seedlm/internal/dtype"
)

// convertRaw converts raw little-endian elements of dt to float32 in *buf
// (grown as needed). It returns how many there were and how many finite
// values were beyond float32's range (now ±Inf).
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
	return n, dtype.WidenedToInf(dt, w, raw), nil
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
