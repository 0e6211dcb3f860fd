"""Modules: join an engine as a fast or slow module and run a tick loop (docs/LAYOUT.md "Module segment",
"Doorbell protocol"; docs/PROTOCOL.md)."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from typing import List, Mapping, Optional, Sequence

from . import _atomic
from .commands import TEMP_BIT, Commands, Ring
from .control import handshake, valid_instance
from .errors import (EX_REFUSED, CorruptSegment, EngineGone, FdpError, NoFrame, NotReady, Refused,
                     SchemaMismatch, TornFrame)
from .events import Event, EventReader, SPAWNED_TYPE
from .frame import Frame, FrameReader
from .log import log
from .segment import KIND_MODULE, World, decode_header, map_fd, open_segment, shm_dir

__all__ = ["Module", "View", "run", "main", "check_schema"]

# Module segment words (docs/LAYOUT.md "Kind header and doorbells").
OFF_SLOT, OFF_TIER = 1024, 1028
OFF_TICK, OFF_TICK_WAKE, OFF_TICK_FRAME, OFF_TICK_LEASE, OFF_TICK_STAMP = 2048, 2052, 2056, 2064, 2072
OFF_DONE, OFF_DONE_WAKE, OFF_DONE_FRAME = 2176, 2180, 2184
OFF_HEARTBEAT, OFF_PID, OFF_START, OFF_WAKE_NS, OFF_WARM, OFF_COLD, OFF_LEAVING = 2304, 2312, 2320, 2328, 2336, 2344, 2352
OFF_PIN = 2432
OFF_ACK_SEQ, OFF_ACK_POS = 2560, 2568
OFF_STAT_TICKS = 2688 + 184
OFF_RING = 4096
DONE_FAILED = 1 << 63


def _start_time() -> int:
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22


class Module:
    """Subclass and override :meth:`tick`.  Class attributes are the module's spec; under ``engine up`` the
    environment ($FDP_MODULE, $FDP_TIER, $FDP_EVERY, $FDP_GROUP, $FDP_INSTANCE) wins over them."""

    name: str = ""
    tier: str = "fast"          # "fast": every due frame, on the latest frame; "slow": on a leased snapshot
    every: int = 1              # run every N frames
    group: str = ""             # convoy group of a slow module ("" automatic, "solo", or a name)
    reads: Sequence[str] = ()   # components read (a slow module's snapshot holds only these); () = all
    #: The schema the module was written for: component name -> {field: scalar type} (or None: any layout).
    #: Checked against the world's field table before the module joins (SchemaMismatch otherwise).
    schema: Mapping[str, Optional[Mapping[str, str]]] = {}
    max_runtime: float = 0.0    # seconds per slow tick (0: the engine's default)

    def setup(self, world: World) -> None:
        """Called once per attach, before the first tick, with the world's schema."""

    def tick(self, view: "View", cmds: Commands, dt: float) -> None:
        """One tick on view's frame; commands are applied after it returns (an exception drops them)."""
        raise NotImplementedError

    def committed(self, frame: int) -> None:
        """Called after a tick's batch (its commands and its event acknowledgement) was committed."""

    def dropped(self, frame: int, error: BaseException) -> None:
        """Called after a tick failed: its commands were dropped and its events will be delivered again."""


class View:
    """What a tick sees: its frame (zero-copy, valid during the tick) and the events up to that frame."""

    def __init__(self, session: "_Session"):
        self._s = session
        self.frame: Optional[Frame] = None
        self._events: Optional[List[Event]] = None
        self.lost = 0

    def events(self) -> List[Event]:
        """The events since the module's last committed tick, up to this tick's frame (each delivered once:
        a failed tick's events are delivered again in the next)."""
        if self._events is None:
            self._events, self.lost = self._s.evr.read(self.frame.number)
            self._events = [e for e in self._events if e.type != SPAWNED_TYPE or self._mine(e)]
        return self._events

    def created(self) -> List[tuple]:
        """(temporary handle, entity) of this module's creates the engine resolved, as its events report them
        (system event 0xFFFF) up to this tick's frame: the entities of earlier ticks' ``cmds.create()``."""
        return [(TEMP_BIT | struct.unpack_from("<I", e.payload, 4)[0], struct.unpack_from("<Q", e.payload, 8)[0])
                for e in self.events() if e.type == SPAWNED_TYPE]

    def _mine(self, e: Event) -> bool:
        return len(e.payload) == 16 and struct.unpack_from("<I", e.payload)[0] == self._s.slot

    def __getattr__(self, name):  # frame helpers: view.query(...), view.get(...), view.number, ...
        return getattr(self.frame, name)


def check_schema(world: World, schema: Mapping[str, Optional[Mapping[str, str]]]) -> None:
    """Raise SchemaMismatch unless every component of schema is in the world with those fields and types."""
    problems = []
    for name, fields in schema.items():
        c = world.by_name.get(name)
        if c is None:
            problems.append(f"component {name!r} is not in the world (it has {', '.join(world.by_name) or 'none'})")
            continue
        if not fields:
            continue
        have = {f.name: f for f in c.fields}
        for fname, ftype in fields.items():
            f = have.get(fname)
            if f is None:
                problems.append(f"{name}.{fname}: no such field (the world's {name} has {', '.join(have)})")
            elif f.type != ftype:
                problems.append(f"{name}.{fname}: {f.type} in the world, the module expects {ftype}")
    if problems:
        raise SchemaMismatch("schema mismatch: " + "; ".join(problems))


class _Session:
    """One attach: the control connection, the three mappings, the reader, the ring, the event cursor."""

    def __init__(self, m: Module, spec: dict, instance: str, schema_hash: Optional[int]):
        self.m, self.spec, self.instance = m, spec, instance
        # The hello carries the engine's schema hash and the read mask by component id, which only the world
        # segment tells before the welcome: read them (and check the module's schema) from the world by name.
        # The world passed with the welcome is checked again in attach.  A module that cannot read the world
        # by name (another uid than the engine's) must pass schema_hash and read every component.
        path = os.path.join(shm_dir(), f"fdp.{instance}.world")
        names: List[str] = []
        try:
            mm, size = open_segment(path)
        except FileNotFoundError:
            raise NotReady(f"no world segment {path}: the engine of {instance!r} is not up") from None
        except PermissionError:
            if schema_hash is None or m.reads:
                raise Refused("peer", f"cannot read {path} (another uid than the engine's?): pass run(..., "
                                      f"schema_hash=...) and read every component (reads = ())", True) from None
            mm = None
        if mm is not None:
            try:
                w = World(mm, size, path)
                check_schema(w, m.schema)
                if schema_hash is None:
                    schema_hash = w.header.schema_hash
                names = [c.name for c in w.components]
                del w
            finally:
                mm.close()
        self.hello = {"proto_version": 3, "name": spec["name"], "tier": spec["tier"], "every": spec["every"],
                      "mask": 0, "components": names, "schema_hash": schema_hash, "pid": os.getpid()}
        self._reads = list(m.reads)
        if spec["group"]:
            self.hello["group"] = spec["group"]
        if m.max_runtime:
            self.hello["max_runtime_ns"] = int(m.max_runtime * 1e9)
        self.joined = time.monotonic_ns()
        self._names = names

    def attach(self) -> None:
        if self._reads:
            idx = {n: i for i, n in enumerate(self._names)}
            mask = 0
            for n in self._reads:
                if n not in idx:
                    raise SchemaMismatch(f"reads names {n!r}, not a component of the world ({', '.join(idx)})")
                mask |= 1 << idx[n]
            self.hello["mask"] = mask & ((1 << 64) - 1)
            ext = [(mask >> (64 * j)) & ((1 << 64) - 1) for j in range(1, 4)]
            while ext and not ext[-1]:
                ext.pop()
            if ext:
                self.hello["mask_ext"] = ext
        self.joined = time.monotonic_ns()
        self.sock, self.welcome, fds = handshake(self.instance, self.hello)
        maps = []
        try:
            for fd, rw in zip(fds, (False, False, True)):
                maps.append(map_fd(fd, rw))
        finally:
            for fd in fds:
                os.close(fd)
        (self.wmap, wsize), (self.emap, _), (self.mmap, msize) = maps
        self.world = World(self.wmap, wsize)
        if self.world.header.schema_hash != self.hello["schema_hash"]:
            raise SchemaMismatch(f"the world passed has schema hash {self.world.header.schema_hash:#x}, "
                                 f"the hello said {self.hello['schema_hash']:#x}")
        check_schema(self.world, self.m.schema)
        decode_header(self.mmap, msize, KIND_MODULE, "module segment")
        self.slot = struct.unpack_from("<I", self.mmap, OFF_SLOT)[0]
        if self.slot != self.welcome["slot"]:
            raise CorruptSegment(f"welcome names slot {self.welcome['slot']}, the module segment is slot {self.slot}")
        self.mv = memoryview(self.mmap)
        self.w32, self.w64 = self.mv.cast("I"), self.mv.cast("Q")
        self.reader = FrameReader(self.world, self.mmap, OFF_PIN)
        self.ring = Ring(self.mmap, OFF_RING)
        self.cmds = Commands(self.ring, self.world)
        ack = (self.w64[OFF_ACK_SEQ >> 3], self.w64[OFF_ACK_POS >> 3])
        self.evr = EventReader(self.emap)
        self.cmds.max_event_payload = min(self.cmds.max_event_payload, self.evr.max_payload)
        tail = self.evr.tail()
        if ack[0] and ack[0] <= tail[0] and ack[1] <= tail[1]:
            self.evr.seq, self.evr.pos = ack
        self.acked = (self.evr.seq, self.evr.pos)
        self.w32[OFF_PID >> 2] = os.getpid()
        self.w64[OFF_START >> 3] = _start_time()
        self.beat()
        self.tick_addr = _atomic.address_of(self.mmap, OFF_TICK_WAKE)
        self.done_addr = _atomic.address_of(self.mmap, OFF_DONE_WAKE)
        self.m.setup(self.world)

    def beat(self) -> None:
        self.w64[OFF_HEARTBEAT >> 3] = time.time_ns()

    def engine_gone(self) -> bool:
        r, _, _ = select.select([self.sock], [], [], 0)
        if r:
            try:
                return self.sock.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True
        return False

    def pending(self) -> bool:
        w = self.w64
        done = w[OFF_DONE_FRAME >> 3] & ~DONE_FAILED
        return w[OFF_TICK_FRAME >> 3] > done and w[OFF_TICK_STAMP >> 3] >= self.joined

    def wait_tick(self, last: int, timeout: float) -> int:
        """The doorbell wait: poll, announce the sleep on need-wake, re-check, FUTEX_WAIT."""
        w32, i = self.w32, OFF_TICK >> 2
        for _ in range(200):
            v = w32[i]
            if v != last:
                return v
        w32[OFF_TICK_WAKE >> 2] = 1
        _atomic.fence()
        v = w32[i]
        if v != last:
            w32[OFF_TICK_WAKE >> 2] = 0
            return v
        _atomic.futex_wait(self.tick_addr, 1, timeout)
        _atomic.xchg32(self.mmap, w32, OFF_TICK_WAKE, 0)
        return w32[i]

    def ring_done(self, frame: int) -> None:
        w32, w64 = self.w32, self.w64
        w64[OFF_DONE_FRAME >> 3] = frame
        _atomic.fence()
        w32[OFF_DONE >> 2] = (w32[OFF_DONE >> 2] + 1) & 0xFFFFFFFF
        _atomic.fence()  # seq-cst increment: before the load of need-wake
        if w32[OFF_DONE_WAKE >> 2] != 0 and _atomic.xchg32(self.mmap, w32, OFF_DONE_WAKE, 0) == 1:
            _atomic.futex_wake(self.done_addr, 1)

    def close(self) -> None:
        for obj in ("reader", "ring", "evr"):
            if hasattr(self, obj):
                getattr(self, obj).close()
        for v in ("w32", "w64", "mv"):
            if hasattr(self, v):
                getattr(self, v).release()
        for mm in ("wmap", "emap", "mmap"):
            if hasattr(self, mm):
                try:
                    getattr(self, mm).close()
                except BufferError:
                    pass  # a view the module kept: the mapping goes with the process
        if hasattr(self, "sock"):
            self.sock.close()


def _spec(m: Module, instance: Optional[str]) -> dict:
    env = os.environ
    spec = {"name": env.get("FDP_MODULE") or m.name, "tier": env.get("FDP_TIER") or m.tier,
            "group": env.get("FDP_GROUP") or m.group, "every": m.every,
            "instance": instance or env.get("FDP_INSTANCE", "")}
    if env.get("FDP_EVERY"):
        try:
            spec["every"] = int(env["FDP_EVERY"])
        except ValueError:
            raise Refused("bad_hello", f"$FDP_EVERY={env['FDP_EVERY']!r}: want a whole number of frames", True)
    if spec["tier"] not in ("fast", "slow"):
        raise Refused("bad_hello", f"tier {spec['tier']!r}: want 'fast' or 'slow'", True)
    if not spec["instance"] or not valid_instance(spec["instance"]):
        raise Refused("bad_hello", f"instance {spec['instance']!r}: set $FDP_INSTANCE (engine up sets it) to "
                                   f"1..31 bytes of [A-Za-z0-9_-]", True)
    if not spec["name"]:
        raise Refused("bad_hello", "no module name: set Module.name or $FDP_MODULE", True)
    return spec


class _Stop:
    def __init__(self):
        self.flag = False


def run(m: Module, instance: Optional[str] = None, max_ticks: int = 0, attach_timeout: float = 10.0,
        schema_hash: Optional[int] = None, stop: Optional[_Stop] = None) -> int:
    """Join the engine of instance as module m and run ticks until max_ticks (0: no limit), a stop (SIGTERM
    under :func:`main`) or the engine's end (EngineGone).  Returns the number of ticks run."""
    spec = _spec(m, instance)
    stop = stop or _Stop()
    deadline = time.monotonic() + attach_timeout
    while True:
        try:
            s = _Session(m, spec, spec["instance"], schema_hash)
            s.attach()
            break
        except (NotReady, Refused) as e:
            # Not up yet, or a refusal that can clear (e.g. the engine has not yet seen the end of this name's
            # previous process): retried until the attach deadline.  A permanent refusal is raised at once.
            if "s" in locals():
                s.close()
            if getattr(e, "permanent", False) or time.monotonic() > deadline or stop.flag:
                raise
            time.sleep(0.05)
        except BaseException:
            if "s" in locals():
                s.close()
            raise
    try:
        return _loop(s, max_ticks, stop)
    finally:
        s.close()


def _loop(s: _Session, max_ticks: int, stop: _Stop) -> int:
    m, w64 = s.m, s.w64
    ticks = 0
    last = s.w32[OFF_TICK >> 2]
    runtime = s.welcome.get("max_runtime_ns", 0) / 1e9
    began = [0.0]
    beat_stop = threading.Event()

    def beat_loop():  # a long slow tick keeps its heartbeat fresh, up to its runtime
        while not beat_stop.wait(0.25):
            b = began[0]
            if b and (not runtime or time.monotonic() - b <= runtime):
                s.beat()
    beater = threading.Thread(target=beat_loop, daemon=True)
    beater.start()
    try:
        while True:
            if stop.flag:
                w64[OFF_LEAVING >> 3] = 1
                return ticks
            if s.engine_gone():
                raise EngineGone(f"engine of {s.instance!r} closed the control connection")
            wake = 0
            if s.pending():
                v = s.w32[OFF_TICK >> 2]
            else:
                v = s.wait_tick(last, 0.1)
                if v != last:
                    wake = max(1, time.monotonic_ns() - w64[OFF_TICK_STAMP >> 3])
            s.beat()
            if v == last and not s.pending():
                continue
            last = v
            if not s.pending():
                continue
            w64[OFF_WAKE_NS >> 3] = wake
            frame = w64[OFF_TICK_FRAME >> 3]
            lease = w64[OFF_TICK_LEASE >> 3]
            slot, dt = (lease & 0xFF) - 1, (lease >> 8) / 1e6
            began[0] = time.monotonic()
            failed = _tick(s, frame, slot, dt, runtime if slot >= 0 else 0)
            began[0] = 0.0
            ticks += 1
            final = max_ticks and ticks >= max_ticks
            seen = w64[OFF_STAT_TICKS >> 3]
            if final:
                w64[OFF_LEAVING >> 3] = 1  # before the done: no further tick is dispatched to a leaving process
            s.ring_done(frame | (DONE_FAILED if failed else 0))
            if final:
                _settle(s, seen)
                return ticks
    finally:
        beat_stop.set()


def _settle(s: _Session, seen: int) -> None:
    """After the last tick: wait until the engine took its batch (played back and counted), at most 2 s."""
    end = time.monotonic() + 2.0
    while time.monotonic() < end and not s.engine_gone():
        if s.w64[OFF_STAT_TICKS >> 3] > seen and s.ring.drained():
            return
        time.sleep(0.001)


def _tick(s: _Session, frame: int, slot: int, dt: float, runtime: float) -> bool:
    """Run one tick; returns whether it failed (its commands and event reads are then dropped)."""
    try:
        f = s.reader.pin_latest() if slot < 0 else s.reader.open_leased(slot, frame)
    except (NoFrame, TornFrame) as e:
        _warn(s, f"no frame for tick {frame}: {e}")
        s.m.dropped(frame, e)
        return True
    view = View(s)
    view.frame = f
    s.cmds._begin(s.reader.codecs)
    cursor = (s.evr.seq, s.evr.pos)
    start = time.monotonic()
    err: Optional[BaseException] = None
    try:
        s.m.tick(view, s.cmds, dt)
    except Exception as e:  # the module's own failure: counted by the engine as a failed tick
        err = e
    try:
        f.release()
    except TornFrame as e:
        err = err or e
    if err is None and runtime and time.monotonic() - start > runtime:
        err = FdpError(f"tick exceeded its runtime ({runtime * 1000:.0f} ms): snapshot revoked")
    if err is None and s.cmds.error is not None:
        err = s.cmds.error
    if err is None and (s.evr.seq, s.evr.pos) != s.acked:
        delivered = s.evr.delivered
        s.cmds._ack_events(s.evr.seq, s.evr.pos, delivered, s.evr.lost)
        err = s.cmds.error
    if err is not None:
        s.ring.abort()
        s.evr.seq, s.evr.pos = cursor
        s.evr.delivered = s.evr.lost = 0
        _warn(s, f"tick {frame} failed: {type(err).__name__}: {err}")
        s.m.dropped(frame, err)
        return True
    s.ring.commit()
    if (s.evr.seq, s.evr.pos) != s.acked:
        s.acked = (s.evr.seq, s.evr.pos)
        s.evr.delivered = s.evr.lost = 0
    s.m.committed(frame)
    return False


_last_warn = [0.0]


def _warn(s: _Session, msg: str) -> None:
    now = time.monotonic()
    if now - _last_warn[0] >= 1.0:
        _last_warn[0] = now
        log("WARN", msg, module=s.spec["name"])


def main(m: Module, max_ticks: int = 0) -> None:
    """Run m as a program: exits 0 after SIGTERM/SIGINT or max_ticks, 78 when the engine refuses it for a
    reason a restart cannot change (engine up then does not restart it), 1 on any other error (e.g. the
    engine went away: the supervisor restarts the module)."""
    stop = _Stop()

    def on_signal(_sig, _frm):
        stop.flag = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    name = os.environ.get("FDP_MODULE") or m.name
    try:
        while True:
            try:
                run(m, max_ticks=max_ticks, stop=stop)
                break
            except EngineGone as e:
                # Wait for the instance's next engine (attach_timeout), in the same process.
                log("WARN", f"{e}: waiting for the next engine", module=name)
                if stop.flag:
                    break
    except (SchemaMismatch, Refused) as e:
        log("ERROR", str(e), module=name)
        sys.exit(EX_REFUSED if getattr(e, "permanent", True) else 1)
    except (FdpError, OSError) as e:
        log("ERROR", f"{type(e).__name__}: {e}", module=name)
        sys.exit(1)
    sys.exit(0)
