"""Exceptions of the FDP Python client: every failure is one of these, with a message that says what and where."""

from __future__ import annotations

__all__ = ["FdpError", "NotReady", "CorruptSegment", "SchemaMismatch", "Refused", "EngineGone", "TornFrame",
           "NoFrame", "CommandsFull", "EX_REFUSED"]

#: Exit status of a module refused for a reason a restart cannot change (``engine up`` does not restart it).
EX_REFUSED = 78


class FdpError(Exception):
    """Base class of every error raised by the client."""


class NotReady(FdpError):
    """The segment or instance is not there yet (no file, ready word not set): retry later."""


class CorruptSegment(FdpError):
    """A segment failed validation (magic, version, checksum, geometry, a bound): nothing of it was used."""


class SchemaMismatch(FdpError):
    """The world's schema is not the one the module was written for (or the engine refused its schema hash)."""


class Refused(FdpError):
    """The engine refused the hello.  ``code`` is the engine's refusal code (``schema_mismatch``, ``bad_hello``, ...)."""

    def __init__(self, code: str, message: str, permanent: bool):
        super().__init__(message)
        self.code = code
        self.permanent = permanent


class EngineGone(FdpError):
    """The engine closed the control connection (it stopped or died)."""


class TornFrame(FdpError):
    """The slot was rewritten while it was read: whatever was read from it must be discarded."""


class NoFrame(FdpError):
    """No frame could be pinned (nothing published yet, or the leased slot is not this tick's)."""


class CommandsFull(FdpError):
    """The command ring has no room for the tick's batch: the batch is dropped."""
