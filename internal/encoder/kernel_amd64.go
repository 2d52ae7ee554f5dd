//go:build amd64 && !purego

package encoder

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out scan_amd64.s -goout scan_amd64_decl.go

var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernelsFor picks the kernels for k on this CPU: AVX2 when available
// (projections unrolled for C ≤ 64 unless kernelLooped), the Go twins
// otherwise and where no kernel is generated (pair and ill for P > 8, the
// warm start's qmax for P > 6).
func kernelsFor(k Kernel, bs *basis) kernels {
	if k == KernelGeneric || !hasAVX2 {
		return genericKernels
	}
	out := genericKernels
	np := (bs.C + 1) / 2
	kern := projAVX2Loop
	if np < len(projUnrolled) && projUnrolled[np] != nil && k != kernelLooped {
		kern = projUnrolled[np]
	}
	out.proj = func(d *decTable, t *tile, k0, nk int, buf []float32) {
		kern(&d.tab[0], 2*d.rowLen, &t.w16[0], t.np, k0, nk, d.P, d.P*4*lanes, &buf[0])
	}
	if P := bs.P; P < len(pairAVX2) && pairAVX2[P] != nil {
		kern := pairAVX2[P]
		out.pair = func(_ int, d, coef []float32, cls []uint8, t *tile, n int) (int, uint32) {
			if n <= 0 {
				return n, 0
			}
			return kern(&d[0], &coef[0], &cls[0], &t.thrK[0][0], n)
		}
	}
	if P := bs.P; P < len(quadMaxAVX2) && quadMaxAVX2[P] != nil {
		q := quadMaxAVX2[P]
		out.qmax = func(_ int, d, coef []float32, t *tile, n, t0 int, best *[lanes]float32, arg *[lanes]int32) {
			if n > 0 {
				q(&d[0], &coef[0], n, t0, &best[0], &arg[0])
			}
		}
	}
	if P := bs.P; P < len(illAVX2) && illAVX2[P] != nil {
		kern := illAVX2[P]
		out.ill = func(bs *basis, t *tile, from, to int) (int, uint32) {
			if from >= to {
				return to, 0
			}
			return kern(&bs.illQ32[0], &t.wf[0], &bs.illClass[0], &t.thr[0][0], &t.n2[0], bs.illM, bs.C, from, to)
		}
	}
	return out
}

// KernelName reports the kernel KernelAuto selects on this machine for the
// paper's configurations.
func KernelName() string {
	if hasAVX2 {
		return "avx2-fma"
	}
	return "generic"
}
