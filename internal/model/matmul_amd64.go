//go:build amd64 && !purego

package model

import "golang.org/x/sys/cpu"

//go:noescape
func dotRowsAVX2(x0, x1, x2, w *float32, ldw, tiles, n8 int, d0, d1, d2 *float32)

func dotRowsAsm(x0, x1, x2, w []float32, ldw, tiles, n8 int, d0, d1, d2 []float32) {
	// Bounds the assembly relies on, checked once per call.
	_, _, _ = x0[8*n8-1], x1[8*n8-1], x2[8*n8-1]
	_ = w[(3*tiles-1)*ldw+8*n8-1]
	_, _, _ = d0[3*tiles-1], d1[3*tiles-1], d2[3*tiles-1]
	dotRowsAVX2(&x0[0], &x1[0], &x2[0], &w[0], ldw, tiles, n8, &d0[0], &d1[0], &d2[0])
}

func init() {
	if cpu.X86.HasAVX2 {
		dotRows = dotRowsAsm
	}
}

// KernelName names the matmul kernel in use.
func KernelName() string {
	if cpu.X86.HasAVX2 {
		return "avx2"
	}
	return "generic"
}
