package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

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

// plural is "1 tensor", "2 tensors", "1,234 tensors" (one == "" for a bare
// number).
func plural(n int, one, many string) string { return plural64(int64(n), one, many) }

func plural64(n int64, one, many string) string {
	w := many
	if n == 1 {
		w = one
	}
	if w == "" {
		return commas(n)
	}
	return commas(n) + " " + w
}

// settingsOrEmpty is a settings record for JSON: {} rather than null when
// nothing was set.
func settingsOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// fmtDuration is a duration for people: "45s", "12m", "3h 20m", "2.5 days".
func fmtDuration(s float64) string {
	switch {
	case s < 90:
		return fmt.Sprintf("%.0fs", s)
	case s < 90*60:
		return fmt.Sprintf("%.0fm", s/60)
	case s < 48*3600:
		h := int(s / 3600)
		return fmt.Sprintf("%dh %02dm", h, int(s/60)-60*h)
	}
	return fmt.Sprintf("%.1f days", s/86400)
}
