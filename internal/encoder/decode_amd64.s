//go:build amd64 && !purego

#include "textflag.h"

// func decodeBlocksAVX2(dst *float32, firsts *uint32, qs *int32, scales *float64, tab *int32, nblocks, c, p, stride int, add bool)
//
// For each block b, with first = firsts[b] = r<<27 | off (column 0 of the
// seed's basis starts at tab[off], residue r), column j starts at off_j:
// off_{j+1} = off_j + stride, except when the residue wraps from P−1 to 0,
// where it is off_j − (P−1)·stride + 1. For each group g of 8 weights:
//   acc = Σ_j tab[off_j + 8g … +8] · qs[b·P+j]       (int32, exact: see decode_amd64.go)
//   out = float32(float64(acc) · scales[b])           (one rounding each, as the Go decoder)
// stored (or added, when add) to dst[b·C + 8g …].
TEXT ·decodeBlocksAVX2(SB), NOSPLIT, $0-73
	MOVQ dst+0(FP), DI
	MOVQ firsts+8(FP), SI
	MOVQ qs+16(FP), R8
	MOVQ scales+24(FP), R9
	MOVQ tab+32(FP), R10
	MOVQ nblocks+40(FP), R11
	MOVQ c+48(FP), R12
	SHLQ $2, R12                    // C·4 bytes
	MOVQ p+56(FP), R13
	MOVBLZX add+72(FP), R14
	TESTQ R11, R11
	JZ done

block:
	VBROADCASTSD (R9), Y15          // scale
	XORQ BX, BX                     // g·32 bytes
groups:
	VPXOR Y0, Y0, Y0
	MOVL (SI), DX
	MOVL DX, R15
	SHRL $27, R15                   // residue r
	ANDL $0x7ffffff, DX             // off
	XORQ CX, CX                     // j
terms:
	LEAQ (R10)(DX*4), AX
	VPBROADCASTD (R8)(CX*4), Y1     // q_j
	VPMULLD (AX)(BX*1), Y1, Y2
	VPADDD Y2, Y0, Y0
	ADDQ stride+64(FP), DX
	INCQ R15
	CMPQ R15, R13
	JLT nowrap
	XORQ R15, R15
	MOVQ R13, AX
	IMULQ stride+64(FP), AX
	SUBQ AX, DX
	INCQ DX
nowrap:
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
	CMPQ BX, R12
	JLT groups

	// next block
	ADDQ R12, DI
	ADDQ $4, SI
	LEAQ (R8)(R13*4), R8
	ADDQ $8, R9
	DECQ R11
	JNZ block
done:
	VZEROUPPER
	RET
