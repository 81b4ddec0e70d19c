"""The control API: what each command of the socket does, one handler per command.

The server (control_server.py) decides who may ask; this module decides what an answer is. Each
handler is registered for exactly one command of protocol.COMMANDS (a test checks both ways), and
returns a typed reply from wire.py, which govctl reads back with the same types.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .control_server import Peer
from .errors import ConfigError, GovdError
from .jobs import JobIdUsed, job_report
from .ledger_report import ledger_report, ledger_view
from .policy import POLICY_NAME, Policy, load_policy, policy_from_dict, policy_names
from .pricing import Pricing
from .protocol import COMMANDS, TRY_MAX_S, Command, ProtocolError
from .wire import (
    DaemonInfo,
    ErrorCode,
    GpuStatus,
    PauseResult,
    PolicyResetResult,
    PolicySetResult,
    ReloadResult,
    ResumeResult,
    Status,
    from_wire,
    to_wire,
)

if TYPE_CHECKING:
    from .daemon import Daemon
    from .worker import GpuWorker

log = logging.getLogger("govd")

Handler = Callable[["ControlApi", dict, Peer], Any]
HANDLERS: dict[str, Handler] = {}


def handles(command: str) -> Callable[[Handler], Handler]:
    """Register the handler of one command (a second handler for it is a programming error)."""
    def register(fn: Handler) -> Handler:
        if command in HANDLERS:
            raise RuntimeError(f"two handlers for {command!r}")
        HANDLERS[command] = fn
        return fn
    return register


def resolve_policy(request: dict, config_dir: Path) -> Policy:
    """The policy a request names, or the policy file's table it carries (read by the client).

    The daemon reads only its own policy folders: a path is never opened on a client's behalf
    (a group member could otherwise read root-only files through it)."""
    try:
        if "policy" in request:
            if "name" in request:
                raise ProtocolError(ErrorCode.BAD_ARGS, "give a policy `name` or a `policy` table, not both")
            source = f"{request.get('source') or 'a policy table'} (sent by govctl)"
            return policy_from_dict(request["policy"], source)
        name = request.get("name")
        if name is None:
            raise ProtocolError(ErrorCode.BAD_ARGS, "needs a policy `name`, or a `policy` table read by the client")
        if not POLICY_NAME.fullmatch(name):
            raise ProtocolError(ErrorCode.BAD_POLICY,
                                f"{name[:80]!r} is not a policy name (letters, digits, '.', '_', '-'); govd reads "
                                "only its policy folders. Give govctl the path instead: it reads the file with "
                                "your permissions")
        return load_policy(name, config_dir, ("policy", ""))
    except (ConfigError, GovdError) as exc:
        raise ProtocolError(ErrorCode.BAD_POLICY, str(exc)) from None


class ControlApi:
    def __init__(self, daemon: Daemon):
        self.daemon = daemon

    def handle(self, command: Command, args: dict, peer: Peer) -> Any:
        handler = HANDLERS.get(command.name)
        if handler is None:  # COMMANDS and the handlers disagree: tests/test_control.py catches it
            raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"{command.name} is not handled")
        return to_wire(handler(self, args, peer))

    # ----- helpers -----------------------------------------------------------------------------
    def selected(self, args: dict) -> list[GpuWorker]:
        workers = self.daemon.workers
        if "gpu" not in args:
            return list(workers)
        chosen = [w for w in workers if w.info.index == args["gpu"]]
        if not chosen:
            raise ProtocolError(ErrorCode.NO_SUCH_GPU, f"no GPU with index {args['gpu']}; GPUs: "
                                                       f"{', '.join(str(w.info.index) for w in workers)}")
        return chosen

    def policy(self, args: dict) -> Policy:
        return resolve_policy(args, self.daemon.paths.config_dir)

    def runtime_rows(self) -> list[dict]:
        """What `policy.set` and `try` changed at runtime, as rows of `config show --effective`."""
        d = self.daemon
        rows = []
        for w in d.workers:
            i = w.info.index
            if i in d.trials:
                left = max(0.0, d.trials[i][0] - d.clock.now())
                rows.append({"key": f"gpu.{i}.policy", "value": w.policy.name,
                             "source": f"runtime (govctl try, {left:.0f} s left, then {d.trials[i][1].name})"})
            elif i in d.runtime_policies:
                rows.append({"key": f"gpu.{i}.policy", "value": w.policy.name,
                             "source": f"runtime (govctl policy set by uid {d.runtime_policies[i]['uid']}; "
                                       "`govctl policy reset` follows the config again)"})
        return rows

    def status(self) -> Status:
        import psutil  # noqa: PLC0415

        d = self.daemon
        proc = psutil.Process()
        cpu = proc.cpu_times()
        lifetime = d.store.lifetime() if d.store else {}
        pricing = Pricing.from_config(d.config.values["ledger"])
        uptime = max(1e-6, time.time() - d.started_wall)
        gpus = []
        for w in d.workers:
            view = ledger_view(w.ledger, lifetime.get(w.info.uuid), pricing, time.time())
            gpus.append(from_wire(GpuStatus, {**w.status(), "ledger": to_wire(view)}))
        return Status(
            daemon=DaemonInfo(version=__version__, pid=os.getpid(), uptime_s=round(uptime, 1),
                              cpu_s=round(cpu.user + cpu.system, 3),
                              cpu_core_share=round((cpu.user + cpu.system) / uptime, 5),
                              rss_mb=round(proc.memory_info().rss / 2**20, 1),
                              healthy=all(w.state != "degraded" for w in d.workers),
                              default_policy=d.options.policy or d.config.get("daemon", "policy")),
            gpus=gpus,
            config_files=list(d.config.files),
            config_warnings=list(d.config_warnings),
            runtime_policies={str(i): r["uid"] for i, r in d.runtime_policies.items()},
            other_writers=[{"gpu": w.info.index, "what": w.reason} for w in d.workers if w.state == "backed-off"],
            trials={str(i): {"until_s": round(end - d.clock.now(), 1), "then": p.name}
                    for i, (end, p) in d.trials.items()},
            commands=sorted(COMMANDS),
        )


# ----- read commands ---------------------------------------------------------------------------
@handles("ping")
def _ping(api: ControlApi, args: dict, peer: Peer) -> dict:
    return {"govd": __version__, "protocol": 1, "pid": os.getpid()}


@handles("status")
def _status(api: ControlApi, args: dict, peer: Peer) -> Status:
    return api.status()


@handles("policy.list")
def _policy_list(api: ControlApi, args: dict, peer: Peer) -> list[dict]:
    config_dir = api.daemon.paths.config_dir
    return [load_policy(n, config_dir).to_dict() for n in policy_names(config_dir)]


@handles("policy.show")
def _policy_show(api: ControlApi, args: dict, peer: Peer) -> dict:
    return api.policy({"name": args["name"]}).to_dict()


@handles("config.show")
def _config_show(api: ControlApi, args: dict, peer: Peer) -> dict:
    config = api.daemon.config
    if args.get("effective"):
        return {"files": config.files, "values": config.effective() + api.runtime_rows(),
                "warnings": list(api.daemon.config_warnings)}
    return {"files": config.files, "values": config.values, "gpu": config.gpus}


@handles("ledger")
def _ledger(api: ControlApi, args: dict, peer: Peer) -> dict:
    d = api.daemon
    if d.store is None:
        raise ProtocolError(ErrorCode.NO_LEDGER, "the ledger is off (ledger.enabled = false)")
    since = args.get("since") or 0.0
    if not math.isfinite(since):
        raise ProtocolError(ErrorCode.BAD_ARGS, "ledger: since must be a finite wall time in seconds")
    if args.get("by") not in (None, "job"):
        raise ProtocolError(ErrorCode.BAD_ARGS, f"ledger: by must be \"job\", got {args['by']!r}")
    pricing = Pricing.from_config(d.config.values["ledger"])
    try:
        if args.get("job") is not None or args.get("by") == "job":
            return job_report(d.store.path, pricing, args.get("job"), since)
        return ledger_report(d.store.path, pricing, since, args.get("gpu"))
    except GovdError as exc:
        raise ProtocolError(ErrorCode.NO_LEDGER, str(exc)) from None


@handles("job.start")
def _job_start(api: ControlApi, args: dict, peer: Peer) -> dict:
    d = api.daemon
    gpus = args["gpus"]
    if not gpus or not all(isinstance(g, int) and not isinstance(g, bool) for g in gpus):
        raise ProtocolError(ErrorCode.BAD_ARGS, "job.start: gpus must be a non-empty list of GPU indexes")
    workers = [w for g in dict.fromkeys(gpus) for w in api.selected({"gpu": g})]
    policy = api.policy({"name": args["policy"]}) if args.get("policy") else None
    try:
        job = d.jobs.start(args["id"], workers, policy, args.get("user", ""))
    except JobIdUsed as exc:
        raise ProtocolError(ErrorCode.JOB_ID_USED, str(exc)) from None
    except GovdError as exc:
        raise ProtocolError(ErrorCode.BAD_JOB, str(exc)) from None
    log.info("job %s started by uid %d", job.job_id, peer.uid)
    return {"job": job.job_id, "gpus": job.gpus, "policy": job.policy or None}


@handles("job.end")
def _job_end(api: ControlApi, args: dict, peer: Peer) -> dict:
    d = api.daemon
    try:
        d.jobs.end(args["id"], d.workers, d.node_policy)
    except GovdError as exc:
        raise ProtocolError(ErrorCode.BAD_JOB, str(exc)) from None
    if d.store is None:
        return {"jobs": []}
    return job_report(d.store.path, Pricing.from_config(d.config.values["ledger"]), args["id"])


@handles("snapshot")
def _snapshot(api: ControlApi, args: dict, peer: Peer) -> dict:
    """A bug-report bundle: everything an engineer needs, nothing secret."""
    d = api.daemon
    return {
        "versions": {"govd": __version__, "python": platform.python_version(), "platform": platform.platform(),
                     "driver": d.options.driver_version},
        "status": to_wire(api.status()),
        "gpus": [{"info": w.info.__dict__, "limits": w.limits.to_dict(), "policy": w.policy.to_dict(),
                  "recent_decisions": list(w.decisions)} for w in d.workers],
        "config": d.config.effective(),
        "log": list(d.log_tail.lines),
    }


# ----- commands that change things -------------------------------------------------------------
def _set_policy(api: ControlApi, args: dict, peer: Peer, trial_s: float | None) -> PolicySetResult:
    d = api.daemon
    if trial_s is not None and not 0 < trial_s <= TRY_MAX_S:
        raise ProtocolError(ErrorCode.BAD_ARGS, f"try: seconds must be > 0 and at most {TRY_MAX_S:g} (a week; for "
                                                f"longer, use policy.set); got {trial_s!r}")
    policy = api.policy(args)
    request = {k: args[k] for k in ("name", "policy", "source") if k in args}
    changed = []
    for w in api.selected(args):
        if trial_s is not None:
            previous = d.trials.get(w.info.index, (0, w.policy))[1]
            d.trials[w.info.index] = (d.clock.now() + trial_s, previous)
        else:
            d.trials.pop(w.info.index, None)
            d.runtime_policies[w.info.index] = {"request": request, "uid": peer.uid}
        w.set_policy(policy)
        changed.append(w.info.index)
        log.info("GPU %d: policy now %s (by uid %d)", w.info.index, policy.name, peer.uid)
    return PolicySetResult(gpus=changed, policy=policy.name, until_s=trial_s)


@handles("policy.set")
def _policy_set(api: ControlApi, args: dict, peer: Peer) -> PolicySetResult:
    return _set_policy(api, args, peer, None)


@handles("try")
def _try(api: ControlApi, args: dict, peer: Peer) -> PolicySetResult:
    return _set_policy(api, args, peer, args["seconds"])


@handles("policy.reset")
def _policy_reset(api: ControlApi, args: dict, peer: Peer) -> PolicyResetResult:
    d = api.daemon
    cache: dict[str, Policy] = {}
    done = {}
    for w in api.selected(args):
        try:
            policy = d.policy_for(d.config, w.device, cache)
        except (ConfigError, GovdError) as exc:
            raise ProtocolError(ErrorCode.BAD_POLICY, str(exc)) from None
        d.runtime_policies.pop(w.info.index, None)
        d.trials.pop(w.info.index, None)
        if policy != w.policy:
            w.set_policy(policy)
        done[str(w.info.index)] = policy.name
        log.info("GPU %d: policy back to the config's %s (by uid %d)", w.info.index, policy.name, peer.uid)
    return PolicyResetResult(gpus=done)


@handles("pause")
def _pause(api: ControlApi, args: dict, peer: Peer) -> PauseResult:
    done = {}
    for w in api.selected(args):
        report = w.pause()
        done[str(w.info.index)] = report.to_dict() if report is not None else None
    return PauseResult(paused=done)


@handles("resume")
def _resume(api: ControlApi, args: dict, peer: Peer) -> ResumeResult:
    selected = api.selected(args)
    for w in selected:
        w.resume()
    return ResumeResult(resumed=[w.info.index for w in selected])


@handles("reload")
def _reload(api: ControlApi, args: dict, peer: Peer) -> ReloadResult:
    d = api.daemon
    if not d.reload():
        raise ProtocolError(ErrorCode.RELOAD_REFUSED, f"reload refused, the running config stays: "
                                                      f"{d.last_reload_error}")
    return ReloadResult(files=list(d.config.files), kept_runtime=d.last_reload_result.get("kept_runtime", {}),
                        reverted=d.last_reload_result.get("reverted", {}), warnings=list(d.config_warnings))
