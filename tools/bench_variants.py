#!/usr/bin/env python3
"""`balanced` on variants of the public trace suite, against the oracles: is it tuned to the suite?

Each trace of the suite is run in `--variants` variants (governor.sim.trace.variant_of: phase
lengths x0.8..1.25, busy share, DRAM traffic, switching intensity and clock-boundness x0.9..1.1,
room temperature -5..+5 C) on h100-sxm and a100-sxm4, under the firmware default, `balanced`,
`oracle_static` and `oracle` (budget 3% of end time and of mean request latency). Per trace: the
range over variants of what `balanced` saved, its largest end-time and latency slowdowns, its share
of `oracle_static`'s saving and its capture of `oracle`'s, and how many variants meet the issue's
targets (both slowdowns within budget + 0.5 points; >= 95% of `oracle_static`).

    python tools/bench_variants.py --variants 5            # markdown, as in docs/benchmarks.md
    python tools/bench_variants.py --variants 5 --write    # refresh docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.lab.simulate import DEFAULT_POLICY, oracle_runs, run_trace  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import load_trace, suite_traces, variant_of  # noqa: E402

GPUS = ["h100-sxm", "a100-sxm4"]
BUDGET = 0.03


def one(args: tuple[str, str, int]) -> dict:
    gpu, name, k = args
    spec = load_spec(gpu)
    trace = variant_of(load_trace(name), k)
    ref = run_trace(spec, trace, DEFAULT_POLICY)
    run = run_trace(spec, trace, load_policy("balanced"))
    oracles = oracle_runs(spec, trace, ref, BUDGET)

    def saved(r) -> float:
        return 1.0 - r.energy_j / ref.energy_j

    lat = run.latency_slowdowns(ref)
    return {"gpu": gpu, "trace": name, "variant": k, "saved": saved(run), "slowdown": run.seconds / ref.seconds - 1.0,
            "latency_slowdown": lat[0] if lat else None,
            "oracle_static": saved(oracles["oracle_static"]), "oracle": saved(oracles["oracle"])}


def _within(r: dict) -> bool:
    lat = r["latency_slowdown"]
    return r["slowdown"] <= BUDGET + 0.005 and (lat is None or lat <= BUDGET + 0.005)


def _share(x: float, of: float) -> float | None:
    return x / of if of > 0.005 else None


def _span(xs: list, fmt: str) -> str:
    xs = [x for x in xs if x is not None]
    return f"{format(min(xs), fmt)} .. {format(max(xs), fmt)}" if xs else "-"


def markdown(rows: list[dict], variants: int) -> str:
    out = ["| GPU | trace | `balanced` saved | largest slowdown | largest latency slowdown | share of "
           "`oracle_static` | capture of `oracle` | within budget | >= 95% of `oracle_static` |",
           "|---|---|---|---|---|---|---|---|---|"]
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["gpu"], r["trace"]), []).append(r)
    for (gpu, name), rs in cells.items():
        static = [_share(r["saved"], r["oracle_static"]) for r in rs]
        capture = [_share(r["saved"], r["oracle"]) for r in rs]
        lats = [r["latency_slowdown"] for r in rs if r["latency_slowdown"] is not None]
        latency = f"{100 * max(lats):+.1f}%" if lats else "-"
        out.append(f"| {gpu} | {name} | {_span([100 * r['saved'] for r in rs], '.1f')}% | "
                   f"{100 * max(r['slowdown'] for r in rs):+.2f}% | {latency} | "
                   f"{_span([None if s is None else 100 * s for s in static], '.0f')}% | "
                   f"{_span([None if c is None else 100 * c for c in capture], '.0f')}% | "
                   f"{sum(_within(r) for r in rs)}/{len(rs)} | "
                   f"{sum(s is None or s >= 0.95 for s in static)}/{len(rs)} |")
    n = len(rows)
    static_met = sum(_share(r["saved"], r["oracle_static"]) is None or r["saved"] >= 0.95 * r["oracle_static"]
                     for r in rows)
    out += ["", f"All {n} runs ({variants} variants of each trace): both slowdowns within budget + 0.5 points "
            f"{sum(_within(r) for r in rows)}/{n}, >= 95% of `oracle_static` {static_met}/{n}."]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", type=int, default=5)
    p.add_argument("--traces", default=",".join(suite_traces()))
    p.add_argument("--gpus", default=",".join(GPUS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--write", action="store_true", help="refresh the table in docs/benchmarks.md in place")
    args = p.parse_args()
    work = [(g, t, k) for g in args.gpus.split(",") for t in args.traces.split(",")
            for k in range(1, args.variants + 1)]
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(one, work))
    text = markdown(rows, args.variants)
    if args.write:
        from docsection import write_section  # noqa: PLC0415 - a sibling in tools/

        write_section("bench_variants", text)
    print(json.dumps(rows, indent=1) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
