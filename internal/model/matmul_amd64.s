//go:build amd64 && !purego

#include "textflag.h"

// func dotRowsAVX2(x0, x1, x2, w *float32, ldw, tiles, n8 int, d0, d1, d2 *float32)
//
// For each tile t < tiles, the 3×3 block of dot products between rows
// x0, x1, x2 and weight rows 3t, 3t+1, 3t+2 (ldw floats apart) over the
// first 8·n8 elements, written to d_r[3t+s]: the arithmetic of
// dotRowsGeneric, bit for bit. Nine 8-lane accumulators (Y0–Y8), three
// weight vectors per step (Y9–Y11), one x vector at a time (Y12). Each
// product is rounded (VMULPS) before it is added (VADDPS): no FMA. The lanes
// are reduced as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
TEXT ·dotRowsAVX2(SB), NOSPLIT, $0-80
	MOVQ x0+0(FP), AX
	MOVQ x1+8(FP), BX
	MOVQ x2+16(FP), CX
	MOVQ w+24(FP), DX
	MOVQ ldw+32(FP), SI
	SHLQ $2, SI                // row stride in bytes
	MOVQ tiles+40(FP), R9
	MOVQ d0+56(FP), R13
	MOVQ d1+64(FP), R14
	MOVQ d2+72(FP), R15

tile:
	LEAQ (DX)(SI*1), R11       // weight row 1
	LEAQ (R11)(SI*1), R12      // weight row 2
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	MOVQ n8+48(FP), R8
	XORQ R10, R10

loop:
	VMOVUPS (DX)(R10*1), Y9
	VMOVUPS (R11)(R10*1), Y10
	VMOVUPS (R12)(R10*1), Y11
	VMOVUPS (AX)(R10*1), Y12
	VMULPS  Y9, Y12, Y13
	VMULPS  Y10, Y12, Y14
	VMULPS  Y11, Y12, Y15
	VADDPS  Y13, Y0, Y0
	VADDPS  Y14, Y1, Y1
	VADDPS  Y15, Y2, Y2
	VMOVUPS (BX)(R10*1), Y12
	VMULPS  Y9, Y12, Y13
	VMULPS  Y10, Y12, Y14
	VMULPS  Y11, Y12, Y15
	VADDPS  Y13, Y3, Y3
	VADDPS  Y14, Y4, Y4
	VADDPS  Y15, Y5, Y5
	VMOVUPS (CX)(R10*1), Y12
	VMULPS  Y9, Y12, Y13
	VMULPS  Y10, Y12, Y14
	VMULPS  Y11, Y12, Y15
	VADDPS  Y13, Y6, Y6
	VADDPS  Y14, Y7, Y7
	VADDPS  Y15, Y8, Y8
	ADDQ    $32, R10
	DECQ    R8
	JNZ     loop

	// Reduce each accumulator and store it.
#define REDUCE(acc, xacc, dst) \
	VEXTRACTF128 $1, acc, X9 \
	VADDPS  X9, xacc, xacc \
	VMOVHLPS xacc, xacc, X10 \
	VADDPS  X10, xacc, xacc \
	VMOVSHDUP xacc, X11 \
	VADDSS  X11, xacc, xacc \
	VMOVSS  xacc, dst

	REDUCE(Y0, X0, 0(R13))
	REDUCE(Y1, X1, 4(R13))
	REDUCE(Y2, X2, 8(R13))
	REDUCE(Y3, X3, 0(R14))
	REDUCE(Y4, X4, 4(R14))
	REDUCE(Y5, X5, 8(R14))
	REDUCE(Y6, X6, 0(R15))
	REDUCE(Y7, X7, 4(R15))
	REDUCE(Y8, X8, 8(R15))

	ADDQ $12, R13
	ADDQ $12, R14
	ADDQ $12, R15
	LEAQ (R12)(SI*1), DX       // next tile's first weight row
	DECQ R9
	JNZ  tile

	VZEROUPPER
	RET
