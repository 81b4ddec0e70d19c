"""`govctl`: the operator's command line. This module holds the offline commands (simulate,
restore, policy list/show); commands that talk to a running daemon use the control socket."""

from __future__ import annotations

import argparse
import json
import sys

from .. import __version__
from ..errors import GovdError
from ..paths import resolve_paths
from ..policy import load_policy, policy_names
from ..sim.spec import BUILTIN
from ..sim.trace import builtin_traces
from ..simulate import simulate


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).rjust(w) if str(c)[:1] in "+-0123456789" else str(c).ljust(w)
                               for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def cmd_simulate(args, paths) -> int:
    result = simulate(args.gpu, args.trace, args.policy or ["balanced"], budget=args.budget,
                      config_dir=paths.config_dir, peers=args.peers)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['trace']} on {result['gpu']}" + (f", budget {result['budget']:.1%}" if result["budget"] else ""))
    rows = [[r["policy"], f"{r['energy_j'] / 1000:.2f} kJ", f"{r['seconds']:.2f} s", f"{r['saved']:+.1%}",
             f"{r['slowdown']:+.2%}", f"{r['max_temp_c']:.0f} C"] for r in result["runs"]]
    print(_table(rows, ["policy", "energy", "time", "saved", "slowdown", "max temp"]))
    return 0


def cmd_restore(args, paths) -> int:
    from .govd import do_restore  # noqa: PLC0415 - one implementation for both commands

    return do_restore(args, paths)


def cmd_policy(args, paths) -> int:
    if args.action == "list":
        names = policy_names(paths.config_dir)
        if args.json:
            print(json.dumps([load_policy(n, paths.config_dir).to_dict() for n in names], indent=2))
        else:
            rows = []
            for n in names:
                p = load_policy(n, paths.config_dir)
                rows.append([n, p.controller, p.description])
            print(_table(rows, ["policy", "controller", "description"]))
        return 0
    if not args.name:
        raise GovdError("govctl policy show needs a policy NAME")
    p = load_policy(args.name, paths.config_dir)
    print(json.dumps(p.to_dict(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="govctl", description="Inspect and steer govd; simulate policies offline.")
    p.add_argument("--root", help="talk to / act on a govd started with --root DIR")
    p.add_argument("--version", action="version", version=f"govctl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("simulate", help="run a trace under default settings and under policies; report savings")
    s.add_argument("--gpu", required=True, help=f"simulated GPU: {', '.join(BUILTIN)} or a spec .toml")
    s.add_argument("--trace", required=True, help=f"trace file or built-in: {', '.join(builtin_traces())}")
    s.add_argument("--policy", action="append", help="policy name or .toml path (repeat for several; default balanced)")
    s.add_argument("--budget", type=float, metavar="FRACTION", help="slowdown budget, e.g. 0.03")
    s.add_argument("--peers", action="store_true", help="also run the peers: ondemand, zeus-pl, geopm-activity")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_simulate)
    r = sub.add_parser("restore", help="offline: restore every GPU listed in originals.json (as govd --restore)")
    r.add_argument("--json", action="store_true")
    r.add_argument("--force", action="store_true")
    r.set_defaults(func=cmd_restore)
    pol = sub.add_parser("policy", help="list or show policies")
    pol.add_argument("action", choices=("list", "show"))
    pol.add_argument("name", nargs="?")
    pol.add_argument("--json", action="store_true")
    pol.set_defaults(func=cmd_policy)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        paths = resolve_paths(args.root)
        return args.func(args, paths)
    except GovdError as exc:
        print(f"govctl: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
