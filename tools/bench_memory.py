#!/usr/bin/env python3
"""Learn once: how much sooner a recurring workload reaches its held plan when the model store
remembers it. Each trace runs twice under a policy (`balanced` unless --policy says) on one simulated
GPU with one in-memory store (governor/model_store.py), as govd runs the same job again after a
restart; the table gives, for each run, when the controller first held a phase, what it saved, and
both slowdowns.

    python tools/bench_memory.py                       # the public suite on h100-sxm
    python tools/bench_memory.py --gpu a100-sxm4 --trace decode --trace gen:serving:17
    python tools/bench_memory.py --gpu h200 --trace memory-copy --policy batch

The issue's target: the second run reaches its held plan at least 5 times sooner.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.lab.simulate import DEFAULT_POLICY, run_trace  # noqa: E402
from governor.model_store import ModelStore  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import builtin_traces, load_trace  # noqa: E402


def measure(args: tuple[str, str, str]) -> dict:
    gpu, name, policy = args
    spec, trace = load_spec(gpu), load_trace(name)
    store = ModelStore.open(None, "simulated", set())
    ref = run_trace(spec, trace, DEFAULT_POLICY)
    runs = []
    for _ in range(2):
        first: dict = {}

        def on_tick(w, d, first=first):
            if "t" not in first and w.controller.state == "hold":
                first["t"] = d.gpu.t
        r = run_trace(spec, trace, load_policy(policy), memory=store, on_tick=on_tick)
        lat = r.latency_slowdowns(ref)
        runs.append({"first_hold_s": first.get("t"), "saved": 1 - r.energy_j / ref.energy_j,
                     "slowdown": r.seconds / ref.seconds - 1, "latency_slowdown": lat[0] if lat else None})
    a, b = runs[0]["first_hold_s"], runs[1]["first_hold_s"]
    return {"gpu": gpu, "trace": name, "models": store.count(), "runs": runs,
            "sooner": a / b if a and b else None}


def markdown(rows: list[dict]) -> str:
    out = ["| GPU | trace | models kept | first hold: 1st run / 2nd run | sooner | saved: 1st / 2nd | "
           "slowdown: 1st / 2nd | latency: 1st / 2nd |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        one, two = r["runs"]

        def lat(x):
            return "-" if x["latency_slowdown"] is None else f"{100 * x['latency_slowdown']:+.2f}%"
        hold = " / ".join("-" if x["first_hold_s"] is None else f"{x['first_hold_s']:.1f} s" for x in r["runs"])
        sooner = "-" if r["sooner"] is None else f"{r['sooner']:.1f}x"
        out.append(f"| {r['gpu']} | {r['trace']} | {r['models']} | {hold} | {sooner} | "
                   f"{100 * one['saved']:+.1f}% / {100 * two['saved']:+.1f}% | "
                   f"{100 * one['slowdown']:+.2f}% / {100 * two['slowdown']:+.2f}% | {lat(one)} / {lat(two)} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", default="h100-sxm")
    p.add_argument("--trace", action="append", help="only this trace (repeatable; gen:FAMILY:SEED too)")
    p.add_argument("--policy", default="balanced", help="the policy both runs use (default balanced)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    names = args.trace or [t for t in builtin_traces() if t != "demo"]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(measure, [(args.gpu, n, args.policy) for n in names]))
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
