//go:build amd64 && !purego

#include "textflag.h"

// func decodeBlocksAVX2(dst *float32, firsts *uint32, qs *int32, scales *float64, tab *int32, nblocks, c, p, stride int, add bool, delta *int64)
//
// For each block b, with first = firsts[b] = r<<27 | off (column 0 of the
// seed's basis starts at tab[off], residue r), column j starts at
// off + delta[r·P + j] (decimated.delta: the wrap of the residue from P−1
// to 0 depends on the seed, so a branch on it would mispredict about once
// a block). For each group g of 8 weights:
//   acc = Σ_j tab[off_j + 8g … +8] · qs[b·P+j]       (int32, exact: see decode_amd64.go)
//   out = float32(float64(acc) · scales[b])           (one rounding each, as the Go decoder)
// stored (or added, when add) to dst[b·C + 8g …].
TEXT ·decodeBlocksAVX2(SB), NOSPLIT, $8-88
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
	MOVQ delta+80(FP), BP
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
	IMULQ R13, R15
	LEAQ (BP)(R15*8), R15           // delta[r·P …]
	XORQ CX, CX                     // j
terms:
	MOVQ DX, AX
	ADDQ (R15)(CX*8), AX            // off_j
	LEAQ (R10)(AX*4), AX
	VPBROADCASTD (R8)(CX*4), Y1     // q_j
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
