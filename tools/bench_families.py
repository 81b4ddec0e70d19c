#!/usr/bin/env python3
"""Generated workloads (gen:FAMILY:SEED): `balanced`, the oracles and the peers on N seeds per family,
and the distribution of what each saved, how much later it ended and how much slower its requests
were (worst, p10, median).

Seeds are drawn fresh on every run unless given, so nothing is tuned to fixed ones; the seeds used
are printed with the table, so any run can be repeated.

    python tools/bench_families.py --seeds 3                  # 3 fresh seeds per family, h100-sxm
    python tools/bench_families.py --seed-list 4,17,99 --gpu a100-sxm4 --json
    python tools/bench_families.py --seeds 3 --write          # refresh the table in docs/benchmarks.md

The oracles are searched at 3% of end time and of mean request latency (governor/lab/oracle_search.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_policies import measure_cell  # noqa: E402

from governor.sim.generate import FAMILIES, fresh_seeds  # noqa: E402

POLICIES = ("balanced", "batch", "max-savings", "oracle", "oracle_static", "ondemand", "geopm-activity", "zeus-pl")


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]


def markdown(rows: list[dict], seeds: list[int], gpu: str, drawn: bool = True) -> str:
    origin = "drawn for this run" if drawn else "given with --seed-list"
    out = [f"{gpu}, seeds {', '.join(map(str, seeds))} ({origin}), budget 3% of end time and of mean "
           "request latency; saved, end-time slowdown and mean request latency slowdown against the firmware "
           "default of the same trace.", "",
           "| family | policy | saved: worst / p10 / median | slowdown: worst / median | latency: worst / median "
           "| capture of `oracle`: worst / median |", "|---|---|---|---|---|---|"]
    for family in FAMILIES:
        for policy in POLICIES:
            cells = [r for r in rows if r["trace"].startswith(f"gen:{family}:") and r["policy"] == policy]
            if not cells:
                continue
            saved = [100 * r["saved"] for r in cells]
            slow = [100 * r["slowdown"] for r in cells]
            cap = [100 * r["capture"] for r in cells if r.get("capture") is not None]
            capture = f"{min(cap):.0f}% / {quantile(cap, 0.5):.0f}%" if cap else "-"
            lat = [100 * r["latency_slowdown"] for r in cells if r.get("latency_slowdown") is not None]
            latency = f"{max(lat):+.1f}% / {quantile(lat, 0.5):+.1f}%" if lat else "-"
            out.append(f"| {family} | {policy} | {min(saved):+.1f}% / {quantile(saved, 0.1):+.1f}% / "
                       f"{quantile(saved, 0.5):+.1f}% | {max(slow):+.2f}% / {quantile(slow, 0.5):+.2f}% | {latency} | "
                       f"{capture} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="fresh random seeds per family (default 3)")
    p.add_argument("--seed-list", help="these seeds instead, comma-separated")
    p.add_argument("--gpu", default="h100-sxm")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--write", action="store_true", help="refresh the table in docs/benchmarks.md in place")
    args = p.parse_args()
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else \
        fresh_seeds(args.seeds)
    traces = [f"gen:{f}:{s}" for f in args.families.split(",") for s in seeds]
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = [r for rows_ in ex.map(measure_cell, [args.gpu] * len(traces), traces) for r in rows_]
    text = markdown(rows, seeds, args.gpu, drawn=not args.seed_list)
    if args.write:
        from docsection import write_section  # noqa: PLC0415

        write_section("bench_families", text)
    print(json.dumps(rows, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
