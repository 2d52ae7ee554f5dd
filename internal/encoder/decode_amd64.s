//go:build amd64 && !purego

#include "textflag.h"

// func decodeBlocksAVX2(dst *float32, offs *int32, qs *int32, scales *float64, tab *int32, nblocks, c, p int, add bool)
//
// For each block b: for each group of 8 weights g (C is a multiple of 8):
//   acc = Σ_p tab[offs[b·P+p] + 8g … +8] · qs[b·P+p]     (int32, exact: see decode_amd64.go)
//   out = float32(float64(acc) · scales[b])                 (one rounding each, as the Go decoder)
// and stores (or adds, when add) out to dst[b·C + 8g …].
TEXT ·decodeBlocksAVX2(SB), NOSPLIT, $0-65
	MOVQ dst+0(FP), DI
	MOVQ offs+8(FP), SI
	MOVQ qs+16(FP), R8
	MOVQ scales+24(FP), R9
	MOVQ tab+32(FP), R10
	MOVQ nblocks+40(FP), R11
	MOVQ c+48(FP), R12
	MOVQ p+56(FP), R13
	MOVBLZX add+64(FP), R14
	TESTQ R11, R11
	JZ done

block:
	VBROADCASTSD (R9), Y15          // scale
	XORQ BX, BX                     // g·32: byte offset of the group in the table row and in dst
groups:
	VPXOR Y0, Y0, Y0
	XORQ CX, CX                     // p
terms:
	MOVLQSX (SI)(CX*4), AX          // offs[p]
	LEAQ (R10)(AX*4), AX
	VPBROADCASTD (R8)(CX*4), Y1     // q_p
	VPMULLD (AX)(BX*1), Y1, Y2
	VPADDD Y2, Y0, Y0
	INCQ CX
	CMPQ CX, R13
	JLT terms
	VCVTDQ2PD X0, Y3                // lanes 0-3
	VEXTRACTI128 $1, Y0, X4
	VCVTDQ2PD X4, Y4                // lanes 4-7
	VMULPD Y15, Y3, Y3
	VMULPD Y15, Y4, Y4
	VCVTPD2PSY Y3, X3
	VCVTPD2PSY Y4, X4
	VINSERTF128 $1, X4, Y3, Y3
	TESTQ R14, R14
	JZ store
	VADDPS (DI)(BX*1), Y3, Y3
store:
	VMOVUPS Y3, (DI)(BX*1)
	ADDQ $32, BX
	MOVQ R12, AX
	SHLQ $2, AX                     // C·4 bytes
	CMPQ BX, AX
	JLT groups

	// next block
	ADDQ AX, DI
	LEAQ (SI)(R13*4), SI
	LEAQ (R8)(R13*4), R8
	ADDQ $8, R9
	DECQ R11
	JNZ block
done:
	VZEROUPPER
	RET
