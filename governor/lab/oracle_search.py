"""Oracles found by search on the simulator itself (evaluation only, never control).

An oracle is what the best possible settings achieve on a trace within a budget. Each candidate is
a plan, run on the simulated GPU from start to end with its settings applied the moment a phase
begins (switching is free: no control loop, no write-rate limit). Only runs that keep the budget
on what the policy bounds count (end time, and the mean request latency unless bound = "time"),
with no tolerance.

- `oracle_static`: a sweep of every supported clock (a fixed `nvidia-smi -lgc`) and a grid of
  power limits (`-pl`); the best run.
- `oracle_power`: the best plan of one power limit per phase name, by the coordinate search below,
  started from the best static power limit.
- `oracle`: the best of `oracle_static`, `oracle_power` and the coordinate search over one clock per
  phase name, started from the best static clock and from the steady-state model's plan.

The coordinate search works on each phase's setting as an index into its ordered options (the
supported clocks or the power grid, then "default"). With step sizes 16, 8, 4, 2, 1 it tries, for
each phase, a lower setting; if that breaks the bound, the same together with a higher setting for
one other phase (a trade of budget between phases); then a higher setting (racing to idle). A move
is kept when it lowers measured energy within the bound. It stops at a run cap. Runs are cached
by plan, so no plan runs twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..settings import Setpoint
from ..sim.gpu import STEP_S, SimGpu
from ..sim.spec import GpuSpec
from ..sim.trace import Trace
from .latency import RequestLatencies, latency_slowdowns, within_budget

POWER_GRID_STEPS = 24  # power limits from the GPU's minimum up to (not including) its default
MAX_SEARCH_RUNS = 160  # per coordinate search


@dataclass(frozen=True)
class PlanRun:
    """The truth of one planned run."""

    plan: tuple[Setpoint, ...]  # one setting per phase name (all equal for a static plan)
    energy_j: float
    seconds: float
    max_temp_c: float
    latencies: RequestLatencies | None


def phase_names(trace: Trace) -> list[str]:
    """The trace's phase names in order of first appearance: a plan has one setting per name."""
    return list(dict.fromkeys(p.name for p in trace.phases))


def run_plan(spec: GpuSpec, trace: Trace, plan: Sequence[Setpoint], max_factor: float = 20.0) -> PlanRun:
    """Run the trace to its end, applying plan[i] whenever a phase named names[i] is current."""
    names = {name: i for i, name in enumerate(phase_names(trace))}
    gpu = SimGpu(spec, trace)
    wl = gpu.workload
    current = None
    limit_s = trace.default_seconds * max_factor + 600.0
    while not wl.done:
        phase = wl.current_phase()
        if phase is not None and phase.name != current:
            current = phase.name
            setting = plan[names[current]]
            gpu.set_locked((setting.sm_clock_min_mhz or spec.f_min, setting.sm_clock_max_mhz or spec.f_max)
                           if setting.locks_clocks else None)
            gpu.set_power_limit(setting.power_limit_w or spec.power_limit_default_w)
        gpu.step(STEP_S)
        if gpu.t > limit_s:
            raise RuntimeError(f"{trace.name}: plan did not finish within {limit_s:.0f} simulated s")
    return PlanRun(plan=tuple(plan), energy_j=gpu.end_energy_j, seconds=gpu.end_time_s, max_temp_c=gpu.max_temp_c,
                   latencies=RequestLatencies.of(wl.requests))


class OracleSearch:
    """The oracles of one trace on one GPU model under one budget; every plan's run is cached."""

    def __init__(self, spec: GpuSpec, trace: Trace, budget: float, bound: str = "both",
                 progress: Callable[[str], None] | None = None):
        self.spec, self.trace, self.budget, self.bound = spec, trace, budget, bound
        self.names = phase_names(trace)
        self.cache: dict[tuple, PlanRun] = {}
        self.say = progress or (lambda what: None)
        self.reference = self.run((Setpoint(),) * len(self.names))
        lo, hi = spec.power_limit_min_w, spec.power_limit_default_w
        self.clock_options = [Setpoint(sm_clock_min_mhz=spec.f_min, sm_clock_max_mhz=f) for f in spec.sm_clocks_mhz]
        self.power_options = [Setpoint(power_limit_w=round(lo + (hi - lo) * k / POWER_GRID_STEPS, 1))
                              for k in range(POWER_GRID_STEPS)]

    @property
    def runs(self) -> int:
        return len(self.cache)

    def run(self, plan: Sequence[Setpoint]) -> PlanRun:
        key = tuple(plan)
        if key not in self.cache:
            self.cache[key] = run_plan(self.spec, self.trace, key)
        return self.cache[key]

    def keeps(self, r: PlanRun) -> bool:
        slowdown = r.seconds / self.reference.seconds - 1.0
        return within_budget(slowdown, latency_slowdowns(r.latencies, self.reference.latencies), self.budget,
                             self.bound)

    def _best(self, runs: Sequence[PlanRun]) -> PlanRun:
        ok = [r for r in runs if self.keeps(r)]
        return min(ok, key=lambda r: r.energy_j) if ok else self.reference

    def static(self) -> PlanRun:
        """The best fixed clock lock or power limit over the whole run."""
        self.say("oracle_static: every supported clock and a grid of power limits")
        return self.static_of(self.clock_options + self.power_options)

    def static_of(self, options: list[Setpoint]) -> PlanRun:
        n = len(self.names)
        return self._best([self.run((s,) * n) for s in options])

    def search(self, options: list[Setpoint], starts: Sequence[Sequence[Setpoint]]) -> PlanRun:
        """Coordinate search over one option per phase name (options ordered from lowest to highest;
        one more index means "default"), from the best of the starting plans that keeps the bound."""
        choices = options + [Setpoint()]
        top = len(choices) - 1
        index = {s: i for i, s in enumerate(choices)}
        start_runs = [self.run(tuple(p)) for p in starts if all(s in index for s in p)]
        best = self._best(start_runs)
        cur = [index.get(s, top) for s in best.plan]
        budget_runs = self.runs + MAX_SEARCH_RUNS

        def attempt(idx: list[int]) -> PlanRun | None:
            if self.runs >= budget_runs and tuple(choices[i] for i in idx) not in self.cache:
                return None
            return self.run(tuple(choices[i] for i in idx))

        for step in (16, 8, 4, 2, 1):
            improved = True
            while improved:
                improved = False
                for i in range(len(cur)):
                    for move in self._moves(cur, i, step, top):
                        r = attempt(move)
                        if r is not None and self.keeps(r) and r.energy_j < best.energy_j - 1e-9:
                            best, cur, improved = r, move, True
                            break
        return best

    @staticmethod
    def _moves(cur: list[int], i: int, step: int, top: int):
        """Candidate plans around cur for phase i: lower; lower with another phase higher; higher."""
        if cur[i] > 0:
            lower = list(cur)
            lower[i] = max(0, cur[i] - step)
            yield lower
            for j in range(len(cur)):
                if j != i and cur[j] < top:
                    trade = list(lower)
                    trade[j] = min(top, cur[j] + step)
                    yield trade
        if cur[i] < top:
            higher = list(cur)
            higher[i] = min(top, cur[i] + step)
            yield higher

    def oracles(self, model_plans: Sequence[Sequence[Setpoint]] = ()) -> dict[str, PlanRun]:
        """oracle_static, oracle_power and oracle (the best of all three searches)."""
        n = len(self.names)
        static = self.static()
        best_clock = self.static_of(self.clock_options)
        best_power = self.static_of(self.power_options)
        self.say("oracle_power: a power limit per phase (coordinate search)")
        power = self.search(self.power_options, [best_power.plan, (Setpoint(),) * n])
        self.say("oracle: a clock per phase (coordinate search)")
        clock = self.search(self.clock_options, [best_clock.plan, *model_plans, (Setpoint(),) * n])
        best = min((static, power, clock), key=lambda r: r.energy_j)
        return {"oracle": best, "oracle_static": static, "oracle_power": power}
