"""One-line log records on stderr, in the format the supervisor reads: JSON when $FDP_LOG_FORMAT is "json"
(``engine up`` sets it), else slog-style text (``time=... level=INFO msg=... key=value``)."""

from __future__ import annotations

import datetime
import json
import os
import sys

__all__ = ["log"]


def _text(v) -> str:
    s = str(v)
    return json.dumps(s) if (not s or any(c in s for c in ' ="\\') or not s.isprintable()) else s


def log(level: str, msg: str, **attrs) -> None:
    """Write one record: level is DEBUG, INFO, WARN or ERROR."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if os.environ.get("FDP_LOG_FORMAT") == "json":
        line = json.dumps({"time": now, "level": level, "msg": msg, **attrs}, separators=(",", ":"), default=str)
    else:
        line = " ".join([f"time={now}", f"level={level}", f"msg={_text(msg)}"] +
                        [f"{k}={_text(v)}" for k, v in attrs.items()])
    print(line, file=sys.stderr, flush=True)
