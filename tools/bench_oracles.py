#!/usr/bin/env python3
"""Do the oracles hold up? For each trace and GPU: the searched oracles (governor/lab/oracle_search.py),
then an independent sweep of every supported clock and every power limit of the oracle's grid, each
run as a `static` policy through the daemon's own loop (worker, envelope, actuation). No fixed
setting may beat `oracle_static` by more than 0.3 point within the bound, `oracle` must be at least
`oracle_static`, and both must keep the bound. Also what the search cost: runs and CPU seconds.

    python tools/bench_oracles.py                        # suite + 1 fresh seed per family, h100/a100/h200
    python tools/bench_oracles.py --gpus h100-sxm --traces decode,gen:bursty:7 --json
    python tools/bench_oracles.py --write                # refresh the table in docs/benchmarks.md

Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.controllers.model_params import BOUNDS  # noqa: E402
from governor.lab.oracle_search import OracleSearch  # noqa: E402
from governor.lab.simulate import DEFAULT_POLICY, find_oracles, run_trace  # noqa: E402
from governor.policy import Policy  # noqa: E402
from governor.sim.generate import FAMILIES, fresh_seeds  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import builtin_traces, load_trace  # noqa: E402

BUDGET = 0.03
TOLERANCE = 0.003  # a fixed setting run through the daemon's loop may beat the oracle by this much


def measure(gpu: str, name: str, bound: str) -> dict:
    spec, trace = load_spec(gpu), load_trace(name)
    t0 = time.process_time()
    search = OracleSearch(spec, trace, BUDGET, bound)
    found = find_oracles(search)
    cost_s, runs = time.process_time() - t0, search.runs
    ref = run_trace(spec, trace, DEFAULT_POLICY)
    saved = {k: 1 - r.energy_j / search.reference.energy_j for k, r in found.items()}
    best_fixed, best_label = 0.0, "default"
    settings = [("lock", {"sm_clock_max_mhz": f}, f"{f} MHz") for f in spec.sm_clocks_mhz]
    settings += [("pl", {"power_limit_w": s.power_limit_w}, f"{s.power_limit_w:.0f} W") for s in search.power_options]
    for _, params, label in settings:
        run = run_trace(spec, trace, Policy(name="fixed", controller="static", params=params, source="sweep"))
        if run.keeps(ref, BUDGET, bound) and 1 - run.energy_j / ref.energy_j > best_fixed:
            best_fixed, best_label = 1 - run.energy_j / ref.energy_j, label
    keeps = all(search.keeps(r) for r in found.values())
    return {"gpu": gpu, "trace": name, "bound": bound, "oracle": saved["oracle"],
            "oracle_static": saved["oracle_static"], "oracle_power": saved["oracle_power"],
            "best_fixed": best_fixed, "best_fixed_setting": best_label, "within_bound": keeps,
            "search_runs": runs, "search_cpu_s": cost_s, "sweep_runs": len(settings),
            "ok": keeps and best_fixed <= saved["oracle_static"] + TOLERANCE
            and saved["oracle"] >= saved["oracle_static"] - 1e-12}


def markdown(rows: list[dict], seeds: list[int]) -> str:
    drawn = f"generated traces drawn with seeds {', '.join(map(str, seeds))} for this run" if seeds else \
        "the built-in suite"
    bound = {"both": "end time and mean request latency", "time": "end time"}[rows[0]["bound"] if rows else "both"]
    out = [f"Budget 3% of {bound}; {drawn}. `best fixed`: the best of every supported clock and "
           "every power limit of the grid, each run as a `static` policy through the daemon's loop.", "",
           "| GPU | trace | oracle | oracle_static | oracle_power | best fixed (setting) | ok | search runs / CPU s |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['gpu']} | {r['trace']} | {100 * r['oracle']:+.1f}% | {100 * r['oracle_static']:+.1f}% | "
                   f"{100 * r['oracle_power']:+.1f}% | {100 * r['best_fixed']:+.1f}% ({r['best_fixed_setting']}) | "
                   f"{'yes' if r['ok'] else 'NO'} | {r['search_runs']} / {r['search_cpu_s']:.1f} |")
    runs = sorted(r["search_cpu_s"] for r in rows)
    if runs:
        out += ["", f"Search cost per trace: median {runs[len(runs) // 2]:.1f} CPU s, worst {runs[-1]:.1f} CPU s "
                f"({sum(r['search_runs'] for r in rows) / len(rows):.0f} simulated runs on average)."]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", default="h100-sxm,a100-sxm4,h200")
    p.add_argument("--traces", help="comma-separated (default: the built-in suite and generated traces)")
    p.add_argument("--seeds", type=int, default=1, help="fresh generated seeds per family (default 1; 0: none)")
    p.add_argument("--append", action="store_true", help="with --write: add these rows to the table there")
    p.add_argument("--bound", choices=BOUNDS, default="both")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--write", action="store_true", help="refresh the table in docs/benchmarks.md in place")
    args = p.parse_args()
    seeds = fresh_seeds(args.seeds) if not args.traces else []
    if args.traces:
        traces = args.traces.split(",")
    else:
        traces = ([] if args.append else builtin_traces()) + [f"gen:{f}:{s}" for f in FAMILIES for s in seeds]
    cells = [(g, t, args.bound) for g in args.gpus.split(",") for t in traces]
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(measure, *zip(*cells, strict=True)))
    text = markdown(rows, seeds)
    if args.write:
        from docsection import write_section  # noqa: PLC0415

        if args.append:
            from docsection import read_section  # noqa: PLC0415

            text = read_section("bench_oracles").rstrip() + "\n\n" + text
        write_section("bench_oracles", text)
    print(json.dumps(rows, indent=2) if args.json else text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
