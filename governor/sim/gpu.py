"""One simulated GPU: silicon, firmware boost and NVML-like sensors, stepped in fixed time steps.

This is the "hardware". It knows the truth (work done, true energy, when the run ended); the
device face in sim/device.py shows only what NVML would, and the evaluation harness reads the
truth through `truth()`.

Firmware, as GPU Boost behaves (docs/simulator.md has the sources and what is assumed): run at the
highest allowed clock while kernels run (the locked max, or f_max), drop to the idle clock after a
second without kernels, and hold the power limit on its ~1 s average: each step spends at most
what the last second's window leaves under the limit, and the window's slack over the next 0.2 s,
so a load step boosts briefly and then settles at the limit, and no 1 s average exceeds it by more
than the one step the firmware cannot foresee (the cap beats a locked minimum, as on real GPUs).
It steps the clock down while the die is above its slowdown temperature. Clock changes take effect
after a settle time (~25 ms).
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from collections import deque
from dataclasses import dataclass

from ..telemetry import (
    REASON_GPU_IDLE,
    REASON_HW_THERMAL,
    REASON_SW_POWER_CAP,
    REASON_SW_THERMAL,
    REASON_USER_DEFINED_CLOCKS,
)
from . import physics
from .sensors import NvmlSensors
from .spec import GpuSpec
from .trace import Trace
from .workload import Workload

STEP_S = 0.025
FW_LIMIT_MARGIN = 0.01  # the power loop aims this far under the limit (it cannot foresee a load step)
GPM_SM_ACTIVE_SHARE = 0.97  # GPM SM activity over the busy share (a real H200: 0.96-0.99, docs/hardware.md)


class _Window:
    """Running mean over the last n values (sensor averaging windows)."""

    __slots__ = ("n", "values", "total")

    def __init__(self, n: int, fill: float = 0.0):
        self.n = max(1, n)
        self.values = deque([fill] * self.n, maxlen=self.n)
        self.total = fill * self.n

    def push(self, v: float) -> None:
        self.total += v - self.values[0]
        self.values.append(v)

    def mean(self) -> float:
        return self.total / self.n


@dataclass(frozen=True)
class Readings:
    """Raw sensor values, as NVML would return them at this instant."""

    gpu_util_pct: int
    mem_util_pct: int
    power_avg_w: float
    power_instant_w: float
    energy_mj: int
    temp_c: int
    sm_clock_mhz: int
    mem_clock_mhz: int
    reasons: int
    sm_activity_pct: float
    dram_bw_pct: float


class SimGpu:
    """f_def: the default clock of each played phase (None: found by default_clocks, so that under
    default settings every phase lasts its trace seconds)."""

    def __init__(self, spec: GpuSpec, trace: Trace | None, seed: int = 0, loop: bool = False,
                 f_def: list[float] | None = None):
        self.spec = spec
        self.trace = trace
        self.ambient_c = trace.ambient_c if trace else 30.0
        if trace is not None:
            clocks = f_def if f_def is not None else list(default_clocks(spec, trace))
            self.workload: Workload | None = Workload(trace.played(), clocks, loop=loop)
        else:
            self.workload = None
        self.rng = random.Random((trace.seed if trace else 0) * 1_000_003 + seed)
        self.t = 0.0
        # settings, as the driver holds them
        self.locked: tuple[int, int] | None = None
        self.power_limit_w = spec.power_limit_default_w
        # state
        self.temp_c = physics.steady_temp_c(spec, physics.power_w(spec, spec.f_min, 0, 0, self.ambient_c),
                                            self.ambient_c)
        self.clock = float(spec.f_min)
        self.pending: tuple[float, float] | None = None  # (target clock, time it takes effect)
        self.thermal_ceiling = float(spec.f_max)
        self.idle_s = 10.0
        self.reasons = REASON_GPU_IDLE
        self.power = physics.power_w(spec, self.clock, 0, 0, self.temp_c)
        self.energy_true_j = 0.0
        self.energy_since_reload_j = 0.0
        self.max_temp_c = self.temp_c
        self.end_time_s: float | None = None
        self.end_energy_j: float | None = None
        steps = lambda s: int(round(s / STEP_S))  # noqa: E731
        self.sensors = NvmlSensors(spec, self.rng, STEP_S, self.power)
        # the firmware's power loop: the true power of the last second, and the newest activity
        self._fw_window = _Window(steps(spec.power_avg_window_s), self.power)
        # what it expects of the next steps: the highest activity of the last second (kernels come
        # and go within a second; planning for the busiest keeps the average within the limit)
        self._fw_acts: deque[float] = deque([0.0], maxlen=steps(spec.power_avg_window_s))
        self._fw_drams: deque[float] = deque([0.0], maxlen=steps(spec.power_avg_window_s))
        self._fw_act = 0.0
        self._fw_dram = 0.0

    # ----- settings (what NVML writes) ---------------------------------------------------------
    def set_locked(self, lock: tuple[int, int] | None) -> None:
        self.locked = lock

    def set_power_limit(self, watts: float) -> None:
        self.power_limit_w = float(watts)

    def driver_reload(self) -> None:
        """A driver reload: settings back to defaults, energy counter from zero."""
        self.locked = None
        self.power_limit_w = self.spec.power_limit_default_w
        self.energy_since_reload_j = 0.0
        self.sensors.reset_counter()

    # ----- time --------------------------------------------------------------------------------
    def advance_to(self, t: float) -> None:
        while self.t + STEP_S <= t + 1e-9:
            self.step(STEP_S)

    def _fw_power_allowed_w(self, target_mhz: float) -> float:
        """Power the step that a clock chosen now will run in may draw (inf: no cap needed).

        A clock chosen now takes effect after the settle time, so the next step still runs at the
        clock under way. The choice must leave every coming 1 s window within the limit even if
        each later step drew only the floor clock's power: otherwise a boost now would force an
        overshoot a second later, when the window still holds the boost but no longer the idle
        time that paid for it."""
        spec, w = self.spec, self._fw_window
        limit = self.power_limit_w * (1.0 - FW_LIMIT_MARGIN)
        act, dram = self._fw_act, self._fw_dram
        due_next = self.pending is not None and self.pending[1] <= self.t + STEP_S
        p_next = 0.0 if due_next else physics.power_w(spec, self.clock, act, dram, self.temp_c)
        p_target = physics.power_w(spec, target_mhz, act, dram, self.temp_c)
        if max(p_target, p_next, max(w.values)) <= limit:
            return math.inf  # every step of every coming window is under the limit
        p_floor = physics.power_w(spec, spec.f_min, act, dram, self.temp_c)
        values = list(w.values)
        n = w.n
        lag = 1 if due_next else 2  # the chosen step is the next one, or the one after
        # windows ending j steps ahead (j = lag .. lag + n - 1) keep the window's newest n - j values
        best = math.inf
        suffix = 0.0
        suffixes = [0.0] * (n + 1)
        for i in range(n - 1, -1, -1):
            suffix += values[i]
            suffixes[i] = suffix
        for j in range(lag, lag + n):
            kept = suffixes[j] if j < n else 0.0
            later = j - lag  # steps after the chosen one in this window, each at least the floor's power
            best = min(best, n * limit - kept - (p_next if lag == 2 else 0.0) - later * p_floor)
        # and never plan a step above the limit itself: slack spent on a boost stays in the window
        # after the idle time that paid for it has left, and must be repaid a second later by a
        # clock crash (the window rings with its own period); overshoot comes only from what the
        # firmware cannot foresee, as on real GPUs
        return min(best, limit)

    def _firmware_clock(self) -> float:
        spec = self.spec
        lo, hi = (self.locked if self.locked else (spec.f_min, spec.f_max))
        reasons = 0
        if self.idle_s >= 1.0:
            target = float(lo)
            reasons |= REASON_GPU_IDLE
        else:
            target = float(hi)
            if self.locked and hi < spec.f_max:
                reasons |= REASON_USER_DEFINED_CLOCKS
        cap = physics.max_clock_under_cap(spec, self._fw_power_allowed_w(target), self._fw_act, self._fw_dram,
                                          self.temp_c, target)
        if cap < target:
            target = float(cap)
            reasons |= REASON_SW_POWER_CAP
            reasons &= ~REASON_USER_DEFINED_CLOCKS
        # thermal slowdown: ramp the ceiling down while hot, back up once cooled with hysteresis
        if self.temp_c >= spec.temp_slowdown_c:
            self.thermal_ceiling = max(spec.f_min, min(self.thermal_ceiling, self.clock)
                                       - spec.thermal_step_mhz_per_s * STEP_S)
        elif self.temp_c < spec.temp_slowdown_c - 3.0:
            self.thermal_ceiling = min(spec.f_max, self.thermal_ceiling + spec.thermal_step_mhz_per_s * STEP_S)
        if self.thermal_ceiling < target:
            target = self.thermal_ceiling
            reasons |= REASON_SW_THERMAL
            if self.temp_c >= spec.temp_shutdown_c - 2.0:
                reasons |= REASON_HW_THERMAL
        self.reasons = reasons
        # snap down to a supported clock
        clocks = spec.sm_clocks_mhz
        i = bisect.bisect_right(clocks, target + 1e-6) - 1
        return float(clocks[max(0, i)])

    def step(self, dt: float) -> None:
        """Advance the GPU by dt seconds (evaluation tools step it directly, without a clock)."""
        spec = self.spec
        if self.pending and self.t + 1e-9 >= self.pending[1]:
            self.clock = self.pending[0]
            self.pending = None
        wl = self.workload
        if wl is not None and not wl.done:
            act = wl.advance(dt, self.clock)
            util, activity, dram = act.util, act.activity, act.dram
        else:
            util = activity = dram = 0.0
        self.idle_s = self.idle_s + dt if util <= 0.0 else 0.0
        p = physics.power_w(spec, self.clock, activity, dram, self.temp_c)
        self.power = p
        self.temp_c += dt * (p - (self.temp_c - self.ambient_c) / spec.thermal_r_c_per_w) / spec.thermal_c_j_per_c
        self.max_temp_c = max(self.max_temp_c, self.temp_c)
        self.energy_true_j += p * dt
        self.energy_since_reload_j += p * dt
        self.t += dt
        if wl is not None and wl.done and self.end_time_s is None:
            # the run ended inside this step (at most one step, 25 ms, of error)
            self.end_time_s = self.t
            self.end_energy_j = self.energy_true_j
        # GPM SM activity counts SMs with warps resident, stalled on memory or not: a real H200 read
        # 98% for a copy loop and 96% for a bf16 matmul (docs/hardware.md), so it follows the busy share
        self.sensors.step(util, dram, util * GPM_SM_ACTIVE_SHARE, p)
        self._fw_window.push(p)
        self._fw_acts.append(activity)
        self._fw_drams.append(dram)
        self._fw_act, self._fw_dram = max(self._fw_acts), max(self._fw_drams)
        desired = self._firmware_clock()
        target = self.pending[0] if self.pending else self.clock
        if desired != target:
            # a new target while a change is under way retargets it, never restarts its settle time
            due = self.pending[1] if self.pending else self.t + spec.clock_settle_s - 1e-9
            self.pending = (desired, due)

    # ----- sensors -----------------------------------------------------------------------------
    def read(self) -> Readings:
        v = self.sensors.values()
        return Readings(
            gpu_util_pct=v.gpu_util_pct, mem_util_pct=v.mem_util_pct, power_avg_w=v.power_avg_w,
            power_instant_w=v.power_instant_w, energy_mj=v.energy_mj, temp_c=int(round(self.temp_c)),
            sm_clock_mhz=int(self.clock), mem_clock_mhz=self.spec.mem_clock_mhz, reasons=self.reasons,
            sm_activity_pct=v.sm_activity_pct, dram_bw_pct=v.dram_bw_pct,
        )

    # ----- ground truth (evaluation only) ------------------------------------------------------
    def truth(self) -> dict:
        wl = self.workload
        return {
            "time_s": self.t,
            "energy_j": self.energy_true_j,
            "work_done_s": wl.work_done if wl else 0.0,
            "work_total_s": wl.total_work if wl else 0.0,
            "done": bool(wl and wl.done),
            "end_time_s": self.end_time_s,
            "end_energy_j": self.end_energy_j,
            "max_temp_c": self.max_temp_c,
            "phase": (wl.current_phase().name if wl and wl.current_phase() else None),
        }


CALIBRATION_PASSES = 6
CALIBRATION_TOLERANCE = 0.001


@functools.lru_cache(maxsize=64)
def default_clocks(spec: GpuSpec, trace: Trace) -> tuple[float, ...]:
    """f_def of each played phase: the clock that makes the phase last its trace seconds under
    default settings, as trace-format.md defines a phase's seconds.

    Firmware holds the power limit on a ~1 s average, so a short hot phase after a cool one runs
    above its own steady clock, and a phase's effective clock depends on its neighbours. Starting
    from each phase's steady-state clock, the default run is replayed and each play's f_def set to
    the work-weighted harmonic mean of the clocks it actually ran at (the clock at which its work
    takes the time it took), until no f_def moves by more than 0.1%. Truth only: a pure function
    of the GPU model and the trace, cached because every run of a trace needs it."""
    phases = trace.played()
    steady = {p: physics.default_clock_mhz(spec, p.busy, p.intensity, p.dram, trace.ambient_c) for p in set(phases)}
    clocks = [float(steady[p]) for p in phases]
    for _ in range(CALIBRATION_PASSES):
        gpu = SimGpu(spec, trace, f_def=clocks)
        wl = gpu.workload
        limit_s = trace.default_seconds * 5 + 600.0
        while not wl.done and gpu.t < limit_s:
            gpu.step(STEP_S)
        moved = 0.0
        new = list(clocks)
        for i, p in enumerate(phases):
            work = p.seconds * p.busy
            if p.clock_bound > 0 and wl.work_per_clock[i] > 0:
                new[i] = work / wl.work_per_clock[i]
                moved = max(moved, abs(new[i] / clocks[i] - 1.0))
        clocks = new
        if moved < CALIBRATION_TOLERANCE:
            break
    return tuple(clocks)
