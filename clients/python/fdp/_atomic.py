"""Memory ordering for words shared with the engine.

CPython reads and writes an aligned 4- or 8-byte word of a memoryview with one
machine load or store (``memcpy`` of a constant size), so a single load or
store is atomic on x86-64 and arm64.  What it cannot give is ordering: the
protocol needs a *sequentially consistent* store of a pin followed by a load
of the slot's seq (docs/LAYOUT.md, "Reading a frame"), an acquire fence
before the seqlock re-check, and atomic exchange / compare-and-swap on the
doorbells' need-wake words.  The standard library has no fence, so this module
maps a few bytes of machine code (a full fence, exchange and compare-and-swap)
into an executable page and calls them with :mod:`ctypes`.

Where no executable page can be had, :func:`fence` falls back to the
``membarrier(2)`` system call, and the read-modify-write helpers to fenced
load/store pairs (correct for the few places they are used, where the engine
either writes the same word only after a change the module then re-reads, or
the outcome only tunes a warm spin).
"""

from __future__ import annotations

import ctypes
import mmap
import platform

__all__ = ["fence", "xchg32", "cas32", "address_of", "futex_wait", "futex_wake", "HAVE_STUBS"]

_MACHINE = platform.machine()

# x86-64 System V: rdi, rsi, rdx; result in rax.
_X86 = {
    "fence": bytes.fromhex("0faef0c3"),                 # mfence; ret
    "xchg32": bytes.fromhex("873789f0c3"),              # xchg [rdi],esi; mov eax,esi; ret
    "cas32": bytes.fromhex("89f0f00fb117c3"),           # mov eax,esi; lock cmpxchg [rdi],edx; ret
}
# arm64 (AAPCS64): x0, x1, x2; result in x0.  Each is a list of 32-bit words.
_ARM = {
    "fence": [0xD5033BBF, 0xD65F03C0],                  # dmb ish; ret
    # 1: ldaxr w2,[x0]; stlxr w3,w1,[x0]; cbnz w3,1b; dmb ish; mov w0,w2; ret
    "xchg32": [0x885FFC02, 0x8803FC01, 0x35FFFFC3, 0xD5033BBF, 0x2A0203E0, 0xD65F03C0],
    # 1: ldaxr w3,[x0]; cmp w3,w1; b.ne 2f; stlxr w4,w2,[x0]; cbnz w4,1b; 2: dmb ish; mov w0,w3; ret
    "cas32": [0x885FFC03, 0x6B01007F, 0x54000061, 0x8804FC02, 0x35FFFF84,
              0xD5033BBF, 0x2A0303E0, 0xD65F03C0],
}


def _stubs():
    if _MACHINE in ("x86_64", "AMD64"):
        code = _X86
    elif _MACHINE in ("aarch64", "arm64"):
        code = {k: b"".join(w.to_bytes(4, "little") for w in v) for k, v in _ARM.items()}
    else:
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return None
    base = ctypes.addressof(ctypes.c_char.from_buffer(page))
    funcs, off = {}, 0
    for name, body in code.items():
        page[off:off + len(body)] = body
        funcs[name] = base + off
        off += 64
    # The page stays mapped for the life of the process (kept in _KEEP).
    f_fence = ctypes.CFUNCTYPE(None)(funcs["fence"])
    f_xchg = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32)(funcs["xchg32"])
    f_cas = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32)(funcs["cas32"])
    return page, f_fence, f_xchg, f_cas


_KEEP = _stubs()
HAVE_STUBS = _KEEP is not None
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_SYS = {"x86_64": {"futex": 202, "membarrier": 324}, "aarch64": {"futex": 98, "membarrier": 283}}
_NR = _SYS.get("aarch64" if _MACHINE in ("aarch64", "arm64") else "x86_64")

if HAVE_STUBS:
    _fence = _KEEP[1]

    def fence() -> None:
        """A full (sequentially consistent) memory fence."""
        _fence()
else:  # pragma: no cover - only where executable pages are forbidden
    def fence() -> None:
        """A full memory fence (membarrier(2), MEMBARRIER_CMD_GLOBAL)."""
        _libc.syscall(_NR["membarrier"], 1, 0)


def address_of(buf, offset: int) -> int:
    """The address of byte ``offset`` of a writable buffer (a module segment's mapping)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf, offset))


def xchg32(buf, words, offset: int, value: int) -> int:
    """Atomically exchange the u32 at ``offset`` of ``buf`` (writable) with value; returns the old value."""
    if HAVE_STUBS:
        return _KEEP[2](address_of(buf, offset), value)
    fence()
    old = words[offset >> 2]
    words[offset >> 2] = value
    fence()
    return old


def cas32(buf, words, offset: int, old: int, new: int) -> int:
    """Compare-and-swap the u32 at ``offset``: returns the value found (== old: swapped)."""
    if HAVE_STUBS:
        return _KEEP[3](address_of(buf, offset), old, new)
    fence()
    cur = words[offset >> 2]
    if cur == old:
        words[offset >> 2] = new
    fence()
    return cur


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def futex_wait(addr: int, expected: int, timeout: float) -> None:
    """FUTEX_WAIT (shared) on the u32 at addr while it holds expected, at most timeout seconds."""
    ts = _Timespec(int(timeout), int((timeout % 1) * 1e9))
    _libc.syscall(_NR["futex"], ctypes.c_void_p(addr), 0, ctypes.c_uint32(expected), ctypes.byref(ts), None, 0)


def futex_wake(addr: int, n: int = 1) -> None:
    """FUTEX_WAKE (shared) of up to n waiters on the u32 at addr."""
    _libc.syscall(_NR["futex"], ctypes.c_void_p(addr), 1, n, None, None, 0)

