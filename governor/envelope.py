"""The safety envelope: between every controller and every GPU, and it always wins.

It clamps setpoints to what the GPU supports and the policy allows, overrides the controller near
the slowdown temperature (with hysteresis), limits how often a GPU is written, and keeps an error
budget after which the GPU is handed back to its defaults and marked degraded. Nothing here knows
which controller is running.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .settings import DeviceSettings, Limits, Setpoint
from .telemetry import Sample


@dataclass(frozen=True)
class Ceiling:
    """Limits an operator set before govd took the GPU, which govd keeps: a power limit under the
    default, and a clock lock whose top is under the highest clock (NVML cannot read a lock, so on
    real GPUs only the power limit can be one)."""

    power_limit_w: float | None = None
    locked_clocks_mhz: tuple[int, int] | None = None

    @classmethod
    def of(cls, found: DeviceSettings, limits: Limits) -> Ceiling | None:
        watts = found.power_limit_w if found.power_limit_w < limits.power_limit_default_w - 0.5 else None
        lock = found.locked_clocks_mhz if found.clocks_known else None
        if lock is not None and lock[1] >= limits.sm_clock_max_mhz:
            lock = None
        return cls(watts, lock) if watts is not None or lock is not None else None

    def describe(self) -> str:
        parts = []
        if self.power_limit_w is not None:
            parts.append(f"{self.power_limit_w:g} W")
        if self.locked_clocks_mhz is not None:
            parts.append(f"SM clock {self.locked_clocks_mhz[1]} MHz (locked {self.locked_clocks_mhz[0]}-"
                         f"{self.locked_clocks_mhz[1]} MHz)")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"power_limit_w": self.power_limit_w,
                "locked_clocks_mhz": list(self.locked_clocks_mhz) if self.locked_clocks_mhz else None}


@dataclass(frozen=True)
class Decision:
    setpoint: Setpoint  # what the GPU should hold after this tick
    write: bool  # whether to write it now
    notes: tuple[str, ...] = ()
    safety: bool = False  # the thermal guard shaped it


@dataclass
class Envelope:
    limits: Limits
    cfg: Any  # the [envelope] config section (config.SECTION_TYPES['envelope'])
    bounds: dict[str, Any] = field(default_factory=dict)  # the policy's [bounds]
    ceiling: Ceiling | None = None  # the operator's limits found when govd took the GPU
    guard_engaged: bool = False
    guard_ceiling_mhz: int | None = None
    _guard_level_mhz: float = 0.0  # the ceiling before snapping to a supported clock (rises in small steps)
    _writes: deque = field(default_factory=deque)
    _errors: deque = field(default_factory=deque)
    last_write_s: float = float("-inf")
    _last_check_s: float | None = None
    last_error: str | None = None

    # ----- clamping ----------------------------------------------------------------------------
    def _floor_clock(self, mhz: float) -> int:
        clocks = self.limits.sm_clocks_mhz
        i = bisect.bisect_right(clocks, mhz) - 1
        return clocks[max(0, i)]

    def _ceil_clock(self, mhz: float) -> int:
        clocks = self.limits.sm_clocks_mhz
        i = bisect.bisect_left(clocks, mhz)
        return clocks[min(len(clocks) - 1, i)]

    @property
    def kept_ceiling(self) -> Ceiling | None:
        """The ceiling in force: None when there is none or the config says not to keep it."""
        return self.ceiling if self.cfg.respect_existing_limits else None

    @property
    def baseline(self) -> Setpoint:
        """What "change nothing" means on this GPU: the operator's own limits where govd keeps them,
        else the firmware default. A controller's default setpoint becomes this."""
        ceiling = self.kept_ceiling
        if ceiling is None:
            return Setpoint()
        lock = ceiling.locked_clocks_mhz
        return Setpoint(sm_clock_min_mhz=lock[0] if lock else None, sm_clock_max_mhz=lock[1] if lock else None,
                        power_limit_w=round(ceiling.power_limit_w, 3) if ceiling.power_limit_w is not None else None)

    def clamp(self, sp: Setpoint) -> Setpoint:
        """Supported clocks only, power limit in the GPU's range, the policy's bounds and the
        operator's ceiling."""
        lim, b, caps = self.limits, self.bounds, self.limits.capabilities
        ceiling = self.kept_ceiling
        top_lock = ceiling.locked_clocks_mhz if ceiling else None
        lock = None
        if caps.can_lock_clocks:
            lo, hi = sp.lock(lim) or top_lock or (lim.sm_clock_min_mhz, lim.sm_clock_max_mhz)
            if b.get("sm_clock_max_mhz") is not None:
                hi = min(hi, b["sm_clock_max_mhz"])
            if b.get("sm_clock_min_mhz") is not None:
                lo = max(lo, b["sm_clock_min_mhz"])
                hi = max(hi, b["sm_clock_min_mhz"])
            if top_lock is not None:
                hi = min(hi, top_lock[1])
                lo = min(lo, hi)
            if (lo, hi) != top_lock:  # the operator's own lock stands as it is (NVML takes off-grid locks)
                hi = self._floor_clock(hi)  # round toward the safe (lower) side
                lo = min(self._ceil_clock(lo), hi)
            if (lo, hi) != (lim.sm_clock_min_mhz, lim.sm_clock_max_mhz):
                lock = (lo, hi)
        watts = None
        if caps.can_set_power_limit:
            w = sp.power(lim)
            w_lo = max(lim.power_limit_min_w, b.get("power_limit_min_w") or 0.0)
            w_hi = min(lim.power_limit_max_w, b.get("power_limit_max_w") or float("inf"))
            if ceiling is not None and ceiling.power_limit_w is not None:
                w_hi = min(w_hi, ceiling.power_limit_w)
                w_lo = min(w_lo, w_hi)  # the operator's limit beats a policy's floor
            w = min(max(w, w_lo), max(w_lo, w_hi))
            if abs(w - lim.power_limit_default_w) > 1e-6:
                watts = round(w, 3)
        return Setpoint(sm_clock_min_mhz=lock[0] if lock else None, sm_clock_max_mhz=lock[1] if lock else None,
                        power_limit_w=watts)

    # ----- thermal guard -----------------------------------------------------------------------
    def _thermal(self, sample: Sample, sp: Setpoint, dt: float) -> tuple[Setpoint, str | None]:
        engage_c = self.limits.temp_slowdown_c - self.cfg.thermal_margin_c
        release_c = engage_c - self.cfg.thermal_hysteresis_c
        if not self.limits.capabilities.can_lock_clocks:
            return sp, None
        if sample.temp_c >= engage_c:
            if not self.guard_engaged:
                self.guard_engaged = True
                self.guard_ceiling_mhz = self._floor_clock(sample.sm_clock_mhz)
            else:
                # a rate, not a step per tick, so the guard acts the same at any control period
                step = self.cfg.thermal_step_mhz_per_s * dt
                self.guard_ceiling_mhz = self._floor_clock(
                    max(self.limits.sm_clock_min_mhz, self.guard_ceiling_mhz - step))
            self._guard_level_mhz = float(self.guard_ceiling_mhz)
        elif self.guard_engaged and sample.temp_c < release_c:
            # cooled down: give the clock back slowly, so the ceiling settles where the cooling keeps
            # up instead of jumping back to the controller's clock and heating up again (a sawtooth)
            self._guard_level_mhz += self.cfg.thermal_release_mhz_per_s * dt
            if self._guard_level_mhz >= self.limits.sm_clock_max_mhz:
                self.guard_engaged = False
                self.guard_ceiling_mhz = None
            else:
                self.guard_ceiling_mhz = self._floor_clock(self._guard_level_mhz)
        if not self.guard_engaged:
            return sp, None
        lo, hi = sp.lock(self.limits) or (self.limits.sm_clock_min_mhz, self.limits.sm_clock_max_mhz)
        hi = min(hi, self.guard_ceiling_mhz)
        note = f"thermal guard: {sample.temp_c:.0f} C (engages at {engage_c:.0f} C), SM clock ceiling {hi} MHz"
        return Setpoint(sm_clock_min_mhz=self.limits.sm_clock_min_mhz, sm_clock_max_mhz=hi,
                        power_limit_w=sp.power_limit_w), note

    # ----- the check ---------------------------------------------------------------------------
    def _rate_ok(self, now: float) -> bool:
        while self._writes and now - self._writes[0] > 60.0:
            self._writes.popleft()
        if len(self._writes) >= self.cfg.max_writes_per_minute:
            return False
        return now - self.last_write_s >= self.cfg.min_write_interval_ms / 1000.0

    def check(self, sample: Sample, proposed: Setpoint, current: Setpoint | None, now: float) -> Decision:
        """Shape the controller's proposal into what may be written now.

        current is what the GPU holds from govd's last write (None before the first write).
        """
        sp = self.clamp(proposed)
        dt = 0.0 if self._last_check_s is None else min(1.0, max(0.0, now - self._last_check_s))
        self._last_check_s = now
        sp, note = self._thermal(sample, sp, dt)
        safety = note is not None
        if safety:
            sp = self.clamp(sp)
        notes = (note,) if note else ()
        if current is None and sp == self.baseline:
            return Decision(sp, False, notes, safety)  # never touched, nothing to change
        if current is not None and sp == current:
            return Decision(sp, False, notes, safety)
        if not safety and not self._rate_ok(now):
            return Decision(current if current is not None else sp, False, (*notes, "rate limited"), safety)
        return Decision(sp, True, notes, safety)

    def record_write(self, now: float) -> None:
        self.last_write_s = now
        self._writes.append(now)

    def record_error(self, now: float, message: str) -> bool:
        """Count an error; True when the error budget is spent."""
        self.last_error = message
        self._errors.append(now)
        while self._errors and now - self._errors[0] > self.cfg.error_window_s:
            self._errors.popleft()
        return len(self._errors) >= self.cfg.error_budget

    def status(self) -> dict:
        return {"ceiling": self.ceiling.to_dict() if self.ceiling else None,
                "ceiling_kept": self.kept_ceiling is not None,
                "thermal_guard": self.guard_engaged, "guard_ceiling_mhz": self.guard_ceiling_mhz,
                "recent_errors": len(self._errors), "last_error": self.last_error,
                "writes_last_minute": len(self._writes)}
