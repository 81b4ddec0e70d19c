"""govctl's side of the control socket: one request, one reply."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from .errors import GovdError
from .protocol import request


class NotRunning(GovdError):
    """No daemon answers on the socket."""


class CommandFailed(GovdError):
    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def call(path: Path, cmd: str, timeout_s: float = 10.0, **args) -> Any:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(f"govd is not running (no daemon at {path}); start it with `systemctl start govd`, "
                             "or `govd --sim h100-sxm` for a demo") from None
        except PermissionError:
            raise GovdError(f"cannot connect to {path}: permission denied; members of the govd group and root "
                            "may talk to govd") from None
        sock.sendall(request(cmd, **args))
        buf = bytearray()
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise GovdError("govd closed the connection without answering")
            buf += chunk
    except TimeoutError:
        raise GovdError(f"govd did not answer within {timeout_s:g} s") from None
    finally:
        sock.close()
    reply = json.loads(buf[: buf.index(b"\n")])
    if not reply.get("ok"):
        err = reply.get("error", {})
        raise CommandFailed(err.get("code", "error"), err.get("message", "unknown error"))
    return reply["result"]
