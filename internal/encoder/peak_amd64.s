//go:build amd64 && !purego

#include "textflag.h"

// func fmaPeak(n int)
// n iterations of 14 independent 8-lane FMAs (enough chains to cover the
// FMA latency on every current x86 core): the machine's peak
// multiply-add rate, the roofline the pruning kernel is measured against.
TEXT ·fmaPeak(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15
loop:
	VFMADD231PS Y14, Y15, Y0
	VFMADD231PS Y14, Y15, Y1
	VFMADD231PS Y14, Y15, Y2
	VFMADD231PS Y14, Y15, Y3
	VFMADD231PS Y14, Y15, Y4
	VFMADD231PS Y14, Y15, Y5
	VFMADD231PS Y14, Y15, Y6
	VFMADD231PS Y14, Y15, Y7
	VFMADD231PS Y14, Y15, Y8
	VFMADD231PS Y14, Y15, Y9
	VFMADD231PS Y14, Y15, Y10
	VFMADD231PS Y14, Y15, Y11
	VFMADD231PS Y14, Y15, Y12
	VFMADD231PS Y14, Y15, Y13
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

// func pmaddPeak(n int)
// n iterations of 7 independent VPMADDWD + VPADDD pairs (the projection
// kernels' int16 multiply-add, accumulated in int32): the machine's peak
// int16 multiply-add rate (16 products per VPMADDWD).
TEXT ·pmaddPeak(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4
	VPXOR Y5, Y5, Y5
	VPXOR Y6, Y6, Y6
	VPXOR Y14, Y14, Y14
	VPXOR Y15, Y15, Y15
loop2:
	VPMADDWD Y14, Y15, Y7
	VPADDD Y7, Y0, Y0
	VPMADDWD Y14, Y15, Y8
	VPADDD Y8, Y1, Y1
	VPMADDWD Y14, Y15, Y9
	VPADDD Y9, Y2, Y2
	VPMADDWD Y14, Y15, Y10
	VPADDD Y10, Y3, Y3
	VPMADDWD Y14, Y15, Y11
	VPADDD Y11, Y4, Y4
	VPMADDWD Y14, Y15, Y12
	VPADDD Y12, Y5, Y5
	VPMADDWD Y14, Y15, Y13
	VPADDD Y13, Y6, Y6
	DECQ CX
	JNZ loop2
	VZEROUPPER
	RET
