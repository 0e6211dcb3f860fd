"""Commands: records appended to the module's command ring, committed with one store of the tail per tick
(docs/LAYOUT.md "Command ring", "Command payloads")."""

from __future__ import annotations

import struct
from typing import Optional

from . import _atomic
from .errors import CommandsFull, CorruptSegment

__all__ = ["Commands", "Ring", "TEMP_BIT", "MAX_EVENT_PAYLOAD"]

RING_MAGIC = 0x474E4952
CMD_CREATE, CMD_DESTROY, CMD_ADD, CMD_SET, CMD_REMOVE, CMD_EVENT, CMD_SET_SINGLETON = 1, 2, 3, 4, 5, 6, 7
CMD_ACK_EVENTS = 0xFF01
TEMP_BIT = 1 << 63
MAX_EVENT_PAYLOAD = 4096
RESERVED_EVENT_FIRST = 0xFF00


class Ring:
    """The producer side of a command ring at ``off`` in the module segment (the module is the only producer)."""

    def __init__(self, mem, off: int):
        self.mem = memoryview(mem)
        self.q = self.mem.cast("Q")
        self.off = off
        self.capacity, magic = struct.unpack_from("<QI", mem, off)
        if magic != RING_MAGIC or self.capacity < 4096 or self.capacity & (self.capacity - 1) \
                or off + 640 + self.capacity > len(self.mem):
            raise CorruptSegment(f"command ring: magic {magic:#x}, capacity {self.capacity}")
        self.data = off + 640
        self.committed = self.tail = self.q[(off + 128) >> 3]
        self.head = self.q[(off + 256) >> 3]
        self.records = self.batches = self.pending = self.full = 0

    def close(self) -> None:
        self.q.release()
        self.mem.release()

    def append(self, typ: int, payload: bytes) -> bool:
        """Write one record beyond the tail (not visible before commit); False when the ring is full."""
        n = len(payload)
        rl = (n + 8 + 7) & ~7
        if rl > self.capacity // 2:
            raise ValueError(f"a record of {n} bytes is larger than half the ring ({self.capacity // 2})")
        off = self.tail & (self.capacity - 1)
        room = self.capacity - off
        need = rl + (room if room < rl else 0)
        if self.tail + need - self.head > self.capacity:
            self.head = self.q[(self.off + 256) >> 3]
            if self.tail + need - self.head > self.capacity:
                self.full += 1
                self.q[(self.off + 400) >> 3] = self.full
                return False
        if room < rl:
            struct.pack_into("<IHH", self.mem, self.data + off, room, 0, 0)  # PAD to the end of the data area
            self.tail += room
            off = 0
        struct.pack_into("<IHH", self.mem, self.data + off, rl, typ, rl - 8 - n)
        self.mem[self.data + off + 8:self.data + off + 8 + n] = payload
        self.tail += rl
        self.pending += 1
        return True

    def commit(self) -> None:
        """Publish every record written since the last commit with one (release) store of the tail."""
        if not self.pending:
            return
        _atomic.fence()  # release: the records before the tail that publishes them
        self.q[(self.off + 128) >> 3] = self.tail
        self.committed = self.tail
        self.records += self.pending
        self.batches += 1
        self.pending = 0
        self.q[(self.off + 384) >> 3] = self.records
        self.q[(self.off + 392) >> 3] = self.batches

    def abort(self) -> None:
        """Drop the records written since the last commit."""
        self.tail, self.pending = self.committed, 0

    def drained(self) -> bool:
        """Whether the engine has read everything committed."""
        return self.q[(self.off + 256) >> 3] == self.q[(self.off + 128) >> 3]


class Commands:
    """A tick's commands.  Entities created in a tick are referred to by their temporary handle (bit 63 set)
    in the same tick; everything is applied by the engine at once, after the tick, or not at all."""

    def __init__(self, ring: Ring, world):
        self._ring = ring
        self._world = world
        self._codecs = None
        self._next_temp = 0
        #: The largest event payload: 4096 bytes, or less when the event log's own maximum is smaller.
        self.max_event_payload = MAX_EVENT_PAYLOAD
        self.error: Optional[Exception] = None
        self.count = 0

    def _begin(self, codecs) -> None:
        self._codecs, self.error, self.count = codecs, None, 0

    def _put(self, typ: int, payload: bytes) -> None:
        if self.error is not None:
            return
        if not self._ring.append(typ, payload):
            self.error = CommandsFull("command ring full: the tick's batch is dropped")
            return
        self.count += 1

    def _comp(self, name: str):
        c = self._world.by_name.get(name)
        if c is None:
            raise KeyError(f"no component {name!r} in this world (it has {', '.join(self._world.by_name)})")
        return c

    def create(self) -> int:
        """Create an entity; returns its temporary handle, valid in this tick's other commands."""
        self._next_temp = self._next_temp % 0x7FFFFFFF + 1
        t = self._next_temp
        self._put(CMD_CREATE, struct.pack("<II", t, 0))
        return TEMP_BIT | t

    def destroy(self, e: int) -> None:
        """Destroy entity e (a handle, or a temporary handle of this tick)."""
        self._put(CMD_DESTROY, struct.pack("<Q", e))

    def add(self, e: int, name: str) -> None:
        """Add the component with its zero value."""
        self._put(CMD_ADD, struct.pack("<QHHI", e, self._comp(name).id, 0, 0))

    def remove(self, e: int, name: str) -> None:
        """Remove the component."""
        self._put(CMD_REMOVE, struct.pack("<QHHI", e, self._comp(name).id, 0, 0))

    def set(self, e: int, name: str, value) -> None:
        """Set (adding it if absent) the component: value is a tuple/dict of its fields, or its raw bytes
        (for a variable-size component: bytes, or str for a string component)."""
        c = self._comp(name)
        if c.variable:
            data = value.encode() if isinstance(value, str) else bytes(value)
            if len(data) > c.max_len:
                raise ValueError(f"{name}: {len(data)} bytes, at most {c.max_len}")
        else:
            data = self._codecs[name].encode(value)
            if len(data) != c.size:
                raise ValueError(f"{name}: {len(data)} bytes, its size is {c.size}")
        self._put(CMD_SET, struct.pack("<QHHI", e, c.id, 0, 0) + data)

    def set_singleton(self, name: str, value: bytes) -> None:
        """Set a (module-writable) singleton to its raw bytes."""
        s = self._world.singleton_by_name.get(name)
        if s is None:
            raise KeyError(f"no singleton {name!r} in this world")
        if len(value) != s.size:
            raise ValueError(f"singleton {name}: {len(value)} bytes, its size is {s.size}")
        self._put(CMD_SET_SINGLETON, struct.pack("<HHI", s.id, 0, 0) + bytes(value))

    def publish(self, event_type: int, payload: bytes = b"") -> None:
        """Publish an event (type below 0xFF00, payload at most max_event_payload bytes) with this tick's batch."""
        if not 0 <= event_type < RESERVED_EVENT_FIRST:
            raise ValueError(f"event type {event_type:#x}: types 0xFF00 and above are the engine's")
        if len(payload) > self.max_event_payload:
            raise ValueError(f"event payload of {len(payload)} bytes, at most {self.max_event_payload}")
        self._put(CMD_EVENT, struct.pack("<HHI", event_type, 0, 0) + bytes(payload))

    def _ack_events(self, seq: int, pos: int, delivered: int, lost: int) -> None:
        self._put(CMD_ACK_EVENTS, struct.pack("<QQQQ", seq, pos, delivered, lost))
