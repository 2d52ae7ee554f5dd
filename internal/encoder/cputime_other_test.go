//go:build !unix

package encoder

func cpuSeconds() float64 { return 0 }
