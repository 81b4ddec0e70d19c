"""`govctl`: the operator's command line.

Most commands talk to a running govd over its control socket (governor/protocol.py); `simulate`
and `restore` work offline, and `policy list|show` fall back to the files when no daemon runs.

Exit codes: 0 done; 1 the daemon refused or failed (the message says why); 2 bad command line;
3 govd is not running.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from pathlib import Path

from .. import __version__
from ..control_client import CommandFailed, NotRunning, call
from ..controllers.model_params import BOUNDS
from ..errors import GovdError
from ..paths import control_socket, resolve_paths
from ..policy import is_policy_path, load_policy, policy_from_dict, policy_names
from ..sim.generate import FAMILIES
from ..sim.spec import BUILTIN
from ..sim.trace import builtin_traces
from ..tomlfile import TomlFileError, read_toml
from ..wire import PauseResult, Status, from_wire
from .render import describe_jobs, describe_pause, render_status, table


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def cmd_simulate(args, paths) -> int:
    from ..lab.simulate import simulate  # noqa: PLC0415 - the lab loads only for this command

    if args.save is not None:
        from ..sim.generate import to_toml  # noqa: PLC0415
        from ..sim.trace import load_trace  # noqa: PLC0415

        try:
            args.save.write_text(to_toml(load_trace(args.trace)))
        except OSError as exc:
            raise GovdError(f"cannot write the trace to {args.save}: {exc.strerror or exc}") from None
        print(f"trace {args.trace} written to {args.save}", file=sys.stderr)
    progress = None
    if sys.stderr.isatty():  # a person waits at a terminal: say what runs (never in pipes or --json files)
        def progress(what: str) -> None:
            print(f"govctl simulate: running {what}...", file=sys.stderr, flush=True)
    # a simulation keeps its scratch state in a temporary directory; stopped by SIGTERM (a job
    # scheduler's or an operator's kill) it unwinds as on Ctrl-C, and leaves nothing in /tmp
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        result = simulate(args.gpu, args.trace, args.policy or ["balanced"], budget=args.budget,
                          config_dir=paths.config_dir, peers=args.peers, plot=args.plot, progress=progress,
                          bound=args.bound)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    bounds = {"both": "end time and request latency", "time": "end time only"}
    print(f"{result['trace']} on {result['gpu']}"
          + (f", oracles at budget {result['budget']:.1%} on {bounds[result['bound']]}" if result["budget"] else ""))

    def pct(x) -> str:
        return "-" if x is None else f"{x:+.2%}"

    rows = [[r["policy"], f"{r['energy_j'] / 1000:.2f} kJ", f"{r['seconds']:.2f} s", f"{r['saved']:+.1%}",
             pct(r["slowdown"]), pct(r["latency_slowdown"]), pct(r["latency_p99_slowdown"]),
             {True: "yes", False: "NO"}.get(r.get("within_budget"), "-"), f"{r['max_temp_c']:.0f} C",
             f"{r['capture']:.0%}" if r.get("capture") is not None else "-"] for r in result["runs"]]
    for kind in ("oracle", "oracle_static", "oracle_power"):
        if kind in result:
            o = result[kind]
            rows.append([kind, f"{o['energy_j'] / 1000:.2f} kJ", f"{o['seconds']:.2f} s", f"{o['saved']:+.1%}",
                         pct(o["slowdown"]), pct(o["latency_slowdown"]), pct(o["latency_p99_slowdown"]), "yes",
                         "", ""])
    print(table(rows, ["policy", "energy", "time", "saved", "slowdown", "latency", "p99 latency", "in budget",
                       "max temp", "capture"]))
    return 0


def cmd_restore(args, paths) -> int:
    from ..restore import do_restore  # noqa: PLC0415 - one implementation for both commands

    return do_restore(args, paths)


def _socket(args, paths) -> Path:
    if args.socket:
        return Path(args.socket)
    return control_socket(paths, explicit=args.root is not None)


def _gpu_args(args) -> dict:
    return {"gpu": args.gpu} if getattr(args, "gpu", None) is not None else {}


def policy_args(name: str) -> dict:
    """What a request carries for a policy: its name, or, for a file, the file's table, read here
    with the caller's own permissions (the daemon never opens a path for a client)."""
    if not is_policy_path(name):
        return {"name": name}
    path = Path(name)
    try:
        table = read_toml(path)
    except TomlFileError as exc:
        raise GovdError(f"{path}: {exc}") from None
    policy_from_dict(table, str(path))  # checked here too: the error names the file and key
    try:
        json.dumps(table)
    except (TypeError, ValueError):
        raise GovdError(f"{path}: holds values a policy cannot (dates or times)") from None
    return {"policy": table, "source": str(path.resolve())}


def cmd_policy(args, paths) -> int:
    sock = _socket(args, paths)
    if args.action == "set":
        if not args.name:
            raise GovdError("govctl policy set needs a policy NAME or a path to a .toml")
        result = call(sock, "policy.set", **policy_args(args.name), **_gpu_args(args))
        print(f"policy {result['policy']} on GPU {', '.join(map(str, result['gpus']))}")
        return 0
    if args.action == "reset":
        result = call(sock, "policy.reset", **_gpu_args(args))
        for gpu, name in result["gpus"].items():
            print(f"GPU {gpu}: back to the config's policy {name}")
        return 0
    if args.action == "show" and not args.name:
        raise GovdError("govctl policy show needs a policy NAME or a path to a .toml")
    if args.action == "show" and is_policy_path(args.name):  # a file: read here, never by the daemon
        policies = [load_policy(args.name, paths.config_dir).to_dict()]
    else:
        try:
            policies = call(sock, "policy.list") if args.action == "list" else \
                [call(sock, "policy.show", name=args.name)]
        except NotRunning:  # the files are enough to list and show
            names = policy_names(paths.config_dir) if args.action == "list" else [args.name]
            policies = [load_policy(n, paths.config_dir).to_dict() for n in names]
    if args.json or args.action == "show":
        print(json.dumps(policies if args.action == "list" else policies[0], indent=2))
    else:
        print(table([[p["name"], p["controller"], p["description"]] for p in policies],
                     ["policy", "controller", "description"]))
    return 0


def cmd_status(args, paths) -> int:
    st = call(_socket(args, paths), "status")
    print(json.dumps(st, indent=2) if args.json else render_status(from_wire(Status, st)))
    return 0


def cmd_watch(args, paths) -> int:
    n = 0
    try:
        while args.count is None or n < args.count:
            st = call(_socket(args, paths), "status")
            print("\x1b[H\x1b[2J" + render_status(from_wire(Status, st)), flush=True)
            n += 1
            if args.count is None or n < args.count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_pause_resume(args, paths) -> int:
    result = call(_socket(args, paths), args.command, **_gpu_args(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if args.command == "pause":
        lines = describe_pause(from_wire(PauseResult, result))
        print("\n".join(lines))
        return 1 if any("NOT back" in line for line in lines) else 0
    for gpu in result["resumed"]:
        print(f"GPU {gpu}: resumed; govd steers it again")
    return 0


def cmd_reload(args, paths) -> int:
    result = call(_socket(args, paths), "reload")
    print("reloaded: " + (", ".join(result["files"]) or "defaults only"))
    for gpu, name in (result.get("kept_runtime") or {}).items():
        print(f"GPU {gpu}: keeps policy {name}, set at runtime (`govctl policy reset --gpu {gpu}` follows the "
              "config again)")
    for gpu, what in (result.get("reverted") or {}).items():
        print(f"GPU {gpu}: back to the config's policy {what}")
    for warning in result.get("warnings") or []:
        print(f"warning: {warning}")
    return 0


def cmd_config(args, paths) -> int:
    result = call(_socket(args, paths), "config.show", effective=args.effective)
    if args.json or not args.effective:
        print(json.dumps(result, indent=2))
    else:
        print(table([[r["key"], json.dumps(r["value"]), r["source"]] for r in result["values"]],
                     ["key", "value", "from"]))
        for warning in result.get("warnings") or []:
            print(f"warning: {warning}")
    return 0


def parse_duration(text: str, option: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*", text)
    if not m:
        raise GovdError(f"{option} {text!r}: a duration like 90s, 15m, 2h, 7d or plain seconds")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]


def cmd_try(args, paths) -> int:
    seconds = parse_duration(args.duration, "--for")
    result = call(_socket(args, paths), "try", **policy_args(args.name), seconds=seconds, **_gpu_args(args))
    print(f"trying {result['policy']} on GPU {', '.join(map(str, result['gpus']))} for {seconds:g} s; "
          "then back to the previous policy")
    return 0


def cmd_ledger(args, paths) -> int:
    """The daemon serves the ledger (members of the govd group may not read the state folder);
    with no daemon running, the database is read directly."""
    since = time.time() - parse_duration(args.since, "--since") if args.since else 0.0
    jobs = args.job is not None or args.by == "job"
    extra = {"job": args.job} if args.job is not None else ({"by": "job"} if args.by == "job" else {})
    try:
        result = call(_socket(args, paths), "ledger", since=since, **_gpu_args(args), **extra)
    except NotRunning:
        from ..config import load_config  # noqa: PLC0415
        from ..jobs import job_report  # noqa: PLC0415
        from ..ledger_report import ledger_report  # noqa: PLC0415
        from ..pricing import Pricing  # noqa: PLC0415

        pricing = Pricing.from_config(load_config(paths.config_file, paths.conf_d).values["ledger"])
        db = paths.state_dir / "ledger.db"
        result = job_report(db, pricing, args.job, since) if jobs else ledger_report(db, pricing, since, args.gpu)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if jobs:
        print(describe_jobs(result))
        return 0
    head = f"since {time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}" if since else "all recorded"
    print(f"energy saved, {head} (interval in brackets)")
    print(table([[str(g["gpu"]), f"{g['measured_j'] / 3.6e6:.3f} kWh", f"{g['kwh']:.3f} kWh",
                   f"[{g['saved_lo_j'] / 3.6e6:.3f}, {g['saved_hi_j'] / 3.6e6:.3f}]",
                   f"{g['money']:.2f} {g['currency']}", f"{g['co2e_kg']:.2f} kg", f"{g['lifetime_saved_kwh']:.3f} kWh"]
                  for g in result["gpus"]],
                 ["GPU", "used", "saved", "interval", "money", "CO2e", "lifetime saved"]))
    return 0


def cmd_job(args, paths) -> int:
    sock = _socket(args, paths)
    if args.action == "start":
        if not args.gpus:
            raise GovdError("govctl job start needs --gpus, e.g. --gpus 0,1")
        try:
            gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
        except ValueError:
            raise GovdError(f"--gpus {args.gpus!r}: GPU indexes separated by commas, e.g. 0,1") from None
        extra = {k: v for k, v in (("policy", args.policy), ("user", args.user)) if v}
        result = call(sock, "job.start", id=args.id, gpus=gpus, **extra)
        print(f"job {result['job']} started on GPU {', '.join(map(str, result['gpus']))}"
              + (f" with policy {result['policy']}" if result["policy"] else " with the node's policy"))
        return 0
    result = call(sock, "job.end", id=args.id)
    print(json.dumps(result, indent=2) if args.json else describe_jobs(result))
    return 0


def cmd_snapshot(args, paths) -> int:
    bundle = call(_socket(args, paths), "snapshot")
    try:
        Path(args.file).write_text(json.dumps(bundle, indent=2) + "\n")
    except OSError as exc:
        raise GovdError(f"cannot write the snapshot to {args.file}: {exc.strerror or exc}; give a path you may "
                        "write") from None
    print(f"snapshot written to {args.file}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="govctl", description="Inspect and steer govd; simulate policies offline.")
    p.add_argument("--root", help="talk to / act on a govd started with --root DIR")
    p.add_argument("--socket", help="control socket path (default: RUNTIME_DIR/govd.sock)")
    p.add_argument("--version", action="version", version=f"govctl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("simulate", help="run a trace under default settings and under policies; report savings")
    s.add_argument("--gpu", required=True, help=f"simulated GPU: {', '.join(BUILTIN)} or a spec .toml")
    s.add_argument("--trace", required=True, help=f"trace file, built-in ({', '.join(builtin_traces())}) or "
                                                  f"generated: gen:FAMILY:SEED, FAMILY one of {', '.join(FAMILIES)}")
    s.add_argument("--policy", action="append", help="policy name or .toml path (repeat for several; default balanced)")
    s.add_argument("--budget", type=float, metavar="FRACTION", help="slowdown budget for the oracles, e.g. 0.03 "
                   "(default: the first policy's)")
    s.add_argument("--bound", choices=BOUNDS, help="what the oracles' budget bounds: end time and mean "
                   "request latency (both), or end time only (default: the first policy's)")
    s.add_argument("--peers", action="store_true", help="also run the peers: ondemand, zeus-pl, geopm-activity")
    s.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="draw SM clock, power, temperature and energy over time: default against the first policy")
    s.add_argument("--save", type=Path, metavar="FILE.toml",
                   help="also write the trace (a generated one: gen:FAMILY:SEED) to this file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_simulate)
    r = sub.add_parser("restore", help="offline: restore every GPU listed in originals.json (as govd --restore)")
    r.add_argument("--json", action="store_true")
    r.add_argument("--force", action="store_true")
    r.set_defaults(func=cmd_restore)
    pol = sub.add_parser("policy", help="list, show or set policies")
    pol.add_argument("action", choices=("list", "show", "set", "reset"),
                     help="reset: drop a policy set at runtime, back to the config's")
    pol.add_argument("name", nargs="?")
    pol.add_argument("--gpu", type=int, help="set, reset: only this GPU index")
    pol.add_argument("--json", action="store_true")
    pol.set_defaults(func=cmd_policy)
    st = sub.add_parser("status", help="what each GPU is doing, why, and from which config")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    w = sub.add_parser("watch", help="status, refreshed in place")
    w.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    w.add_argument("--count", type=int, help="stop after N refreshes")
    w.set_defaults(func=cmd_watch)
    for name, text in (("pause", "hand GPUs back to their original settings and stop steering them"),
                       ("resume", "steer paused GPUs again")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--gpu", type=int, help="only this GPU index")
        c.add_argument("--json", action="store_true")
        c.set_defaults(func=cmd_pause_resume)
    rl = sub.add_parser("reload", help="reload config and policies (a bad config is refused)")
    rl.set_defaults(func=cmd_reload)
    cf = sub.add_parser("config", help="show the config in effect")
    cf.add_argument("action", choices=("show",))
    cf.add_argument("--effective", action="store_true", help="every value with the file it came from")
    cf.add_argument("--json", action="store_true")
    cf.set_defaults(func=cmd_config)
    tr = sub.add_parser("try", help="run a policy for a while, then return to the previous one")
    tr.add_argument("name")
    tr.add_argument("--for", dest="duration", required=True, help="how long: 90s, 15m, 2h")
    tr.add_argument("--gpu", type=int, help="only this GPU index")
    tr.set_defaults(func=cmd_try)
    lg = sub.add_parser("ledger", help="energy used and saved, in kWh, money and CO2e (reads the ledger)")
    lg.add_argument("--since", help="only this recent: 90m, 24h, 7d")
    lg.add_argument("--gpu", type=int, help="only this GPU index")
    lg.add_argument("--job", help="one job's report (used, saved with its interval, money, CO2e per GPU)")
    lg.add_argument("--by", choices=("job",), help="job: every job since --since")
    lg.add_argument("--json", action="store_true")
    lg.set_defaults(func=cmd_ledger)
    jb = sub.add_parser("job", help="a scheduler's job: start it on GPUs with its policy, end it (admin only)")
    jb.add_argument("action", choices=("start", "end"))
    jb.add_argument("id", help="the scheduler's job id (SLURM_JOB_ID)")
    jb.add_argument("--gpus", help="start: GPU indexes, e.g. 0,1")
    jb.add_argument("--policy", help="start: policy for its GPUs while it runs (default: the node's)")
    jb.add_argument("--user", help="start: who runs it, for the ledger")
    jb.add_argument("--json", action="store_true")
    jb.set_defaults(func=cmd_job)
    sn = sub.add_parser("snapshot", help="write a bug-report bundle (versions, config, decisions, log)")
    sn.add_argument("file")
    sn.set_defaults(func=cmd_snapshot)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        paths = resolve_paths(args.root)
        return args.func(args, paths)
    except NotRunning as exc:
        print(f"govctl: {exc}", file=sys.stderr)
        return 3
    except CommandFailed as exc:
        print(f"govctl: {exc} [{exc.code}]", file=sys.stderr)
        return 1
    except GovdError as exc:
        print(f"govctl: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
