#!/usr/bin/env python3
"""Where a run's slowdown comes from, bin by bin of simulated time: how far its work lags the
firmware-default run of the same trace (end time's extra seconds so far), the share of the run's
mean request-latency slowdown carried by the requests that arrived in the bin, and the
controller's state and mean clock there.

A debugging aid for bound misses (docs/benchmarks.md, issue 19's tenth part): the controller reads
its budget as spent from its own model, and this shows what was really spent, and when. Below the
bins it splits the latency slowdown by where each request arrived: behind a backlog (the run had
more than `KEPT_MIN_S` of work queued beyond default's, while default had work queued too, so had
no idle time to work the extra off: what a burst's onset below default leaves), or not (its
kernels' stretch, and backlogs draining), and each by the controller's state. It reads
the simulator's ground truth (work done, request latencies), which govd itself never does. The lag
is end time's measure for work that waits on the GPU; where work arrives and the GPU idles between
requests, both runs do the same work at the same times and the lag swings about zero by up to a
tick or an idle stretch (the work is read where default first reached it).

    python tools/where_slow.py h100-sxm gen:bursty:910188 balanced --bin 20
    python tools/where_slow.py a100-sxm4 gen:bursty:531872 balanced --split-only
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.lab.simulate import DEFAULT_POLICY, run_trace  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import load_trace  # noqa: E402


@dataclass(frozen=True)
class Bin:
    """One bin of a run: [start_s, start_s + width)."""

    start_s: float
    lag_s: float  # at the bin's end: the run's time less the time default took to do the same work
    latency_share: float  # of the run's mean request-latency slowdown, from requests arriving here
    requests: int
    state: str  # the controller's most frequent state in the bin
    clock_mhz: float  # mean SM clock


KEPT_MIN_S = 0.005  # queued work (kernel seconds at default) that counts as a backlog


@dataclass(frozen=True)
class Split:
    """A run's mean request-latency slowdown (as a fraction), by what each request arrived behind,
    and by the controller's state at its arrival."""

    behind_backlog: dict[str, float]
    rest: dict[str, float]

    @property
    def backlog_total(self) -> float:
        return sum(self.behind_backlog.values())

    @property
    def rest_total(self) -> float:
        return sum(self.rest.values())


def split_latency(contrib: np.ndarray, run_backlog_s: np.ndarray, default_backlog_s: np.ndarray,
                  states: list[str]) -> Split:
    """Split each request's part of the mean slowdown (contrib) by the run's and default's queued
    work at its arrival, and its state then (all per request)."""
    behind: dict[str, float] = defaultdict(float)
    rest: dict[str, float] = defaultdict(float)
    kept = (default_backlog_s > KEPT_MIN_S) & (run_backlog_s - default_backlog_s > KEPT_MIN_S)
    for c, k, state in zip(contrib, kept, states, strict=True):
        (behind if k else rest)[state] += float(c)
    return Split(behind_backlog=dict(behind), rest=dict(rest))


def lag_s(time_s: float, work_done: float, default_time_s: np.ndarray, default_work: np.ndarray) -> float:
    """How much later than default this much work was done: the run's time less the time at which
    the default run had done as much (default's work is nondecreasing in its time)."""
    return time_s - float(np.interp(work_done, default_work, default_time_s))


def latency_parts(ratio: np.ndarray, work_s: np.ndarray) -> np.ndarray:
    """Each request's part of the work-weighted mean latency slowdown (sum(work * (ratio - 1)) /
    sum(work), RunResult.latency_slowdowns): the parts add up to the whole."""
    return work_s * (ratio - 1.0) / float(np.sum(work_s))


def latency_shares(arrival_s: np.ndarray, ratio: np.ndarray, work_s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each bin's part of the mean latency slowdown: the parts of the requests that arrived in it."""
    return np.bincount(bin_of(arrival_s, edges), weights=latency_parts(ratio, work_s), minlength=len(edges) - 1)


def bin_of(times_s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin [edges[i], edges[i + 1]) each time falls in (the last bin takes what lies past it)."""
    return np.clip(np.searchsorted(edges, times_s, side="right") - 1, 0, len(edges) - 2)


def _ticks(gpu: str, trace: str, policy) -> tuple[list[tuple[float, float, str, float, float]], np.ndarray, object]:
    """(time, work done, controller state, clock, queued work) per tick, the requests' arrival
    times, and the run."""
    ticks: list[tuple[float, float, str, float, float]] = []
    box = {}

    def on_tick(worker, device) -> None:
        truth = device.gpu.truth()
        queued_s = sum(item[1] for item in device.gpu.workload.backlog)
        ticks.append((truth["time_s"], truth["work_done_s"], str(getattr(worker.controller, "state", "-")),
                      device.gpu.clock, queued_s))
        box["requests"] = device.gpu.workload.requests

    run = run_trace(load_spec(gpu), load_trace(trace), policy, on_tick=on_tick)
    requests = box.get("requests")
    arrivals = np.asarray(requests.arrival_s, dtype=float) if requests is not None else np.zeros(0)
    return ticks, arrivals, run


def measure(gpu: str, trace: str, policy: str, bin_s: float) -> tuple[list[Bin], Split, object, object]:
    """The bins of one run under policy, against the firmware-default run; its latency split; and
    both runs."""
    ref_ticks, ref_arrivals, ref = _ticks(gpu, trace, DEFAULT_POLICY)
    ticks, arrivals, run = _ticks(gpu, trace, load_policy(policy))
    d_time = np.array([t[0] for t in ref_ticks])
    d_work = np.maximum.accumulate(np.array([t[1] for t in ref_ticks]))
    end = max(ticks[-1][0], float(arrivals.max()) if arrivals.size else 0.0)
    edges = np.arange(0.0, end + bin_s, bin_s)
    if len(edges) < 2:
        edges = np.array([0.0, bin_s])
    shares = np.zeros(len(edges) - 1)
    counts = np.zeros(len(edges) - 1, dtype=int)
    times = np.array([t[0] for t in ticks])
    split = Split(behind_backlog={}, rest={})
    if run.latencies is not None and ref.latencies is not None:
        ratio = run.latencies.latency_s / ref.latencies.latency_s
        shares = latency_shares(ref_arrivals, ratio, run.latencies.work_s, edges)
        counts = np.bincount(bin_of(ref_arrivals, edges), minlength=len(edges) - 1)
        at = np.clip(np.searchsorted(times, ref_arrivals), 0, len(ticks) - 1)
        at_default = np.clip(np.searchsorted(d_time, ref_arrivals), 0, len(ref_ticks) - 1)
        split = split_latency(latency_parts(ratio, run.latencies.work_s), np.array([ticks[i][4] for i in at]),
                              np.array([ref_ticks[i][4] for i in at_default]), [ticks[i][2] for i in at])
    bins = []
    for i, start in enumerate(edges[:-1]):
        lo, hi = np.searchsorted(times, start), np.searchsorted(times, start + bin_s)
        inside = ticks[lo:hi] or [ticks[min(lo, len(ticks) - 1)]]
        last = inside[-1]
        bins.append(Bin(start_s=float(start), lag_s=lag_s(last[0], last[1], d_time, d_work),
                        latency_share=float(shares[i]), requests=int(counts[i]),
                        state=Counter(t[2] for t in inside).most_common(1)[0][0],
                        clock_mhz=float(np.mean([t[3] for t in inside]))))
    return bins, split, run, ref


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gpu")
    p.add_argument("trace")
    p.add_argument("policy")
    p.add_argument("--bin", type=float, default=10.0, help="bin width, simulated seconds (default 10)")
    p.add_argument("--split-only", action="store_true", help="print only the first line and the latency split")
    args = p.parse_args()
    if args.bin <= 0:
        p.error(f"--bin must be a positive number of seconds, got {args.bin}")
    bins, split, run, ref = measure(args.gpu, args.trace, args.policy, args.bin)
    lat = run.latency_slowdowns(ref)
    saved = 1.0 - run.energy_j / ref.energy_j
    print(f"{args.gpu} {args.trace} {args.policy}: saved {100 * saved:.2f}%, end time {100 * run.slowdown(ref):+.2f}%, "
          f"mean request latency {'-' if lat is None else f'{100 * lat[0]:+.2f}%'}")
    if not args.split_only:
        print(f"{'from s':>7} {'lag s':>7} {'latency pts':>11} {'requests':>8}  state      clock")
        for b in bins:
            print(f"{b.start_s:7.0f} {b.lag_s:7.2f} {100 * b.latency_share:+11.2f} {b.requests:8d}  "
                  f"{b.state:<10} {b.clock_mhz:5.0f} MHz")
    if lat is not None:
        for name, part, total in (("behind a backlog default also had", split.behind_backlog, split.backlog_total),
                                  ("the rest", split.rest, split.rest_total)):
            states = ", ".join(f"{k} {100 * v:+.2f}" for k, v in sorted(part.items()))
            print(f"latency pts {name}: {100 * total:+.2f} ({states or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
