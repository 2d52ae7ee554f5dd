//go:build !unix

package sensitivity

func cpuSeconds() float64 { return 0 }
