"""Segment headers and the world segment's tables (docs/LAYOUT.md), decoded and validated from a mapping."""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Optional

from .errors import CorruptSegment, NotReady

__all__ = ["Header", "World", "Component", "Singleton", "Field", "open_segment", "fnv1a64", "shm_dir",
           "fields_fingerprint", "FIELD_TYPES",
           "KIND_WORLD", "KIND_LEASES", "KIND_EVENTS", "KIND_MODULE", "LAYOUT_VERSION"]

MAGIC = b"FDPSEGMT"
LAYOUT_VERSION = 4
READY = 0x59444552
HEADER_SIZE = 4096
KIND_WORLD, KIND_LEASES, KIND_EVENTS, KIND_MODULE = 1, 2, 3, 4
KIND_NAMES = {KIND_WORLD: "world", KIND_LEASES: "leases", KIND_EVENTS: "events", KIND_MODULE: "module"}

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
M64 = (1 << 64) - 1


def fnv1a64(data: bytes, h: int = FNV_OFFSET) -> int:
    """FNV-1a 64 of data, continuing from state h."""
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & M64
    return h


def shm_dir() -> str:
    """The segment directory: ``$FDP_SHM_DIR`` or ``/dev/shm``."""
    return os.environ.get("FDP_SHM_DIR") or "/dev/shm"


def align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


@dataclass
class Header:
    """The common header (offset 0) of any segment."""
    version: int
    kind: int
    total: int
    schema_hash: int
    creator_pid: int
    creator_start: int
    instance: str
    sections: dict  # id -> (count, offset, size)


def decode_header(mem, size: int, want_kind: int, what: str) -> Header:
    """Validate the common header of a segment of ``size`` bytes (docs/LAYOUT.md "Common header")."""
    if size < HEADER_SIZE:
        raise CorruptSegment(f"{what}: {size} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic = bytes(mem[0:8])
    ready = struct.unpack_from("<I", mem, 60)[0]
    if ready != READY:
        if magic == bytes(8) or ready == 0:
            raise NotReady(f"{what}: not ready (ready word {ready:#x}): being created, or its creator died")
        raise CorruptSegment(f"{what}: ready word {ready:#x}, want {READY:#x}")
    if magic != MAGIC:
        raise CorruptSegment(f"{what}: magic {magic!r}, want {MAGIC!r}")
    version, kind, total, schema, pid, hsize, start = struct.unpack_from("<IIQQIIQ", mem, 8)
    if version != LAYOUT_VERSION:
        raise CorruptSegment(f"{what}: layout version {version}, this client reads version {LAYOUT_VERSION}")
    if kind != want_kind:
        raise CorruptSegment(f"{what}: kind {kind}, want {want_kind} ({KIND_NAMES.get(want_kind)})")
    if total != size:
        raise CorruptSegment(f"{what}: header says {total} bytes, the file has {size}")
    if hsize != HEADER_SIZE:
        raise CorruptSegment(f"{what}: header size {hsize}, want {HEADER_SIZE}")
    head = bytearray(mem[0:512])
    head[60:64] = bytes(4)
    head[96:104] = bytes(8)
    want = fnv1a64(bytes(head))
    got = struct.unpack_from("<Q", mem, 96)[0]
    if got != want:
        raise CorruptSegment(f"{what}: header checksum {got:#x}, computed {want:#x}")
    nsec = struct.unpack_from("<I", mem, 56)[0]
    if nsec > 16:
        raise CorruptSegment(f"{what}: {nsec} sections, at most 16")
    secs, spans = {}, []
    for i in range(nsec):
        sid, count, off, sz = struct.unpack_from("<IIQQ", mem, 128 + 24 * i)
        if sid in secs:
            raise CorruptSegment(f"{what}: section id {sid} twice")
        if off < HEADER_SIZE or off % 64 or off + sz > size:
            raise CorruptSegment(f"{what}: section {sid} at {off}+{sz} is not a 64-aligned range inside the segment")
        secs[sid] = (count, off, sz)
        spans.append((off, off + sz))
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        if a[1] > b[0]:
            raise CorruptSegment(f"{what}: sections overlap at {b[0]}")
    inst = bytes(mem[64:96]).split(b"\0", 1)[0].decode("ascii", "replace")
    return Header(version, kind, total, schema, pid, start, inst, secs)


# Scalar types of the field table (docs/LAYOUT.md "Field table"): name -> (struct code of one element, size).
# A complex element is two floats (real, imaginary) for struct; numpy reads it as a complex number.
SCALARS = {
    "u8": ("B", 1), "i8": ("b", 1), "u16": ("H", 2), "i16": ("h", 2), "u32": ("I", 4), "i32": ("i", 4),
    "u64": ("Q", 8), "i64": ("q", 8), "f32": ("f", 4), "f64": ("d", 8), "bool": ("?", 1),
    "c64": ("2f", 8), "c128": ("2d", 16),
}
#: Field type codes of the field table, in code order (1..15).
FIELD_TYPES = {1: "u8", 2: "i8", 3: "u16", 4: "i16", 5: "u32", 6: "i32", 7: "u64", 8: "i64", 9: "f32", 10: "f64",
               11: "bool", 12: "c64", 13: "c128", 14: "bytes", 15: "string"}
TYPE_CODES = {v: k for k, v in FIELD_TYPES.items()}
TYPE_ALIGN = {"c64": 4, "c128": 8}
SECTION_FIELDS = 9


def fields_fingerprint(size: int, align_: int, fields) -> int:
    """FNV-1a 64 of the canonical description of a value's fields (docs/LAYOUT.md "Field table", rule 5)."""
    d = struct.pack("<III", size, align_, len(fields))
    for f in fields:
        nb = f.name.encode()
        d += struct.pack("<BIII", TYPE_CODES[f.type], f.offset, f.count, len(nb)) + nb
    return fnv1a64(d)


@dataclass
class Field:
    """One scalar field of a component: dotted name, scalar type, byte offset in the value, element count."""
    name: str
    type: str
    offset: int
    count: int = 1


@dataclass
class Component:
    """A component of the world's schema (component table entry)."""
    id: int
    name: str
    size: int
    align: int
    fingerprint: int
    column: int
    max_len: int
    per_entity: int
    fields: list = field(default_factory=list)

    @property
    def variable(self) -> bool:
        """A variable-size (bytes or string) component: its column holds handles."""
        return self.max_len != 0

    def struct_format(self) -> Optional[str]:
        """A ``struct`` format of one value built from the field table, or None when it has no fields."""
        if not self.fields or self.variable:
            return None
        fmt, pos = "<", 0
        for f in sorted(self.fields, key=lambda f: f.offset):
            if f.type not in SCALARS:
                return None
            if f.offset > pos:
                fmt += f"{f.offset - pos}x"
            code, n = SCALARS[f.type]
            fmt += code * f.count if len(code) > 1 else (str(f.count) if f.count != 1 else "") + code
            pos = f.offset + n * f.count
        if self.size > pos:
            fmt += f"{self.size - pos}x"
        return fmt


@dataclass
class Singleton:
    """A singleton of the world's schema (singleton table entry)."""
    id: int
    name: str
    size: int
    align: int
    fingerprint: int
    value_offset: int
    flags: int
    fields: list = field(default_factory=list)


def _name(mem, off: int, what: str) -> str:
    raw = bytes(mem[off:off + 32])
    name, _, rest = raw.partition(b"\0")
    if not name or rest.strip(b"\0"):
        raise CorruptSegment(f"{what}: invalid name {raw!r}")
    return name.decode("utf-8", "strict")


class World:
    """The decoded, validated kind header and tables of a world segment (no frame data)."""

    def __init__(self, mem, size: int, what: str = "world segment"):
        self.mem = mem
        self.header = h = decode_header(mem, size, KIND_WORLD, what)
        (self.S, self.C, self.K, self.M, self.chunk_stride, self.slot_stride, self.chunk_header,
         self.records_off) = struct.unpack_from("<IIIIQQQQ", mem, 1024)
        W, self.NS, self.D = struct.unpack_from("<IIQ", mem, 1072)
        if W == 0 and self.C <= 64:
            W = 1
        bad = lambda m: CorruptSegment(f"{what}: {m}")  # noqa: E731
        if not 2 <= self.S <= 64 or self.C > 256 or self.NS > 64:
            raise bad(f"slots {self.S}, components {self.C}, singletons {self.NS} out of range")
        if not 16 <= self.K <= 65536 or self.K & (self.K - 1):
            raise bad(f"chunk capacity {self.K} is not a power of two in 16..65536")
        if W != max(1, -(-self.C // 64)):
            raise bad(f"mask words {W} for {self.C} components")
        self.W = W
        self.R = 8 + 8 * W
        self.components = []
        ct = 4096
        for k in range(self.C):
            e = ct + 64 * k
            name = _name(mem, e, f"{what}: component {k}")
            size_, al, fp, col, ml, per = struct.unpack_from("<IIQQII", mem, e + 32)
            self.components.append(Component(k, name, size_, al, fp, col, ml, per))
        st = 4096 + 64 * 64 * W
        self.singletons = []
        for i in range(self.NS):
            e = st + 64 * i
            name = _name(mem, e, f"{what}: singleton {i}")
            size_, al, fp, voff, flags = struct.unpack_from("<IIQII", mem, e + 32)
            self.singletons.append(Singleton(i, name, size_, al, fp, voff, flags))
        self._check_geometry(bad)
        self._read_fields(bad)
        self._check_schema_hash(bad)
        self.by_name = {c.name: c for c in self.components}
        self.singleton_by_name = {s.name: s for s in self.singletons}

    def _check_geometry(self, bad) -> None:
        C, K, R = self.C, self.K, self.R
        H = 64 + align(8 * C, 64)
        col = align(H + R * K, 64)
        for c in self.components:
            if c.align not in (1, 2, 4, 8) or not 1 <= c.size <= 4096 or c.size % c.align:
                raise bad(f"component {c.name}: size {c.size}, alignment {c.align}")
            if c.column != col:
                raise bad(f"component {c.name}: column at {c.column}, computed {col}")
            col = align(col + K * c.size + K * c.per_entity, 64)
        sv = 256 + 8 * self.NS
        for s in self.singletons:
            if s.value_offset != sv:
                raise bad(f"singleton {s.name}: value at {s.value_offset}, computed {sv}")
            sv = align(sv + s.size, 8)
        D = align(sv, 64) if self.NS else 256
        F = 4096 + 64 * 64 * self.W + 64 * self.NS
        sec = self.header.sections.get(SECTION_FIELDS)
        if sec is None:
            raise bad("no field table (section 9)")
        self.fields_count, foff, FT = sec
        if foff != F or FT % 64 or FT < 32 * self.fields_count:
            raise bad(f"field table at {foff} ({FT} bytes), computed at {F}")
        self.fields_off, self.fields_size = F, FT
        slots_off = align(F + FT, 4096)
        stride = align(D + self.M * col, 4096)
        want = {"chunk header": (self.chunk_header, H), "records": (self.records_off, H),
                "chunk stride": (self.chunk_stride, col), "chunks offset": (self.D, D),
                "slot stride": (self.slot_stride, stride),
                "total size": (self.header.total, slots_off + self.S * stride)}
        for what_, (got, exp) in want.items():
            if got != exp:
                raise bad(f"{what_} {got}, computed {exp}")
        self.slots_off = slots_off

    def _read_fields(self, bad) -> None:
        """Decode the field table, check its rules and every owner's fingerprint (docs/LAYOUT.md "Field table")."""
        mem, F, N = self.mem, self.fields_off, self.fields_count
        owners = [(1, c) for c in self.components] + [(2, s) for s in self.singletons]
        pool = F + 32 * N
        at, o = pool, 0
        for i in range(N):
            kind, typ, oid, off, count, noff, nlen = struct.unpack_from("<BBHIIII", mem, F + 32 * i)
            if bytes(mem[F + 32 * i + 20:F + 32 * i + 32]) != bytes(12):
                raise bad(f"field {i}: reserved bytes not zero")
            if F + noff != at or nlen > 255 or at + nlen > F + self.fields_size:
                raise bad(f"field {i}: name at {noff}+{nlen}, want {at - F}")
            name = bytes(mem[at:at + nlen]).decode("utf-8")
            at += nlen
            while o < len(owners) and (owners[o][0], owners[o][1].id) != (kind, oid):
                if not owners[o][1].fields:
                    raise bad(f"{owners[o][1].name}: no field")
                o += 1
            if o == len(owners) or typ not in FIELD_TYPES:
                raise bad(f"field {i} ({name!r}): owner {kind}/{oid} or type {typ} out of order or unknown")
            owners[o][1].fields.append(Field(name, FIELD_TYPES[typ], off, count))
        if bytes(mem[at:F + self.fields_size]).strip(b"\0"):
            raise bad("bytes after the field table's name pool are not zero")
        for _, ow in owners:
            if not ow.fields:
                raise bad(f"{ow.name}: no field")
            size = ow.size
            for a, b in zip(ow.fields, ow.fields[1:]):
                if a.type in SCALARS and b.offset < a.offset + SCALARS[a.type][1] * a.count:
                    raise bad(f"{ow.name}: fields {a.name!r} and {b.name!r} overlap or are out of order")
            for f in ow.fields:
                if f.type in SCALARS:
                    n = SCALARS[f.type][1]
                    if f.count < 1 or f.offset + n * f.count > size or f.offset % TYPE_ALIGN.get(f.type, n):
                        raise bad(f"{ow.name}.{f.name}: {f.type}[{f.count}] at {f.offset} in a value of {size} bytes")
                elif len(ow.fields) != 1 or f.name or f.offset or f.count:
                    raise bad(f"{ow.name}: a {f.type} field must be the value's only one, unnamed, at 0")
            if fields_fingerprint(size, ow.align, ow.fields) != ow.fingerprint:
                raise bad(f"{ow.name}: fingerprint {ow.fingerprint:#x}, the field table's description gives "
                          f"{fields_fingerprint(size, ow.align, ow.fields):#x}")

    def _check_schema_hash(self, bad) -> None:
        h = FNV_OFFSET
        for c in self.components:
            n = c.name.encode()
            h = fnv1a64(n + struct.pack("<IIQI", c.size, c.align, c.fingerprint, len(n)), h)
            if c.variable:
                h = fnv1a64(struct.pack("<II", c.max_len, c.per_entity), h)
        if self.NS:
            h = fnv1a64(b"singletons", h)
            for s in self.singletons:
                n = s.name.encode()
                h = fnv1a64(n + struct.pack("<IIQII", s.size, s.align, s.fingerprint, len(n), s.flags), h)
        if h != self.header.schema_hash:
            raise bad(f"schema hash {self.header.schema_hash:#x} in the header, {h:#x} computed from its tables")

    def slot_offset(self, s: int) -> int:
        """Offset of slot s in the segment."""
        return self.slots_off + s * self.slot_stride


def open_segment(path: str, writable: bool = False):
    """Map a segment file by path (read-only unless writable); returns (mmap, size)."""
    fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return map_fd(fd, writable)
    finally:
        os.close(fd)


def map_fd(fd: int, writable: bool):
    """Map a whole segment from a descriptor (read-only with PROT_READ unless writable); returns (mmap, size)."""
    size = os.fstat(fd).st_size
    if size == 0:
        raise NotReady("segment is empty (being created)")
    # ACCESS_READ: PROT_READ, and every memoryview of it is read-only (a write raises TypeError, no fault).
    return mmap.mmap(fd, size, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ), size
