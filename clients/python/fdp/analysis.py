"""The demo's Python module: every 30 frames, on its own snapshot of Position, the mean position of every
entity, published as an event (type 4, payload ``f64 mean X, f64 mean Y, u64 count``) and logged every
10th run.  Run by ``engine up`` (supervisor/default.yaml) as ``modrunner python fdp.analysis``.
"""

from __future__ import annotations

import struct

from . import Module, main
from .frame import HAVE_NUMPY
from .log import log

EVENT_MEAN_POSITION = 4


def mean_position(view):
    """(mean X, mean Y, count) over the entities with a Position: numpy views on the mapping when numpy is
    installed, else a pure-Python pass over the same bytes."""
    sx = sy = 0.0
    n = 0
    if HAVE_NUMPY:
        present, values = view.column("Position")  # zero-copy views over every chunk of the frame
        sel = values[present]
        sx, sy, n = float(sel["X"].sum(dtype="f8")), float(sel["Y"].sum(dtype="f8")), int(sel.shape[0])
    else:
        for _, p in view.values("Position"):
            sx += p[0]
            sy += p[1]
            n += 1
    return (sx / n, sy / n, n) if n else (0.0, 0.0, 0)


class Analysis(Module):
    name = "analysis"
    tier = "slow"
    every = 30
    group = "solo"
    reads = ("Position",)
    schema = {"Position": {"X": "f32", "Y": "f32", "Z": "f32"}}

    def __init__(self):
        self.runs = 0

    def tick(self, view, cmds, dt):
        mx, my, n = mean_position(view)
        cmds.publish(EVENT_MEAN_POSITION, struct.pack("<ddQ", mx, my, n))
        self.runs += 1
        if self.runs % 10 == 1:
            log("INFO", "mean position", frame=view.number, entities=n, mean_x=round(mx, 3), mean_y=round(my, 3),
                numpy=HAVE_NUMPY)


if __name__ == "__main__":
    main(Analysis())
