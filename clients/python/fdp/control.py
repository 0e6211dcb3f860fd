"""The control plane: the hello/welcome handshake over the instance's unix socket (docs/LAYOUT.md
"Control protocol"; docs/PROTOCOL.md)."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from typing import List, Tuple

from .errors import EngineGone, FdpError, NotReady, Refused, SchemaMismatch
from .segment import shm_dir

__all__ = ["PROTO_VERSION", "MAX_MESSAGE", "socket_path", "handshake", "valid_instance"]

PROTO_VERSION = 3
MAX_MESSAGE = 64 << 10
WELCOME_FDS = 3  # world (read-only), events (read-only), module segment (read-write), in this order
# Refusals a restart cannot change: the module process exits 78 (engine up does not restart it).
PERMANENT = {"schema_mismatch", "version_mismatch", "bad_hello", "too_large", "name_owned", "modules_full", "peer"}
_INSTANCE = re.compile(r"^[A-Za-z0-9_-]{1,31}$")


def valid_instance(name: str) -> bool:
    """Instance names are 1..31 bytes of [A-Za-z0-9_-]."""
    return bool(_INSTANCE.match(name))


def socket_path(instance: str) -> str:
    """``<dir>/fdp.<instance>.sock``, dir = $FDP_SHM_DIR or /dev/shm."""
    if not valid_instance(instance):
        raise FdpError(f"invalid instance name {instance!r}: 1..31 bytes of [A-Za-z0-9_-]")
    return os.path.join(shm_dir(), f"fdp.{instance}.sock")


def _send(sock: socket.socket, obj) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE:
        raise FdpError(f"hello of {len(body)} bytes, the limit is {MAX_MESSAGE}")
    sock.sendall(struct.pack("<I", len(body)) + body)


def _recv_exact(sock: socket.socket, n: int, fds: List[int]) -> bytes:
    buf = b""
    while len(buf) < n:
        data, got, _flags, _addr = socket.recv_fds(sock, n - len(buf), WELCOME_FDS)
        fds.extend(got)
        if not data:
            raise EngineGone("the engine closed the control connection during the handshake")
        buf += data
    return buf


def handshake(instance: str, hello: dict, timeout: float = 2.0) -> Tuple[socket.socket, dict, List[int]]:
    """Connect, send hello, and return (connection, welcome, [world fd, events fd, module fd]).

    Raises NotReady when no engine listens (retry), Refused (SchemaMismatch for schema_mismatch) when the
    engine refuses the hello.
    """
    path = socket_path(instance)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        sock.close()
        raise NotReady(f"no engine listening for instance {instance!r} ({path}: {e.strerror})") from None
    fds: List[int] = []
    try:
        try:
            _send(sock, hello)
        except OSError:
            pass  # a refused peer may be refused before its hello is read: the refusal is still there to read
        try:
            (n,) = struct.unpack("<I", _recv_exact(sock, 4, fds))
            if n > MAX_MESSAGE:
                raise FdpError(f"engine reply of {n} bytes, the limit is {MAX_MESSAGE}")
            reply = json.loads(_recv_exact(sock, n, fds))
        except (OSError, ValueError) as e:
            raise EngineGone(f"no reply from engine {instance!r} (socket {path}): {e}") from None
        if "welcome" not in reply:
            code = str(reply.get("code") or "rejected")
            msg = f"engine refused module {hello.get('name')!r} ({code}): {reply.get('error', '')}"
            if code == "schema_mismatch":
                raise SchemaMismatch(msg + f" (engine schema hash {reply.get('engine_schema_hash', 0):#018x}, "
                                           f"module {hello.get('schema_hash', 0):#018x})")
            raise Refused(code, msg, code in PERMANENT)
        if len(fds) != WELCOME_FDS:
            raise FdpError(f"welcome with {len(fds)} descriptors, want {WELCOME_FDS}")
        sock.settimeout(None)
        return sock, reply["welcome"], fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        sock.close()
        raise
