package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// snrDB is 10·log10(‖w‖²/‖w−ŵ‖²); nil when the error is 0 (exact).
func snrDB(norm2, sqErr float64) *float64 {
	if sqErr <= 0 || norm2 <= 0 {
		return nil
	}
	v := 10 * math.Log10(norm2/sqErr)
	return &v
}

func fmtDB(v *float64) string {
	if v == nil {
		return "exact"
	}
	return fmt.Sprintf("%.2f dB", *v)
}

func fmtSeconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2fs", s)
	}
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortName fits a tensor name in the progress bar's 40-column description
// (padded, so the bar does not jump between tensors).
func shortName(s string) string {
	r := []rune(s)
	if len(r) > 40 {
		r = append([]rune("…"), r[len(r)-39:]...)
	}
	return fmt.Sprintf("%-40s", string(r))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
