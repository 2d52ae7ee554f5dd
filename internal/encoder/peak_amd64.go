//go:build amd64 && !purego

package encoder

//go:noescape
func fmaPeak(n int)

// peakFMAsPerCall is the 8-lane multiply-adds one fmaPeak(n) call does.
func peakLaneFMAs(n int) float64 { fmaPeak(n); return float64(n) * 14 * 8 }
