"""Scenarios of the Go tests (tests/python_test.go): each runs against an engine the test started and prints
one JSON object on stdout.  Run: python3 scenarios.py MODE INSTANCE [args]."""

import hashlib
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fdp  # noqa: E402
from fdp.frame import HAVE_NUMPY  # noqa: E402

if HAVE_NUMPY:
    import numpy as np

SIM_EVENT, PY_EVENT = 7, 9


def invariant(frame, last_x):
    """The invariant world's content check (tests/python_test.go invSim): every entity has a Position with
    X = the simulation step of this frame (the same for all, above the previous frame's), Y = -X, Z = its
    index; and the entities with one are the frame's alive ones.  Returns (x, problem or None)."""
    K = frame.world.K
    x0, n = None, 0
    if HAVE_NUMPY:
        for c, (present, values) in enumerate(frame.column_chunks("Position")):
            sel = values[present]
            n += int(present.sum())
            if not len(sel):
                continue
            if x0 is None:
                x0 = float(sel["X"][0])
            idx = np.arange(c * K, c * K + len(present), dtype=np.float32)[present]
            if (sel["X"] != np.float32(x0)).any() or (sel["Y"] != -sel["X"]).any() or (sel["Z"] != idx).any():
                return x0, f"chunk {c}: positions of two frames (X {sorted(set(sel['X'].tolist()))[:4]})"
    else:
        for e, (x, y, z) in frame.values("Position"):
            n += 1
            if x0 is None:
                x0 = x
            if x != x0 or y != -x or z != float(e & 0xFFFFFFFF):
                return x0, f"entity {e:#x}: ({x}, {y}, {z}) in a frame of X {x0}"
    if n != frame.alive:
        return x0, f"{n} entities with a Position, the header says {frame.alive} alive"
    if x0 is not None and last_x is not None and x0 <= last_x:
        return x0, f"X {x0} not above the previous frame's {last_x}"
    return x0, None


class InvariantReader(fdp.Module):
    """A fast module that checks every frame it is given (pinned) against the invariant."""
    tier, every = "fast", 1
    schema = {"Position": {"X": "f32", "Y": "f32", "Z": "f32"}}

    def __init__(self, name):
        self.name = name
        self.accepted = self.violations = self.torn = 0
        self.last_x = None
        self.pending = None
        self.first = None

    def tick(self, view, cmds, dt):
        self.pending = invariant(view.frame, self.last_x)

    def committed(self, frame):
        x, problem = self.pending
        self.accepted += 1
        if problem:
            self.violations += 1
            self.first = self.first or f"frame {frame}: {problem}"
        elif x is not None:
            self.last_x = x

    def dropped(self, frame, err):
        if isinstance(err, fdp.TornFrame):
            self.torn += 1


def mode_reader(inst, seconds):
    m = InvariantReader("pyreader" + ("-np" if HAVE_NUMPY else "-pure"))
    stop = fdp.module._Stop()
    end = time.monotonic() + float(seconds)
    orig = m.tick

    def tick(view, cmds, dt):
        orig(view, cmds, dt)
        if time.monotonic() > end:
            stop.flag = True
    m.tick = tick
    fdp.run(m, instance=inst, stop=stop)
    print(json.dumps({"numpy": HAVE_NUMPY, "accepted": m.accepted, "violations": m.violations, "torn": m.torn,
                      "first": m.first}))


def mode_unpinned(inst, seconds):
    """A standalone reader without a pin, reading as fast as it can: every frame the invariant finds mixed
    must also be one the seqlock re-check (Frame.release) refuses."""
    r = fdp.open_instance(inst, InvariantReader.schema)
    end = time.monotonic() + float(seconds)
    reads = caught = flagged = unsound = 0
    while time.monotonic() < end:
        try:
            f = r.latest()
        except (fdp.NoFrame, fdp.TornFrame):
            continue
        reads += 1
        try:
            _, problem = invariant(f, None)
        except (IndexError, ValueError):
            problem = "unreadable"  # bytes of another frame can be anything
        ok = f.valid()
        f._abandon()
        if problem and ok and os.environ.get("FDP_DEBUG"):
            print(problem, file=sys.stderr)
        caught += bool(problem)
        flagged += not ok
        unsound += bool(problem) and ok
    r.close()
    print(json.dumps({"reads": reads, "caught": caught, "flagged": flagged, "unsound": unsound}))


class CommandsModule(fdp.Module):
    """Creates two tagged entities per tick (Team = tag, Name = "py<tag>", Health on even tags), publishes one
    event per tick, and records the simulation's events it is given; only committed ticks count."""
    name, tier, every = "pycmds", "fast", 1
    schema = {"Team": {"ID": "u32"}}

    def __init__(self):
        self.tags, self.events, self.published = [], [], []
        self.lost = 0
        self.n = 0
        self.pending = None

    def tick(self, view, cmds, dt):
        self.n += 1
        tags = [self.n * 10, self.n * 10 + 1]
        for tag in tags:
            e = cmds.create()
            cmds.set(e, "Team", (tag,))
            cmds.set(e, "Name", f"py{tag}")
            cmds.add(e, "Health")
            if tag % 2:
                cmds.remove(e, "Health")
        cmds.publish(PY_EVENT, struct.pack("<Q", tags[0]))
        evs = [struct.unpack("<Q", e.payload)[0] for e in view.events() if e.type == SIM_EVENT]
        self.pending = (tags, evs, view.lost)

    def committed(self, frame):
        tags, evs, lost = self.pending
        self.tags += tags
        self.published.append(tags[0])
        self.events += evs
        self.lost += lost


def mode_commands(inst, ticks):
    m = CommandsModule()
    n = fdp.run(m, instance=inst, max_ticks=int(ticks))
    print(json.dumps({"ticks": n, "tags": m.tags, "published": m.published, "events": m.events, "lost": m.lost}))


ACK_EVENT = 10


class Relay(fdp.Module):
    """Publishes, with each tick's batch, the steps of the simulation's events that tick was given: the
    event and the tick's acknowledgement of what it read commit together, so the log of ACK_EVENTs lists
    exactly the deliveries that counted, across the process's deaths."""
    name, tier, every = "pyrelay", "fast", 1

    def tick(self, view, cmds, dt):
        steps = [struct.unpack("<Q", e.payload)[0] for e in view.events() if e.type == SIM_EVENT]
        if steps:
            cmds.publish(ACK_EVENT, struct.pack(f"<{len(steps)}Q", *steps[:512]))


def mode_relay(inst):
    fdp.main(Relay())


class Conformance(fdp.Module):
    """Per frame: a digest of every entity with a Position (handle, its bytes, its Name) and the Time singleton,
    in index order; and every event delivered.  tests/python_test.go computes the same in Go."""
    tier, every = "fast", 1

    def __init__(self, name, ticks):
        self.name, self.ticks = name, ticks
        self.frames, self.events, self.pending = {}, [], None

    def tick(self, view, cmds, dt):
        h = hashlib.sha256()
        f = view.frame
        n = 0
        for e in f.query(["Position"]):
            h.update(struct.pack("<Q", e))
            h.update(f.raw(e, "Position"))
            name = f.raw(e, "Name")
            h.update(bytes(name) if name is not None else b"-")
            n += 1
        t = f.singleton_raw("Time")
        h.update(bytes(t) if t is not None else b"")
        evs = [f"{e.seq}:{e.frame}:{e.type}:{e.payload.hex()}" for e in view.events() if e.type < 0xFF00]
        self.pending = (f.number, f"{n}:{h.hexdigest()}", evs)

    def committed(self, frame):
        number, digest, evs = self.pending
        self.frames[number] = digest
        self.events += evs


def mode_conformance(inst, name, ticks):
    m = Conformance(name, int(ticks))
    fdp.run(m, instance=inst, max_ticks=int(ticks))
    print(json.dumps({"numpy": HAVE_NUMPY, "frames": m.frames, "events": m.events}))


class Expect(fdp.Module):
    name, tier, every = "pyschema", "fast", 1

    def tick(self, view, cmds, dt):
        pass


def mode_schema(inst, kind):
    """A module written for another schema: its fields (kind "fields") or its schema hash (kind "hash")."""
    m = Expect()
    if kind == "fields":
        m.schema = {"Position": {"X": "f64", "Y": "f64", "Z": "f64"}}
        fdp.main(m, max_ticks=1)
    os.environ["FDP_INSTANCE"] = inst
    m.schema = {"Position": None}
    try:
        fdp.run(m, instance=inst, max_ticks=1, schema_hash=0x1234)
    except fdp.SchemaMismatch as e:
        print(f"fdp: {e}", file=sys.stderr)
        sys.exit(fdp.EX_REFUSED)


def mode_tables(inst):
    """The client's checks of a world's tables: a copy of the live segment's header and tables, decoded as is,
    then with one byte changed at a time: each change is refused with its reason (CorruptSegment)."""
    from fdp.segment import World, open_segment
    mm, size = open_segment(os.path.join(fdp.segment.shm_dir(), f"fdp.{inst}.world"))
    w = World(mm, size)
    head = bytearray(mm[:w.slots_off])
    F, pos = w.fields_off, w.by_name["Position"]
    mm.close()

    def decode(mutate):
        b = bytearray(head)
        mutate(b)
        try:
            World(memoryview(b), size)
            return "accepted"
        except fdp.CorruptSegment as e:
            return str(e)
    out = {"clean": decode(lambda b: None)}
    out["fingerprint"] = decode(lambda b: b.__setitem__(4096 + 64 * pos.id + 40, b[4096 + 64 * pos.id + 40] ^ 1))
    out["field_type"] = decode(lambda b: b.__setitem__(F + 1, 10))          # Position.X f32 -> f64
    out["field_reserved"] = decode(lambda b: b.__setitem__(F + 20, 1))
    out["field_name"] = decode(lambda b: b.__setitem__(F + 32 * w.fields_count, ord("x")))
    out["fields"] = {c.name: [[f.name, f.type, f.offset, f.count] for f in c.fields]
                     for c in w.components + w.singletons}
    print(json.dumps(out))


def mode_errors(inst):
    """Every misuse is an exception of the client with one clear line (tests/python_test.go)."""
    out = {}

    def catch(key, fn):
        try:
            fn()
            out[key] = "no error"
        except (fdp.FdpError, ValueError, KeyError, TypeError) as e:
            out[key] = f"{type(e).__name__}: {e}"
    catch("bad_instance", lambda: fdp.run(Expect(), instance="no/such", max_ticks=1))
    catch("no_engine", lambda: fdp.run(Expect(), instance="nosuch" + inst[-6:], max_ticks=1, attach_timeout=0.2))
    catch("open_missing", lambda: fdp.open_instance("nosuch" + inst[-6:]))
    r = fdp.open_instance(inst)
    f = r.latest()
    catch("unknown_component", lambda: f.get(1, "Nope"))
    catch("variable_column", lambda: f.column_chunks("Name"))
    f.release()
    r.close()

    class Bad(fdp.Module):
        name, tier, every = "pyerr", "fast", 1

        def tick(self, view, cmds, dt):
            for key, fn in (("reserved_event", lambda: cmds.publish(0xFF00, b"")),
                            ("event_too_large", lambda: cmds.publish(5, bytes(4097))),
                            ("wrong_size", lambda: cmds.set(1, "Position", b"123")),
                            ("too_long_string", lambda: cmds.set(1, "Name", "x" * 25))):
                catch(key, fn)
    fdp.run(Bad(), instance=inst, max_ticks=1)
    print(json.dumps(out))


if __name__ == "__main__":
    mode, inst, *args = sys.argv[1:]
    if mode == "schema":
        os.environ["FDP_INSTANCE"] = inst
    {"reader": mode_reader, "unpinned": mode_unpinned, "commands": mode_commands,
     "conformance": mode_conformance, "schema": mode_schema, "tables": mode_tables,
     "relay": mode_relay, "errors": mode_errors}[mode](inst, *args)
