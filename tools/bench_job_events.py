#!/usr/bin/env python3
"""Generated `mixed` work with each segment run as a job: what a scheduler's job events (Slurm's
prolog and epilog, govd-k8s) are worth to a policy. Each gen:mixed:SEED trace is replayed twice
under the policy, once as it is and once with every segment after the first announced as a new
job at the tick its first phase begins (`GpuWorker.end_job`, then `start_job` without a policy of
its own, as a prolog would); both against the firmware default of the same trace.

The simulator's other benchmarks carry no job events; this is the one that measures them
(docs/decisions/027).

    python tools/bench_job_events.py --policies batch,balanced --seeds 3
    python tools/bench_job_events.py --seed-list 480411,647950 --gpus h100-sxm
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.lab.latency import within_budget  # noqa: E402
from governor.lab.simulate import DEFAULT_POLICY, run_trace  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.generate import fresh_seeds, mixed_segment_starts  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import load_trace  # noqa: E402

BOUND_MARGIN = 0.005  # a run keeps its budget within half a point (issue 19's targets)


@functools.lru_cache(maxsize=64)
def default_run(gpu: str, seed: int):
    """The firmware-default run of gen:mixed:SEED (each worker process keeps its own)."""
    return run_trace(load_spec(gpu), load_trace(f"gen:mixed:{seed}"), DEFAULT_POLICY)


def run_one(gpu: str, seed: int, policy_name: str, announce: bool) -> dict:
    """One run of gen:mixed:SEED under the policy, against default; announce: segments as jobs."""
    spec, trace = load_spec(gpu), load_trace(f"gen:mixed:{seed}")
    policy = load_policy(policy_name)
    starts = set(mixed_segment_starts(seed)[1:]) if announce else set()
    seen = {"index": 0, "jobs": 0}

    def on_tick(worker, device) -> None:
        index = device.gpu.workload.idx
        if index == seen["index"]:
            return
        seen["index"] = index
        if index in starts:
            if worker.job_id is not None:
                worker.end_job(policy)
            seen["jobs"] += 1
            worker.start_job(f"segment-{seen['jobs']}", None)

    ref = default_run(gpu, seed)
    run = run_trace(spec, trace, policy, on_tick=on_tick)
    return {"gpu": gpu, "seed": seed, "policy": policy_name, "announce": announce, "jobs": seen["jobs"],
            "saved": 1.0 - run.energy_j / ref.energy_j, "slowdown": run.slowdown(ref),
            "latency": run.latency_slowdowns(ref), "budget": float(policy.params.get("slowdown_budget", 0.0)),
            "bound": policy.params.get("bound", "both")}


def over(row: dict) -> bool:
    """Whether a run broke its policy's bound (end time, and request latency unless bound = "time"),
    with issue 19's half-point margin."""
    return not within_budget(row["slowdown"], row["latency"], row["budget"] + BOUND_MARGIN, row["bound"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", default="batch,balanced")
    p.add_argument("--gpus", default="h100-sxm,a100-sxm4")
    p.add_argument("--seeds", type=int, default=3, help="fresh random seeds (default 3)")
    p.add_argument("--seed-list", help="these seeds instead, comma-separated")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = p.parse_args()
    try:
        seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else fresh_seeds(args.seeds)
    except ValueError:
        p.error(f"--seed-list takes comma-separated integers, got {args.seed_list!r}")
    policies, gpus = args.policies.split(","), args.gpus.split(",")
    work = [(g, s, pol, a) for pol in policies for g in gpus for s in seeds for a in (False, True)]
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(run_one, *zip(*work, strict=True)))
    print(f"gen:mixed seeds {', '.join(map(str, seeds))}; each segment after the first announced as a job")
    print()
    print("| policy | GPU | jobs a run | mean saved, as is | with job events | bound broken, as is | with job events |")
    print("|---|---|---|---|---|---|---|")
    for pol in policies:
        for g in gpus:
            plain = [r for r in rows if r["policy"] == pol and r["gpu"] == g and not r["announce"]]
            jobs = [r for r in rows if r["policy"] == pol and r["gpu"] == g and r["announce"]]
            print(f"| {pol} | {g} | {statistics.mean(r['jobs'] for r in jobs):.1f} | "
                  f"{100 * statistics.mean(r['saved'] for r in plain):.2f}% | "
                  f"{100 * statistics.mean(r['saved'] for r in jobs):.2f}% | "
                  f"{sum(map(over, plain))}/{len(plain)} | {sum(map(over, jobs))}/{len(jobs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
