//go:build amd64 && !purego

package encoder

//go:noescape
func fmaPeak(n int)

//go:noescape
func pmaddPeak(n int)

// peakLaneFMAs runs fmaPeak(n) and returns the 8-lane multiply-adds done.
func peakLaneFMAs(n int) float64 { fmaPeak(n); return float64(n) * 14 * 8 }

// peakMAC16s runs pmaddPeak(n) and returns the int16 multiply-adds done
// (16 per VPMADDWD).
func peakMAC16s(n int) float64 { pmaddPeak(n); return float64(n) * 7 * 16 }
