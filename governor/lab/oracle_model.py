"""The steady-state model's plan of one SM clock per phase: a starting point for the oracle search
(lab/oracle_search.py), never an oracle itself, because a steady-state model cannot see backlogs,
heating, firmware averaging or request latency.

Per distinct phase and supported clock, energy E_p(f) and time T_p(f) come from physics.py at the
phase's steady temperature; the phases' options are merged into one Pareto front of (total time,
total energy), and the least energy within the time budget is taken (tests check it against brute
force). A Lagrangian sweep would only find points on the front's convex hull.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sim import physics
from ..sim.spec import GpuSpec
from ..sim.trace import Phase, Trace


@dataclass(frozen=True)
class PhaseCurve:
    """Energy and time of one distinct phase (all its plays together) at each candidate setting."""

    phase: Phase
    plays: int
    clocks: np.ndarray  # effective SM clock at each candidate
    settings: list  # the clock locked (MHz)
    energy: np.ndarray
    time: np.ndarray


def _phase_at(spec: GpuSpec, p: Phase, f_def: float, f: float, ambient: float) -> tuple[float, float]:
    """(energy J, time s) of one play of phase p running at effective clock f, steady state."""
    s = p.kernel_stretch(f, f_def)
    kernel = p.seconds * p.busy * s
    t = kernel + p.seconds * (1.0 - p.busy) if p.slack == "serial" else max(p.seconds, kernel)
    util = kernel / t
    activity, dram = util * p.intensity, util * p.dram / s
    temp = ambient + 40.0
    for _ in range(3):
        power = physics.power_w(spec, f, activity, dram, temp)
        temp = min(physics.steady_temp_c(spec, power, ambient), spec.temp_slowdown_c)
    return physics.power_w(spec, f, activity, dram, temp) * t, t


def phase_curves(spec: GpuSpec, trace: Trace) -> list[PhaseCurve]:
    """Curves for each distinct phase over the supported clocks (locked clocks)."""
    curves = []
    plays: dict[Phase, int] = {}
    for p in trace.played():
        plays[p] = plays.get(p, 0) + 1
    for p, n in plays.items():
        f_def = physics.default_clock_mhz(spec, p.busy, p.intensity, p.dram, trace.ambient_c)
        clocks, settings, energy, time = [], [], [], []
        for lock in spec.sm_clocks_mhz:
            f = min(float(lock), f_def)  # above the default clock the firmware's cap decides
            e, t = _phase_at(spec, p, f_def, f, trace.ambient_c)
            settings.append(int(lock))
            clocks.append(float(lock))
            energy.append(e * n)
            time.append(t * n)
        curves.append(PhaseCurve(p, n, np.array(clocks), settings, np.array(energy), np.array(time)))
    return curves


def solve(curves: list[PhaseCurve], budget: float, same_for_all: bool = False) -> list[int]:
    """Index of the chosen setting per curve: least total energy with total time <= (1+budget) x default.

    Default time is each curve's time at its highest candidate clock (the default clock).
    """
    t_default = sum(c.time[-1] for c in curves)
    limit = (1.0 + budget) * t_default
    if same_for_all:
        # one clock for the run: enumerate the clocks every phase can take
        common = sorted(set.intersection(*(set(c.clocks.tolist()) for c in curves)))
        best, best_e = None, float("inf")
        for f in common:
            idx = [int(np.where(c.clocks == f)[0][0]) for c in curves]
            t = sum(c.time[i] for c, i in zip(curves, idx, strict=True))
            e = sum(c.energy[i] for c, i in zip(curves, idx, strict=True))
            if t <= limit * (1 + 1e-12) and e < best_e:
                best, best_e = idx, e
        return best if best is not None else [len(c.clocks) - 1 for c in curves]

    # exact: merge the phases' (time, energy) options into one Pareto front, phase by phase, keeping
    # only settings that no other combination beats on both time and energy
    front_t = np.array([0.0])
    front_e = np.array([0.0])
    choices: list[list[int]] = [[]]
    for c in curves:
        t = (front_t[:, None] + c.time[None, :]).ravel()
        e = (front_e[:, None] + c.energy[None, :]).ravel()
        order = np.lexsort((e, t))  # by time, then energy
        keep, best_e = [], float("inf")
        for k in order:
            if e[k] < best_e - 1e-12:
                keep.append(k)
                best_e = e[k]
        n = len(c.clocks)
        choices = [choices[k // n] + [int(k % n)] for k in keep]
        front_t, front_e = t[keep], e[keep]
    ok = np.where(front_t <= limit * (1 + 1e-12))[0]
    if not ok.size:
        return [len(c.clocks) - 1 for c in curves]
    return choices[int(ok[np.argmin(front_e[ok])])]
