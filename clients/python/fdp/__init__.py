"""FDP client for Python: read an engine's frames zero-copy and write modules in Python.

Standard library only; numpy is used when it is installed (``Frame.column_chunks`` returns numpy views then).
See README.md, "Writing a module in Python", and docs/LAYOUT.md / docs/PROTOCOL.md for the bytes and the
protocol this package implements.
"""

from .commands import TEMP_BIT, Commands
from .errors import (EX_REFUSED, CommandsFull, CorruptSegment, EngineGone, FdpError, NoFrame, NotReady, Refused,
                     SchemaMismatch, TornFrame)
from .events import Event
from .log import log
from .frame import HAVE_NUMPY, Frame, entity_gen, entity_index
from .module import Module, View, check_schema, main, run
from .reader import Reader, open_instance
from .segment import Component, Field, Singleton, World

__all__ = ["Module", "View", "Reader", "open_instance", "log", "Frame", "Commands", "Event", "World", "Component", "Field", "Singleton", "run",
           "main", "check_schema", "entity_index", "entity_gen", "TEMP_BIT", "HAVE_NUMPY", "EX_REFUSED",
           "FdpError", "NotReady", "CorruptSegment", "SchemaMismatch", "Refused", "EngineGone", "TornFrame",
           "NoFrame", "CommandsFull"]
