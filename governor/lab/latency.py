"""Request latency of arriving work, as ../shared/trace-format.md defines it (evaluation only).

A run's `latency_slowdown` is the work-weighted mean, over every request of every arrival phase, of
its latency in the run over the same request's latency under default settings, minus 1;
`latency_p99_slowdown` is the work-weighted 99th percentile of that ratio, minus 1. Weighting the
percentile by work too keeps both figures about the same thing: the share of work delayed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sim.workload import Requests


@dataclass(frozen=True)
class RequestLatencies:
    """Latency of each request of a run, in arrival order, with its work (kernel time at default)."""

    latency_s: np.ndarray
    work_s: np.ndarray

    @classmethod
    def of(cls, requests: Requests) -> RequestLatencies | None:
        """None for a trace with no arrival phases (it has no latency)."""
        if not requests.arrival_s:
            return None
        done = np.asarray(requests.done_s, dtype=float)
        if np.isnan(done).any():
            raise ValueError("a run ended with requests still unserved")
        return cls(latency_s=done - np.asarray(requests.arrival_s, dtype=float),
                   work_s=np.asarray(requests.work_s, dtype=float))


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value at or below which a share q of the weight lies."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    k = int(np.searchsorted(cum, q * cum[-1] * (1 - 1e-12)))
    return float(values[order][min(k, len(values) - 1)])


def within_budget(slowdown: float, latency: tuple[float, float] | None, budget: float, bound: str) -> bool:
    """Whether a run keeps its budget on what its policy bounds: end time, and unless bound is
    "time", the mean request latency too (a trace without requests has none to keep)."""
    if slowdown > budget:
        return False
    return bound == "time" or latency is None or latency[0] <= budget


def latency_slowdowns(run: RequestLatencies | None, reference: RequestLatencies | None) -> tuple[float, float] | None:
    """(latency_slowdown, latency_p99_slowdown) of a run against the default run; None without requests."""
    if run is None or reference is None:
        return None
    if len(run.latency_s) != len(reference.latency_s):
        raise ValueError(f"runs of different traces: {len(run.latency_s)} and {len(reference.latency_s)} requests")
    ratio = run.latency_s / reference.latency_s
    mean = float(np.average(ratio, weights=run.work_s)) - 1.0
    return mean, weighted_quantile(ratio, run.work_s, 0.99) - 1.0
