#!/usr/bin/env python3
"""Long runs: generated workloads played several times over, as a serving or training job runs for
hours where the suite and the generated traces run for minutes. Each (GPU, trace, policy) runs
against the firmware default of the same long trace; the table gives, per family and policy, the
mean saving, the worst end-time and request-latency slowdowns, the most setpoint reversals a minute
(flapping: the closed-loop tests allow 6 on the suite) and the runs beyond their budget (+0.5 point,
the issue's margin) on what the policy bounds.

A longer run meets more of a mix's windows, refreshes and bursts, so misses that a few minutes
rarely show come out (decision 036 came from one: requests 26% late over 23 minutes).

    python tools/bench_long.py --seeds 2                          # fresh seeds, played 3 times over
    python tools/bench_long.py --seed-list 531872,253428 --families bursty --repeat 3
    python tools/bench_long.py --seeds 2 --policies balanced --gpus h100-sxm --json
    python tools/bench_long.py --traces llm-serving,fast-phases --repeat 8 --gpus h100-sxm
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.errors import ConfigError, TraceError  # noqa: E402
from governor.lab.simulate import DEFAULT_POLICY, run_trace  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.generate import FAMILIES, fresh_seeds  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import load_trace  # noqa: E402

MARGIN = 0.005  # the half point beyond the budget


def long_trace(name: str, repeat: int):
    """The trace with its phases played `repeat` times as often."""
    trace = load_trace(name)
    return dataclasses.replace(trace, repeat=trace.repeat * repeat)


def measure(gpu: str, name: str, repeat: int, policies: tuple[str, ...]) -> list[dict]:
    """Every policy on one long trace, against the firmware default of the same trace."""
    spec, trace = load_spec(gpu), long_trace(name, repeat)
    ref = run_trace(spec, trace, DEFAULT_POLICY)
    rows = []
    for name_ in policies:
        policy = load_policy(name_)
        run = run_trace(spec, trace, policy)
        latency = run.latency_slowdowns(ref)
        budget = float(policy.params.get("slowdown_budget", 0.0))
        bound = str(policy.params.get("bound", "both"))
        rows.append({"gpu": gpu, "trace": name, "repeat": repeat, "policy": name_, "seconds": ref.seconds,
                     "saved": 1.0 - run.energy_j / ref.energy_j, "slowdown": run.slowdown(ref),
                     "latency_slowdown": latency[0] if latency else None,
                     "reversals_per_min": run.reversals / (run.seconds / 60.0),
                     "over": not run.keeps(ref, budget + MARGIN, bound)})
    return rows


def group(trace: str) -> str:
    """A generated trace's family; a named trace is its own group."""
    return trace.split(":")[1] if trace.startswith("gen:") else trace


def markdown(rows: list[dict], seeds: list[int], gpus: list[str], repeat: int, drawn: bool) -> str:
    origin = "drawn for this run" if drawn else "given with --seed-list"
    what = f"seeds {', '.join(map(str, seeds))} ({origin})" if seeds else "named traces"
    out = [f"{', '.join(gpus)}; {what}; each trace played "
           f"{repeat} times over; against the firmware default of the same long trace. Over: beyond the policy's "
           "budget + 0.5 point on what it bounds.", "",
           "| family or trace | policy | runs | saved, mean | end time, worst | latency, worst | reversals/min, worst "
           "| over |",
           "|---|---|---|---|---|---|---|---|"]
    for family in dict.fromkeys(group(r["trace"]) for r in rows):
        for policy in dict.fromkeys(r["policy"] for r in rows):
            cells = [r for r in rows if group(r["trace"]) == family and r["policy"] == policy]
            if not cells:
                continue
            lat = [r["latency_slowdown"] for r in cells if r["latency_slowdown"] is not None]
            over = [f"{r['gpu']} {r['trace']}" for r in cells if r["over"]]
            saved = statistics.mean(r["saved"] for r in cells)
            out.append(f"| {family} | {policy} | {len(cells)} | {100 * saved:.2f}% | "
                       f"{100 * max(r['slowdown'] for r in cells):+.2f}% | "
                       + (f"{100 * max(lat):+.2f}%" if lat else "-")
                       + f" | {max(r['reversals_per_min'] for r in cells):.1f} | {len(over)}"
                       + (f": {', '.join(over)}" if over else "") + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2, help="fresh random seeds per family (default 2)")
    p.add_argument("--seed-list", help="these seeds instead, comma-separated")
    p.add_argument("--repeat", type=int, default=3, help="times each trace is played over (default 3)")
    p.add_argument("--gpus", default="h100-sxm,a100-sxm4")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--traces", help="these named traces (the suite's, or a TOML path) instead of generated ones")
    p.add_argument("--policies", default="balanced,max-savings")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat {args.repeat}: a trace is played at least once (1 or more)")
    unknown = sorted(set(args.families.split(",")) - set(FAMILIES))
    if unknown:
        p.error(f"--families: unknown {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    seeds = [] if args.traces else [int(s) for s in args.seed_list.split(",")] if args.seed_list \
        else fresh_seeds(args.seeds)
    gpus, policies = args.gpus.split(","), tuple(args.policies.split(","))
    for name in policies:
        try:
            load_policy(name)  # an unknown policy is named before minutes of runs, not after
        except ConfigError as exc:
            p.error(str(exc))
    names = args.traces.split(",") if args.traces else [f"gen:{f}:{s}" for f in args.families.split(",") for s in seeds]
    for name in names:
        try:
            load_trace(name)  # an unknown trace is named before minutes of runs, not after
        except TraceError as exc:
            p.error(str(exc))
    cells = [(g, name) for name in names for g in gpus]
    with ProcessPoolExecutor(args.jobs) as ex:
        futures = [ex.submit(measure, g, t, args.repeat, policies) for g, t in cells]
        rows = [r for f in futures for r in f.result()]
    print(json.dumps(rows, indent=2) if args.json else markdown(rows, seeds, gpus, args.repeat, not args.seed_list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
