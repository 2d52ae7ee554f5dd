//go:build amd64 && !purego

package encoder

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out scan_amd64.s -goout scan_amd64_decl.go

var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// avx2Scan adapts an assembly kernel to the scan signature.
func avx2Scan(kern scanKernel) func(*basis, *tile, int, int) (int, uint32) {
	return func(bs *basis, t *tile, from, to int) (int, uint32) {
		if from >= to {
			return to, 0
		}
		return kern(&bs.u[0], &bs.coef[0], &t.w[0], &t.thr[0], &t.n2[0], bs.C, from, to)
	}
}

func pickScanFor(k Kernel, c, p int) func(*basis, *tile, int, int) (int, uint32) {
	if k == KernelGeneric || !hasAVX2 {
		return scanGeneric
	}
	if kern, ok := avx2Unrolled[[2]int{c, p}]; ok && k != kernelLooped {
		return avx2Scan(kern)
	}
	if p < len(avx2Loop) && avx2Loop[p] != nil {
		return avx2Scan(avx2Loop[p])
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

func pickIllFor(k Kernel, p int) func(*basis, *tile, int, int) (int, uint32) {
	if k == KernelGeneric || !hasAVX2 || p >= len(avx2Ill) || avx2Ill[p] == nil {
		return illGeneric
	}
	kern := avx2Ill[p]
	return func(bs *basis, t *tile, from, to int) (int, uint32) {
		if from >= to {
			return to, 0
		}
		return kern(&bs.illQ32[0], &t.w[0], &t.thr[0], &t.n2[0], bs.illM, bs.C, from, to)
	}
}
