"""The replies of the control socket as types, shared by the daemon (which builds them) and govctl
(which reads and renders them): one schema on both sides of the wire, as LACT shares its schema
crate. The requests and their arguments are in protocol.py.

On the wire a reply is plain JSON (`to_wire`); `from_wire` rebuilds the typed reply, ignoring
fields it does not know (a newer daemon) and leaving out fields it does not get (an older one)
as their defaults. Parts that are free-form by nature (a controller's own state, a sample) stay
dicts inside the typed replies.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every error a request can get (docs/api.md)."""

    BAD_JSON = "bad_json"
    BAD_REQUEST = "bad_request"
    BAD_VERSION = "bad_version"
    UNKNOWN_COMMAND = "unknown_command"
    BAD_ARGS = "bad_args"
    FORBIDDEN = "forbidden"
    BAD_POLICY = "bad_policy"
    NO_SUCH_GPU = "no_such_gpu"
    RELOAD_REFUSED = "reload_refused"
    NO_LEDGER = "no_ledger"
    BAD_JOB = "bad_job"
    JOB_ID_USED = "job_id_used"  # a job id is used once; a scheduler retrying after a restart picks another
    BUSY = "busy"
    LINE_TOO_LONG = "line_too_long"
    IDLE_TIMEOUT = "idle_timeout"
    INTERNAL = "internal"



@dataclass(frozen=True)
class LedgerTotals:
    """Energy measured and saved against the counterfactual, with the saving's interval."""

    measured_j: float = 0.0
    counterfactual_j: float = 0.0
    saved_j: float = 0.0
    saved_lo_j: float = 0.0
    saved_hi_j: float = 0.0
    slowdown: float = 0.0
    kwh: float = 0.0  # of the saving, priced by the [ledger] keys
    money: float = 0.0
    currency: str = ""
    co2e_kg: float = 0.0


@dataclass(frozen=True)
class LifetimeTotals:
    saved_j: float = 0.0
    saved_lo_j: float = 0.0
    saved_hi_j: float = 0.0
    measured_j: float = 0.0
    kwh: float = 0.0
    money: float = 0.0
    currency: str = ""
    co2e_kg: float = 0.0


@dataclass(frozen=True)
class LedgerView:
    since_start: LedgerTotals = field(default_factory=LedgerTotals)
    lifetime: LifetimeTotals = field(default_factory=LifetimeTotals)


@dataclass(frozen=True)
class GpuStatus:
    index: int
    uuid: str
    name: str = ""
    pci_bus_id: str = ""
    backend: str = ""
    state: str = ""
    reason: str | None = None
    policy: str = ""
    controller: str = ""
    job: str | None = None  # the scheduler's job running on the GPU
    controller_state: dict = field(default_factory=dict)
    target: dict | None = None  # the envelope's latest decision (a Setpoint)
    applied: dict | None = None  # what govd last wrote and read back
    sample: dict | None = None
    clock_event_reasons: list[str] = field(default_factory=list)
    limits: dict = field(default_factory=dict)
    envelope: dict = field(default_factory=dict)
    loop: dict = field(default_factory=dict)
    energy_since_start_j: float = 0.0
    ledger: LedgerView = field(default_factory=LedgerView)
    cooling: dict | None = None
    originals: dict | None = None


@dataclass(frozen=True)
class DaemonInfo:
    version: str = ""
    pid: int = 0
    uptime_s: float = 0.0
    cpu_s: float = 0.0
    cpu_core_share: float = 0.0
    rss_mb: float = 0.0
    healthy: bool = True
    default_policy: str = ""


@dataclass(frozen=True)
class Status:
    daemon: DaemonInfo = field(default_factory=DaemonInfo)
    gpus: list[GpuStatus] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)
    config_warnings: list[str] = field(default_factory=list)
    runtime_policies: dict[str, int] = field(default_factory=dict)  # GPU index -> uid that set it
    other_writers: list[dict] = field(default_factory=list)
    trials: dict[str, dict] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PolicySetResult:
    gpus: list[int]
    policy: str
    until_s: float | None = None  # a trial's length


@dataclass(frozen=True)
class PauseResult:
    paused: dict[str, dict | None]  # GPU index -> what giving it back did (None: nothing to give back)


@dataclass(frozen=True)
class ResumeResult:
    resumed: list[int]


@dataclass(frozen=True)
class PolicyResetResult:
    gpus: dict[str, str]  # GPU index -> the config's policy it runs now


@dataclass(frozen=True)
class ReloadResult:
    files: list[str]
    kept_runtime: dict[str, str] = field(default_factory=dict)
    reverted: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def to_wire(reply: Any) -> Any:
    """A typed reply as plain JSON values (dict keys become strings, as JSON has them)."""
    if dataclasses.is_dataclass(reply) and not isinstance(reply, type):
        return {f.name: to_wire(getattr(reply, f.name)) for f in dataclasses.fields(reply)}
    if isinstance(reply, dict):
        return {str(k): to_wire(v) for k, v in reply.items()}
    if isinstance(reply, list | tuple):
        return [to_wire(v) for v in reply]
    return reply


def from_wire(cls: type, data: Any) -> Any:
    """Rebuild a typed reply from its JSON (see the module's docstring for what is tolerated)."""
    return _build(cls, data)


def _build(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner[0], data) if len(inner) == 1 else data
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_build(item, v) for v in data]
    if origin is dict:
        _, value = typing.get_args(tp)
        return {k: _build(value, v) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: _build(hints[k], v) for k, v in data.items() if k in known})
    return data
