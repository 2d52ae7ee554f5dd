//go:build amd64 && !purego

#include "textflag.h"

// func dotTileAVX2(x0, x1, x2, w0, w1, w2 *float32, n8 int, acc *[72]float32)
//
// The 3×3 tile of dotTileGeneric: nine 8-lane accumulators (Y0–Y8, loaded
// from and stored back to acc), three weight vectors per step (Y9–Y11), one
// x vector at a time (Y12). Products are rounded (VMULPS) before they are
// added (VADDPS): no FMA, so the result is the portable kernel's, bit for
// bit. On cores with separate multiply and add pipes (AMD Zen) this runs at
// the multiply-add peak anyway.
TEXT ·dotTileAVX2(SB), NOSPLIT, $0-64
	MOVQ x0+0(FP), AX
	MOVQ x1+8(FP), BX
	MOVQ x2+16(FP), CX
	MOVQ w0+24(FP), DX
	MOVQ w1+32(FP), SI
	MOVQ w2+40(FP), DI
	MOVQ n8+48(FP), R8
	MOVQ acc+56(FP), R9
	VMOVUPS 0(R9), Y0
	VMOVUPS 32(R9), Y1
	VMOVUPS 64(R9), Y2
	VMOVUPS 96(R9), Y3
	VMOVUPS 128(R9), Y4
	VMOVUPS 160(R9), Y5
	VMOVUPS 192(R9), Y6
	VMOVUPS 224(R9), Y7
	VMOVUPS 256(R9), Y8
	XORQ R10, R10

loop:
	VMOVUPS (DX)(R10*1), Y9
	VMOVUPS (SI)(R10*1), Y10
	VMOVUPS (DI)(R10*1), Y11
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

	VMOVUPS Y0, 0(R9)
	VMOVUPS Y1, 32(R9)
	VMOVUPS Y2, 64(R9)
	VMOVUPS Y3, 96(R9)
	VMOVUPS Y4, 128(R9)
	VMOVUPS Y5, 160(R9)
	VMOVUPS Y6, 192(R9)
	VMOVUPS Y7, 224(R9)
	VMOVUPS Y8, 256(R9)
	VZEROUPPER
	RET
