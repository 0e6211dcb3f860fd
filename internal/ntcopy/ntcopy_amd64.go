package ntcopy

import "golang.org/x/sys/cpu"

// haveNT: copyNT32 needs AVX2 (VMOVDQU/VMOVNTDQ on 32-byte registers, which
// the OS must also save: cpu.X86.HasAVX2 checks both).
var haveNT = cpu.X86.HasAVX2

// copyNT32 copies n bytes from src to dst with 32-byte unaligned loads and
// 32-byte non-temporal stores, then SFENCE.
//
// Invariants (the caller, Copy, guarantees them): n > 0 is a multiple of 32;
// dst is 32-byte aligned; [dst, dst+n) and [src, src+n) are valid, do not
// overlap, and stay so during the call (dst and src are pinned by the
// caller's slices: the routine does not grow the stack or call into the
// runtime, so the GC cannot move a stack slice under it); the bytes hold no
// Go pointers (the GC needs no write barrier, which a routine in assembly
// does not have). The race detector does not see assembly: Copy reports the
// ranges to it itself (raceRange).
//
// ORDER(nt-copy): the non-temporal stores are weakly ordered, and a later
// ordinary or locked store (the seq-cst Store64 of a slot's even seq that
// publishes the frame) could otherwise become visible before them. The
// SFENCE at the end orders every one of them before any store after the
// call: a reader that sees the even seq sees the bytes.
//
//go:noescape
func copyNT32(dst, src *byte, n uintptr)
