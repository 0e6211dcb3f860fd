#include "textflag.h"

// func copyNT32(dst, src *byte, n uintptr)
// See ntcopy_amd64.go for the invariants. 128 bytes per iteration (four
// 32-byte registers), then 32 at a time; SFENCE; VZEROUPPER (leaving the
// upper halves dirty would slow later SSE code).
TEXT ·copyNT32(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

loop128:
	CMPQ CX, $128
	JB   loop32
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VMOVNTDQ Y0, 0(DI)
	VMOVNTDQ Y1, 32(DI)
	VMOVNTDQ Y2, 64(DI)
	VMOVNTDQ Y3, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $128, CX
	JMP  loop128

loop32:
	TESTQ CX, CX
	JZ    done
	VMOVDQU 0(SI), Y0
	VMOVNTDQ Y0, 0(DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $32, CX
	JMP  loop32

done:
	// ORDER(nt-copy): see copyNT32's doc comment.
	SFENCE
	VZEROUPPER
	RET
