//go:build amd64 && !purego

package model

import "golang.org/x/sys/cpu"

//go:noescape
func dotTileAVX2(x0, x1, x2, w0, w1, w2 *float32, n8 int, acc *[72]float32)

func dotTileAsm(x0, x1, x2, w0, w1, w2 []float32, n8 int, acc *[72]float32) {
	// The slices hold at least 8·n8 elements (gemmNT's rows have n ≥ 8·n8).
	_, _, _, _, _, _ = x0[8*n8-1], x1[8*n8-1], x2[8*n8-1], w0[8*n8-1], w1[8*n8-1], w2[8*n8-1]
	dotTileAVX2(&x0[0], &x1[0], &x2[0], &w0[0], &w1[0], &w2[0], n8, acc)
}

func init() {
	if cpu.X86.HasAVX2 {
		dotTile = dotTileAsm
	}
}

// KernelName names the matmul kernel in use.
func KernelName() string {
	if cpu.X86.HasAVX2 {
		return "avx2"
	}
	return "generic"
}
