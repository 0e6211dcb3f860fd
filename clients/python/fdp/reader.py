"""A standalone reader: a tool that reads an instance's frames without joining as a module."""

from __future__ import annotations

import os

from .errors import NotReady
from .frame import Frame, FrameReader
from .segment import World, open_segment, shm_dir
from .control import valid_instance
from .errors import FdpError

__all__ = ["Reader", "open_instance"]


class Reader:
    """Maps ``fdp.<instance>.world`` read-only by name and reads its latest frame *unpinned*: the engine may
    rewrite the slot one frame period after it stopped being the latest, so :meth:`Frame.release` (or
    :meth:`Frame.valid`) must confirm every read; a module's frames are pinned or leased instead."""

    def __init__(self, instance: str, schema=None):
        if not valid_instance(instance):
            raise FdpError(f"invalid instance name {instance!r}: 1..31 bytes of [A-Za-z0-9_-]")
        path = os.path.join(shm_dir(), f"fdp.{instance}.world")
        try:
            self._map, size = open_segment(path)
        except FileNotFoundError:
            raise NotReady(f"no world segment {path}: is the engine of {instance!r} up?") from None
        self.world = World(self._map, size, path)
        if schema:
            from .module import check_schema
            check_schema(self.world, schema)
        self._reader = FrameReader(self.world)

    def latest(self) -> Frame:
        """The latest frame, read in place; confirm what was read with ``release()`` (TornFrame otherwise)."""
        return self._reader.pin_latest()

    def close(self) -> None:
        self._reader.close()
        try:
            self._map.close()
        except BufferError:
            pass

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_instance(instance: str, schema=None) -> Reader:
    """Open the instance's world segment for reading (see :class:`Reader`); schema, as a module's
    (:attr:`Module.schema`), is checked against the world (SchemaMismatch)."""
    return Reader(instance, schema)
