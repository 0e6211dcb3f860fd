"""The event log (docs/LAYOUT.md "Events segment"): a reader with its own cursor, bounded by a frame."""

from __future__ import annotations

import struct
from typing import List, NamedTuple, Tuple

from . import _atomic
from .errors import CorruptSegment

__all__ = ["Event", "EventReader", "SPAWNED_TYPE"]

SPAWNED_TYPE = 0xFFFF  # system event: u32 module slot, u32 temporary id, u64 entity
REC_HDR = 24


class Event(NamedTuple):
    """One event: its sequence number, the frame it was emitted in, its type and a private copy of its payload."""
    seq: int
    frame: int
    type: int
    payload: bytes


class EventReader:
    """Reads the event log from a cursor (next sequence, position); never writes the segment."""

    def __init__(self, mem, cursor: Tuple[int, int] = (0, 0)):
        self.mem = memoryview(mem)
        self.q = self.mem.cast("Q")
        self.capacity, hdr, self.max_payload, area = struct.unpack_from("<QIIQ", mem, 1024)
        if hdr != REC_HDR or area != 4096 or self.capacity % 4096 or self.capacity == 0 \
                or area + self.capacity > len(self.mem):
            raise CorruptSegment(f"event log: capacity {self.capacity}, header {hdr}, area at {area}")
        self.area = area
        self.seq, self.pos = cursor if cursor[0] else self.tail()
        self.delivered = self.lost = 0

    def close(self) -> None:
        self.q.release()
        self.mem.release()

    def _pair(self, gen_off: int, pairs_off: int) -> Tuple[int, int]:
        while True:
            k = self.q[gen_off >> 3]
            _atomic.fence()
            o = (pairs_off >> 3) + 2 * (k & 1)
            s, p = self.q[o], self.q[o + 1]
            _atomic.fence()
            if self.q[gen_off >> 3] == k:
                return s, p

    def tail(self) -> Tuple[int, int]:
        """The committed end: (next sequence, position)."""
        return self._pair(2048, 2056)

    def oldest(self) -> Tuple[int, int]:
        """The oldest available record: (sequence, position)."""
        return self._pair(2176, 2184)

    def read(self, up_to_frame: int = (1 << 64) - 1) -> Tuple[List[Event], int]:
        """Events from the cursor whose frame is ≤ up_to_frame; returns (events, lost to overruns)."""
        lost = 0
        cseq, cpos = self.tail()
        while True:
            oseq, opos = self.oldest()
            if self.pos < opos:
                if oseq < self.seq:
                    raise CorruptSegment(f"event log: oldest seq {oseq} behind the cursor's {self.seq}")
                lost += oseq - self.seq
                self.seq, self.pos = oseq, opos
            if self.pos >= cpos:
                self.lost += lost
                return [], lost
            if cpos - self.pos > self.capacity or self.pos % 8:
                raise CorruptSegment(f"event log: cursor {self.pos} and committed end {cpos} a lap apart")
            out, pos, seq, bad = [], self.pos, self.seq, None
            mem, cap, area = self.mem, self.capacity, self.area
            while pos < cpos:
                phys = pos % cap
                left = cap - phys
                if left < REC_HDR:
                    pos += left
                    continue
                rseq, frame, typ, flags, n = struct.unpack_from("<QQHHI", mem, area + phys)
                if rseq == 0:
                    pos += left
                    continue
                if rseq != seq or flags or n > self.max_payload:
                    bad = f"record at position {pos}: seq {rseq} (want {seq}), flags {flags}, length {n}"
                    break
                if frame > up_to_frame:
                    break
                size = REC_HDR + (n + 7) // 8 * 8
                if size > cpos - pos or size > left:
                    bad = f"record {rseq} at position {pos} runs past the committed end or the area"
                    break
                o = area + phys + REC_HDR
                out.append(Event(rseq, frame, typ, bytes(mem[o:o + n])))
                seq += 1
                pos += size
            _atomic.fence()
            if self.oldest()[1] > self.pos:
                continue  # overwritten while copied: the next round reports the overrun
            self.seq, self.pos = seq, pos
            self.delivered += len(out)
            self.lost += lost
            if bad:
                raise CorruptSegment(f"event log: {bad}")
            return out, lost
