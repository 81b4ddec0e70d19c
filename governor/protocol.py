"""The control protocol, shared by the daemon and govctl: JSON lines over a Unix socket.

One request object per line, one reply per request, in order. Version 1:

    request  {"v": 1, "id": <any JSON>, "cmd": "<command>", "args": {...}}
    reply    {"v": 1, "id": <same>, "ok": true,  "result": {...}}
             {"v": 1, "id": <same>, "ok": false, "error": {"code": "<code>", "message": "<text>"}}

Keeping the whole schema here (commands, their arguments, which ones change anything, limits)
means the daemon validates exactly what the CLI sends, and docs/api.md is written from one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .wire import ErrorCode

VERSION = 1
MAX_LINE_BYTES = 65536  # a longer request line is refused and the connection closed
MAX_CLIENTS = 32  # connections of read-only peers beyond this are refused (or an idle one closed)
MAX_CLIENTS_PER_UID = 8  # one read-only user may hold at most this many
RESERVED_FOR_ADMINS = 8  # further connections only root and the admin group may use
IDLE_TIMEOUT_S = 30.0  # a connection silent for this long is closed
BUSY_IDLE_TIMEOUT_S = 2.0  # ... and this long, when it holds a place another peer asks for
LISTEN_BACKLOG = 128
MAX_PENDING_REPLY_BYTES = 4 * 1024 * 1024  # a client that does not read its replies is dropped
TRY_MAX_S = 7 * 86400.0  # a trial longer than a week is a policy change: use policy.set


@dataclass(frozen=True)
class Arg:
    kind: type
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Command:
    name: str
    mutating: bool  # needs root or the admin group
    args: dict[str, Arg]
    doc: str


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("ping", False, {}, "liveness and versions"),
    Command("status", False, {}, "every GPU's state, the config in effect, the daemon's own cost"),
    Command("policy.list", False, {}, "policies available to `policy.set`"),
    Command("policy.show", False, {"name": Arg(str, True, "policy name (the daemon reads only its policy folders)")},
            "one policy, resolved"),
    Command("config.show", False, {"effective": Arg(bool, False, "every value with the file it came from")},
            "the config in effect"),
    Command("ledger", False, {"since": Arg(float, False, "wall time (Unix seconds) to report from; absent: all"),
                              "gpu": Arg(int, False, "GPU index; absent: every GPU"),
                              "job": Arg(str, False, "one job's report instead"),
                              "by": Arg(str, False, "\"job\": every job since `since`, instead of per GPU")},
            "energy used and saved per GPU from the stored ledger, priced (`govctl ledger`)"),
    Command("snapshot", False, {}, "a bug-report bundle: versions, driver, capabilities, config, decisions, log"),
    Command("policy.set", True, {"name": Arg(str, False, "policy name; or instead:"),
                                 "policy": Arg(dict, False, "a policy file's table, read by the client"),
                                 "source": Arg(str, False, "where the client read `policy` from"),
                                 "gpu": Arg(int, False, "GPU index; absent: every GPU")},
            "switch policy (bumpless)"),
    Command("policy.reset", True, {"gpu": Arg(int, False, "GPU index; absent: every GPU")},
            "drop a policy set at runtime (and any trial): back to the config's policy"),
    Command("job.start", True, {"id": Arg(str, True, "the scheduler's job id (used once)"),
                                "gpus": Arg(list, True, "GPU indexes the job runs on"),
                                "policy": Arg(str, False, "policy name for its GPUs while it runs; absent: the node's"),
                                "user": Arg(str, False, "who runs it, for the ledger")},
            "a job starts on some GPUs: its own policy there, its own line in the ledger"),
    Command("job.end", True, {"id": Arg(str, True, "the job id given to job.start")},
            "a job ends: its GPUs go back to the node's policy, its ledger line is closed"),
    Command("pause", True, {"gpu": Arg(int, False, "GPU index; absent: every GPU")},
            "hand the GPU back to its original settings and stop steering it"),
    Command("resume", True, {"gpu": Arg(int, False, "GPU index; absent: every GPU")}, "steer a paused GPU again"),
    Command("reload", True, {}, "reload config and policies (as SIGHUP); a bad config is refused"),
    Command("try", True, {"name": Arg(str, False, "policy name; or instead:"),
                          "policy": Arg(dict, False, "a policy file's table, read by the client"),
                          "source": Arg(str, False, "where the client read `policy` from"),
                          "seconds": Arg(float, True, f"how long (at most {TRY_MAX_S:g} s), then back to the "
                                                      "previous policy"),
                          "gpu": Arg(int, False, "GPU index; absent: every GPU")},
            "run a policy for a while, then return to the previous one by itself"),
)}


class ProtocolError(Exception):
    """A request that cannot be served, with its ErrorCode (docs/api.md lists them)."""

    def __init__(self, code: ErrorCode, message: str):
        self.code = ErrorCode(code)
        super().__init__(message)


def parse_request(line: bytes) -> tuple[Any, Command, dict]:
    """Validate one request line; returns (id, command, args) or raises ProtocolError."""
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"request is not valid JSON: {exc}") from None
    if not isinstance(req, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "request must be a JSON object")
    if req.get("v", VERSION) != VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION,
                            f"protocol version {req.get('v')!r} not supported; this daemon speaks {VERSION}")
    cmd = req.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "request needs \"cmd\": a string")
    if cmd not in COMMANDS:
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}")
    command = COMMANDS[cmd]
    args = req.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "\"args\" must be an object")
    for key, value in args.items():
        spec = command.args.get(key)
        if spec is None:
            raise ProtocolError(ErrorCode.BAD_ARGS, f"{cmd}: unknown argument {key!r}; allowed: "
                                            f"{', '.join(command.args) or 'none'}")
        ok = isinstance(value, spec.kind) and not (spec.kind is not bool and isinstance(value, bool))
        if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ProtocolError(ErrorCode.BAD_ARGS, f"{cmd}: argument {key!r} must be {spec.kind.__name__}, got "
                                            f"{type(value).__name__}")
    for key, spec in command.args.items():
        if spec.required and key not in args:
            raise ProtocolError(ErrorCode.BAD_ARGS, f"{cmd}: missing argument {key!r} ({spec.doc})")
    return req.get("id"), command, args


def reply_ok(req_id: Any, result: Any) -> bytes:
    return (json.dumps({"v": VERSION, "id": req_id, "ok": True, "result": result}) + "\n").encode()


def reply_error(req_id: Any, code: ErrorCode, message: str) -> bytes:
    return (json.dumps({"v": VERSION, "id": req_id, "ok": False,
                        "error": {"code": code, "message": message}}) + "\n").encode()


def request(cmd: str, req_id: Any = 1, **args) -> bytes:
    return (json.dumps({"v": VERSION, "id": req_id, "cmd": cmd, "args": args}) + "\n").encode()


def commands_markdown() -> str:
    """The commands table of docs/api.md, from COMMANDS (tests check the doc holds exactly this)."""
    rows = ["| command | changes anything | arguments | what it does |", "|---|---|---|---|"]
    for c in COMMANDS.values():
        args = ", ".join(f"`{k}` ({a.kind.__name__}{', required' if a.required else ''}): {a.doc}"
                         for k, a in c.args.items()) or "none"
        rows.append(f"| `{c.name}` | {'yes' if c.mutating else 'no'} | {args} | {c.doc} |")
    return "\n".join(rows)
