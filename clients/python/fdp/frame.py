"""Frames: a slot of the world segment read in place (zero-copy), its entities, columns and singletons.

A :class:`Frame` is valid from the moment it is pinned (or leased) until :meth:`Frame.release`; release tells
whether the slot was rewritten meanwhile (:class:`~fdp.errors.TornFrame`), in which case anything computed from
it must be discarded.  Views returned by a frame (memoryviews, numpy arrays) alias the shared mapping: copy what
must outlive the frame.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from typing import Iterator, Optional, Sequence

from . import _atomic
from .errors import CorruptSegment, NoFrame, TornFrame
from .segment import SCALARS, Component, World

try:  # numpy is optional: used when the distribution's package is installed
    import numpy as _np
except ImportError:  # pragma: no cover - exercised by the tests' FDP_NO_NUMPY runs
    _np = None
import os as _os
if _os.environ.get("FDP_NO_NUMPY") == "1":
    _np = None

__all__ = ["Frame", "FrameReader", "HAVE_NUMPY", "entity_index", "entity_gen"]

HAVE_NUMPY = _np is not None
ALIVE = 1


def entity_index(e: int) -> int:
    """The index of an entity handle (``generation << 32 | index``)."""
    return e & 0xFFFFFFFF


def entity_gen(e: int) -> int:
    """The generation of an entity handle."""
    return e >> 32


def _ident(name: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in name)
    return out if out and not out[0].isdigit() else "f_" + out


class _Codec:
    """How one component's values are decoded: a struct format and a namedtuple of its fields."""

    def __init__(self, comp: Component):
        self.comp = comp
        self.string = comp.variable and bool(comp.fields) and comp.fields[0].type == "string"
        self.fmt = comp.struct_format()
        self.st = struct.Struct(self.fmt) if self.fmt else None
        self.tuple = None
        if self.st is not None:
            names = []
            for f in sorted(comp.fields, key=lambda f: f.offset):
                base = [f.name or "value"] if f.count == 1 else [f"{f.name}_{i}" for i in range(f.count)]
                if f.type in ("c64", "c128"):
                    base = [f"{b}_{part}" for b in base for part in ("re", "im")]
                names.extend(_ident(b) for b in base)
            self.tuple = namedtuple(_ident(comp.name), names, rename=True)
        self.dtype = None
        if _np is not None and comp.fields and not comp.variable:
            def one(t):
                return _np.dtype({"c64": "<c8", "c128": "<c16"}.get(t) or "<" + SCALARS[t][0])
            self.dtype = _np.dtype({
                "names": [f.name or "value" for f in comp.fields],
                "formats": [one(f.type) if f.count == 1 else (one(f.type), (f.count,)) for f in comp.fields],
                "offsets": [f.offset for f in comp.fields], "itemsize": comp.size})

    def decode(self, mem, off: int):
        if self.st is None:
            return bytes(mem[off:off + self.comp.size])
        return self.tuple._make(self.st.unpack_from(mem, off))

    def encode(self, value) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if self.st is None:
            raise TypeError(f"component {self.comp.name} has no field table: pass its {self.comp.size} bytes")
        if isinstance(value, dict):
            value = self.tuple(**value)
        return self.st.pack(*value)


class FrameReader:
    """Reads frames of one world segment: pins the latest through a pin word, or opens a leased slot.

    ``pin_words``/``pin_off`` name the reader's pin word (a module's reader line, module segment offset 2432);
    ``stats_off`` the three counters after it (successful pins, pin attempts that found the slot rewritten,
    Unix ns of the last pin).  A reader without a pin word reads unpinned (the plain seqlock rule).
    """

    def __init__(self, world: World, pin_mem=None, pin_off: int = 0):
        self.world = world
        self.mem = memoryview(world.mem)
        self.q = self.mem.cast("Q")
        self.pin_mem = pin_mem
        self.pin_q = memoryview(pin_mem).cast("Q") if pin_mem is not None else None
        self.pin_i = pin_off >> 3
        self.codecs = {c.name: _Codec(c) for c in world.components}
        self.singleton_codecs = {s.name: _Codec(Component(s.id, s.name, s.size, s.align, s.fingerprint, 0, 0, 0,
                                                          s.fields)) for s in world.singletons}
        self.rec_dtype = None
        if _np is not None:  # an entity record: u32 generation, u32 flags, W mask words
            self.rec_dtype = _np.dtype({"names": ["gen", "flags", "mask"],
                                        "formats": ["<u4", "<u4", ("<u8", (world.W,))],
                                        "offsets": [0, 4, 8], "itemsize": world.R})
        self.pins = self.pin_retries = 0

    def close(self) -> None:
        """Release the views of the mapping (the mapping can then be closed)."""
        for v in (self.q, self.mem, self.pin_q):
            if v is not None:
                v.release()
        self.pin_q = None

    def _slot_seq(self, s: int) -> int:
        return self.q[self.world.slot_offset(s) >> 3]

    def _pin(self, v: int) -> None:
        if self.pin_q is not None:
            self.pin_q[self.pin_i] = v
            _atomic.fence()  # seq-cst store: ordered before the next load of the slot's seq

    def pin_latest(self, attempts: int = 10000) -> "Frame":
        """Pin the latest frame (a fast module's tick, or a reader with a pin word)."""
        w = self.world
        for _ in range(attempts):
            lw = self.q[2048 >> 3]
            if lw & 0xFF == 0:
                raise NoFrame("nothing published yet")
            s = (lw & 0xFF) - 1
            if s >= w.S:
                raise CorruptSegment(f"latest word names slot {s}, the world has {w.S}")
            q = self._slot_seq(s)
            if q & 1:
                continue
            self._pin(q << 8 | (s + 1))
            if self._slot_seq(s) != q:
                self._pin(0)
                self.pin_retries += 1
                continue
            if self.q[(w.slot_offset(s) >> 3) + 1] != lw >> 8:
                self._pin(0)
                continue
            self.pins += 1
            if self.pin_q is not None:
                self.pin_q[self.pin_i + 1] += 1
            return Frame(self, s, q, pinned=self.pin_q is not None, latest=lw)
        raise NoFrame(f"no stable latest frame after {attempts} attempts")

    def open_leased(self, s: int, frame: int) -> "Frame":
        """Open slot s, leased to this module with frame (a slow module's tick): no pin is needed."""
        if not 0 <= s < self.world.S:
            raise NoFrame(f"tick leases slot {s}, the world has {self.world.S}")
        q = self._slot_seq(s)
        if q & 1:
            raise NoFrame(f"leased slot {s} is being written (seq {q}): the lease is not this tick's")
        f = Frame(self, s, q, pinned=False, latest=0)
        if f.number != frame:
            raise NoFrame(f"leased slot {s} holds frame {f.number}, the tick is frame {frame}")
        return f


class Frame:
    """One frame: slot header fields, entity queries, typed and zero-copy component access."""

    def __init__(self, reader: FrameReader, s: int, q: int, pinned: bool, latest: int):
        self._r = reader
        w = reader.world
        self.world = w
        self.slot = s
        self._q = q
        self._pinned = pinned
        self._latest = latest
        self.base = base = w.slot_offset(s)
        mem = reader.mem
        (_, self.number, self.version, m0, self.chunk_count, self.entity_count,
         self.alive) = struct.unpack_from("<QQQQIII", mem, base)
        m1, m2, m3 = struct.unpack_from("<QQQ", mem, base + 72)
        self.mask = m0 | m1 << 64 | m2 << 128 | m3 << 192
        self._released = False
        if self.chunk_count > w.M or self.entity_count > self.chunk_count * w.K or self.alive > self.entity_count \
                or self.mask >> w.C or self.chunk_count != -(-self.entity_count // w.K):
            self._abandon()
            raise TornFrame(f"slot {s} header out of bounds (chunks {self.chunk_count}, entities "
                            f"{self.entity_count}, alive {self.alive}): rewritten while read")

    # -- validity ---------------------------------------------------------------------------------------------
    def _abandon(self) -> None:
        if self._pinned:
            self._r._pin(0)
        self._released = True

    def valid(self) -> bool:
        """Whether everything read so far is of this frame (the slot's seq is unchanged)."""
        _atomic.fence()  # acquire: every load of the frame's bytes happens before the re-check
        r = self._r
        off = self.base >> 3
        seq = r.q[off]
        while seq == self._q + 1 and self._pinned:  # an aborted claim of a pinned slot: the engine restores it
            seq = r.q[off]
        return seq == self._q

    def release(self) -> None:
        """End the read: unpin, and raise :class:`TornFrame` if the slot was rewritten meanwhile."""
        if self._released:
            return
        ok = self.valid()
        self._abandon()
        if not ok:
            if self._r.pin_q is not None:
                self._r.pin_q[self._r.pin_i + 2] += 1
            raise TornFrame(f"slot {self.slot} (frame {self.number}) was rewritten while it was read")

    def __enter__(self) -> "Frame":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.release()
        else:
            self._abandon()

    # -- schema -----------------------------------------------------------------------------------------------
    def component(self, name: str) -> Component:
        """The component called name (KeyError with the names there are otherwise)."""
        c = self.world.by_name.get(name)
        if c is None:
            raise KeyError(f"no component {name!r} in this world (it has {', '.join(self.world.by_name)})")
        return c

    def readable(self, name: str) -> bool:
        """Whether this frame holds the component (its bit in the slot mask)."""
        return self.mask >> self.component(name).id & 1 == 1

    def _ids(self, names: Sequence[str]) -> int:
        m = 0
        for n in names:
            m |= 1 << self.component(n).id
        return m

    def chunk_offset(self, c: int) -> int:
        """Offset of chunk c of this frame in the segment."""
        return self.base + self.world.D + c * self.world.chunk_stride

    def rows(self, c: int) -> int:
        """Rows in use in chunk c (from the frame's high-water mark, not from bytes another process wrote)."""
        return min(self.world.K, self.entity_count - c * self.world.K)

    # -- entities ---------------------------------------------------------------------------------------------
    def _record_masks(self, c: int):
        """(generation, flags, mask) per row of chunk c, pure Python."""
        w, mem = self.world, self._r.mem
        start = self.chunk_offset(c) + w.records_off
        n = self.rows(c)
        if w.W == 1:
            return struct.iter_unpack("<IIQ", mem[start:start + 16 * n])
        return ((g, f, sum(m << 64 * j for j, m in enumerate(ms)))
                for g, f, *ms in struct.iter_unpack("<II" + "Q" * w.W, mem[start:start + w.R * n]))

    def query(self, with_: Sequence[str] = (), without: Sequence[str] = ()) -> Iterator[int]:
        """Entity handles of the alive entities that have every component of ``with_`` and none of ``without``.

        Matches nothing when the frame does not hold a component of ``with_`` (a filtered snapshot).
        """
        want, avoid = self._ids(with_), self._ids(without)
        if want & self.mask != want:
            return
        K = self.world.K
        for c in range(self.chunk_count):
            for r, (g, f, m) in enumerate(self._record_masks(c)):
                if f & ALIVE and m & want == want and not m & avoid:
                    yield g << 32 | (c * K + r)

    def alive_entity(self, e: int) -> bool:
        """Whether the handle e names an alive entity of this frame."""
        i = entity_index(e)
        if i >= self.entity_count:
            return False
        g, f = struct.unpack_from("<II", self._r.mem, self._record_off(i))
        return f & ALIVE == 1 and g == entity_gen(e)

    def _record_off(self, i: int) -> int:
        w = self.world
        return self.chunk_offset(i // w.K) + w.records_off + (i % w.K) * w.R

    def has(self, e: int, name: str) -> bool:
        """Whether alive entity e has the component in this frame."""
        k = self.component(name).id
        if not self.mask >> k & 1 or not self.alive_entity(e):
            return False
        m = struct.unpack_from("<Q", self._r.mem, self._record_off(entity_index(e)) + 8 + 8 * (k // 64))[0]
        return m >> (k % 64) & 1 == 1

    # -- values -----------------------------------------------------------------------------------------------
    def raw(self, e: int, name: str) -> Optional[memoryview]:
        """The bytes of e's value (zero-copy), or None when e lacks it in this frame."""
        if not self.has(e, name):
            return None
        comp, w, mem = self.component(name), self.world, self._r.mem
        i = entity_index(e)
        chunk = self.chunk_offset(i // w.K)
        if not comp.variable:
            off = chunk + comp.column + (i % w.K) * comp.size
            return mem[off:off + comp.size]
        off, n = struct.unpack_from("<II", mem, chunk + comp.column + 8 * (i % w.K))
        if n > comp.max_len or off + n > w.K * comp.per_entity:
            return None  # not a value of this frame (torn): the release reports it
        arena = chunk + comp.column + 8 * w.K
        return mem[arena + off:arena + off + n]

    def get(self, e: int, name: str):
        """e's value of the component: a named tuple of its fields (bytes, or str for a string component, for
        a variable-size one), or None when e lacks it in this frame."""
        raw = self.raw(e, name)
        if raw is None:
            return None
        codec = self._r.codecs[name]
        if codec.comp.variable:
            b = bytes(raw)
            return b.decode("utf-8", "replace") if codec.string else b
        return codec.decode(raw, 0)

    def values(self, name: str) -> Iterator[tuple]:
        """(entity, value) of every alive entity with the component, pure Python (decoded with the field table)."""
        comp = self.component(name)
        if not self.mask >> comp.id & 1:
            return
        codec, w, mem = self._r.codecs[name], self.world, self._r.mem
        bit, word = 1 << (comp.id % 64), comp.id // 64
        make = codec.tuple._make if codec.tuple is not None else bytes
        for c in range(self.chunk_count):
            col, base = self.chunk_offset(c) + comp.column, c * w.K
            rows = mem[col:col + self.rows(c) * comp.size]
            vals = codec.st.iter_unpack(rows) if codec.st is not None else \
                (rows[i:i + comp.size] for i in range(0, len(rows), comp.size))
            for r, ((g, f, m), v) in enumerate(zip(self._record_masks(c), vals)):
                if f & ALIVE and (m >> (64 * word)) & bit:
                    yield g << 32 | (base + r), make(v)

    def column_chunks(self, name: str):
        """Per chunk in use: (present, values), zero-copy views on the mapping.

        With numpy: ``present`` is a bool array (alive and has the component) and ``values`` a structured array
        (fields from the field table; raw bytes ``V<size>`` without one).  Without numpy: ``values`` is a
        memoryview of the column's rows and ``present`` a list of bools.
        """
        comp = self.component(name)
        if comp.variable:
            raise TypeError(f"{name} is variable-size: read its values with get() or raw()")
        if not self.mask >> comp.id & 1:
            return []
        w, mem = self.world, self._r.mem
        out = []
        word, bit = comp.id // 64, comp.id % 64
        if _np is not None:
            dt = self._r.codecs[name].dtype or _np.dtype(f"V{comp.size}")
            rec = self._r.rec_dtype
            for c in range(self.chunk_count):
                n, chunk = self.rows(c), self.chunk_offset(c)
                recs = _np.frombuffer(mem, rec, n, chunk + w.records_off)
                present = ((recs["flags"] & 1) != 0) & ((recs["mask"][:, word] >> _np.uint64(bit)) & _np.uint64(1) != 0)
                out.append((present, _np.frombuffer(mem, dt, n, chunk + comp.column)))
            return out
        for c in range(self.chunk_count):
            n, chunk = self.rows(c), self.chunk_offset(c)
            present = [bool(f & ALIVE and (m >> (64 * word)) >> bit & 1) for _, f, m in self._record_masks(c)]
            out.append((present, mem[chunk + comp.column:chunk + comp.column + n * comp.size]))
        return out

    def column(self, name: str):
        """numpy only: (present, values), two zero-copy arrays of shape (chunks in use, K) over the whole frame.

        ``values`` is a structured array of the component's fields (``values["X"]``), strided across the
        chunk blocks of the mapping; ``present`` is a bool array: the row is an alive entity with the component.
        Entity index ``c * K + r`` is row ``[c, r]``, so ``values["X"][present]`` lists the values in entity
        order.  Rows of the last chunk beyond the high-water mark are never present.
        """
        if _np is None:
            raise TypeError("column() needs numpy (python3-numpy): use values() or column_chunks() without it")
        comp = self.component(name)
        if comp.variable:
            raise TypeError(f"{name} is variable-size: read its values with get() or raw()")
        w, codec = self.world, self._r.codecs[name]
        n = self.chunk_count if self.mask >> comp.id & 1 else 0
        first = self.chunk_offset(0)
        recs = _np.ndarray((n, w.K), self._r.rec_dtype, self._r.mem, first + w.records_off, (w.chunk_stride, w.R))
        values = _np.ndarray((n, w.K), codec.dtype or _np.dtype(f"V{comp.size}"), self._r.mem, first + comp.column,
                             (w.chunk_stride, comp.size))
        word, bit = comp.id // 64, _np.uint64(1 << (comp.id % 64))
        present = ((recs["flags"] & 1) != 0) & ((recs["mask"][..., word] & bit) != 0)
        return present, values

    def changed(self, c: int, name: str, since_version: int) -> bool:
        """Whether chunk c's column of the component changed after world version since_version."""
        k = self.component(name).id
        return struct.unpack_from("<Q", self._r.mem, self.chunk_offset(c) + 64 + 8 * k)[0] > since_version

    def singleton(self, name: str):
        """The singleton's value (a named tuple of its fields), or None if it was never set."""
        w = self.world
        s = w.singleton_by_name.get(name)
        if s is None:
            raise KeyError(f"no singleton {name!r} in this world (it has {', '.join(w.singleton_by_name)})")
        raw = self.singleton_raw(name)
        return None if raw is None else self._r.singleton_codecs[name].decode(raw, 0)

    def singleton_raw(self, name: str) -> Optional[memoryview]:
        """The singleton's bytes in this frame (zero-copy), or None if it was never set."""
        s = self.world.singleton_by_name.get(name)
        if s is None:
            raise KeyError(f"no singleton {name!r} in this world (it has {', '.join(self.world.singleton_by_name)})")
        mem = self._r.mem
        if struct.unpack_from("<Q", mem, self.base + 256 + 8 * s.id)[0] == 0:
            return None
        off = self.base + s.value_offset
        return mem[off:off + s.size]
