//go:build amd64 && !purego

package encoder

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out scan_amd64.s

//go:noescape
func scanAVX2P1(u, coef, w, thr, n2 *float32, c, from, to int) (pos int, mask uint32)

//go:noescape
func scanAVX2P2(u, coef, w, thr, n2 *float32, c, from, to int) (pos int, mask uint32)

//go:noescape
func scanAVX2P3(u, coef, w, thr, n2 *float32, c, from, to int) (pos int, mask uint32)

//go:noescape
func scanAVX2P4(u, coef, w, thr, n2 *float32, c, from, to int) (pos int, mask uint32)

//go:noescape
func scanAVX2P5(u, coef, w, thr, n2 *float32, c, from, to int) (pos int, mask uint32)

//go:noescape
func scanAVX2P6(u, coef, w, thr, n2 *float32, c, from, to int) (pos int, mask uint32)

//go:noescape
func scanAVX2P7(u, coef, w, thr, n2 *float32, c, from, to int) (pos int, mask uint32)

//go:noescape
func scanAVX2P8(u, coef, w, thr, n2 *float32, c, from, to int) (pos int, mask uint32)

var avx2Kernels = [...]func(u, coef, w, thr, n2 *float32, c, from, to int) (int, uint32){
	1: scanAVX2P1, 2: scanAVX2P2, 3: scanAVX2P3, 4: scanAVX2P4,
	5: scanAVX2P5, 6: scanAVX2P6, 7: scanAVX2P7, 8: scanAVX2P8,
}

var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func scanAVX2(bs *basis, t *tile, from, to int) (int, uint32) {
	if from >= to {
		return to, 0
	}
	return avx2Kernels[bs.P](&bs.u[0], &bs.coef[0], &t.w[0], &t.thr[0], &t.n2[0], bs.C, from, to)
}

func pickScanFor(k Kernel, p int) func(*basis, *tile, int, int) (int, uint32) {
	if k == KernelAuto && hasAVX2 && p < len(avx2Kernels) {
		return scanAVX2
	}
	return scanGeneric
}

// KernelName reports the kernel KernelAuto selects on this machine for the
// paper's configurations.
func KernelName() string {
	if hasAVX2 {
		return "avx2-fma"
	}
	return "generic"
}
