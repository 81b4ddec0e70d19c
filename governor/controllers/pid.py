"""`pid`: a PID loop on the SM clock ceiling, holding utilization, temperature or power at a target.

Modes (policy param `mode`):
- `util`: stretch work into idle gaps: lower the clock until the GPU is busy about `target` percent
  of the time, and jump to the maximum at once when it saturates (a saturated GPU hides how much
  work is waiting, so only a fast jump is safe);
- `temp`: hold the die at `target` degrees C;
- `power`: hold board power at `target` watts through the clock (not the power limit).

What makes it a real PID for a governor (thermald's and the cpufreq governors' lessons):
- integral with conditional integration: it integrates only within `integral_band` of the target
  and never further into a saturated output (anti-windup);
- derivative on the measurement, low-pass filtered, so a target change does not kick the output;
- output clamped to the GPU's clocks, with asymmetric rate limits (ramp up fast, down slowly);
- a deadband around the target in which the output holds;
- bumpless start: the integrator is preset to the clock the GPU runs at, and the rate limits pace
  every move from there.
"""

from __future__ import annotations

from ..config_keys import Key
from ..settings import Setpoint
from ..telemetry import Sample
from .base import NO_CONTEXT, Controller, TickContext


class PidController(Controller):
    name = "pid"
    PARAMS = {
        "mode": Key(str, "util", choices=("util", "temp", "power"), doc="what to hold at target"),
        "target": Key(float, 90.0, lo=0.0, hi=2000.0, doc="percent (util), degrees C (temp) or watts (power)"),
        "kp": Key(float, 8.0, lo=0.0, hi=1000.0, doc="MHz per unit of error"),
        "ki": Key(float, 4.0, lo=0.0, hi=1000.0, doc="MHz per unit of error per second"),
        "kd": Key(float, 0.0, lo=0.0, hi=1000.0, doc="MHz per unit of error rate (units per second)"),
        "d_filter_s": Key(float, 1.0, lo=0.0, hi=60.0, doc="time constant of the derivative's low-pass filter"),
        "deadband": Key(float, 2.0, lo=0.0, hi=100.0, doc="no change while the error is within this"),
        "integral_band": Key(float, 100.0, lo=0.0, hi=2000.0, doc="integrate only within this distance of target"),
        "up_mhz_per_s": Key(float, 3000.0, lo=1.0, hi=100000.0, doc="fastest rise of the clock ceiling"),
        "down_mhz_per_s": Key(float, 150.0, lo=1.0, hi=100000.0, doc="fastest fall of the clock ceiling"),
        "saturation_pct": Key(float, 98.0, lo=50.0, hi=100.0, doc="util mode: jump to max at this utilization"),
        "sm_clock_min_mhz": Key(int, None, lo=0, hi=10000, optional=True, doc="lowest clock the loop may choose"),
    }

    def __init__(self, params, limits):
        super().__init__(params, limits)
        p = self.params
        self.f_lo = float(max(limits.sm_clock_min_mhz, p["sm_clock_min_mhz"] or 0))
        self.f_hi = float(limits.sm_clock_max_mhz)
        self.output = self.f_hi
        self.integral = 0.0
        self.d_filtered = 0.0
        self.last_measure: float | None = None
        self.last_time: float | None = None
        self.error = 0.0

    def _measure(self, s: Sample) -> float:
        mode = self.params["mode"]
        if mode == "util":
            return s.gpu_util_pct
        if mode == "temp":
            return s.temp_c
        return s.power_now_w

    def _error(self, measure: float) -> float:
        """Positive error means: raise the clock."""
        target = self.params["target"]
        return measure - target if self.params["mode"] == "util" else target - measure

    def start(self, sample: Sample, current: Setpoint) -> None:
        # the loop's output is a clock ceiling: an unlocked GPU's ceiling is f_max, whatever clock it idles at
        ceiling = current.sm_clock_max_mhz if current.sm_clock_max_mhz is not None else self.f_hi
        self.output = min(self.f_hi, max(self.f_lo, float(ceiling)))
        m = self._measure(sample)
        self.error = self._error(m)
        # bumpless: the loop starts from where the GPU is; the rate limits pace any move from there
        self.integral = self.output
        self.last_measure, self.last_time, self.d_filtered = m, sample.time_s, 0.0

    def decide(self, sample: Sample, context: TickContext = NO_CONTEXT) -> Setpoint:
        p = self.params
        if self.last_time is None:
            self.start(sample, Setpoint())
        dt = max(1e-3, sample.time_s - self.last_time)
        m = self._measure(sample)
        err = self._error(m)
        if abs(err) <= p["deadband"]:
            err = 0.0
        self.error = err
        # derivative on the measurement, filtered; sign so that it opposes the error's growth
        sign = 1.0 if p["mode"] == "util" else -1.0
        raw_d = sign * (m - self.last_measure) / dt
        alpha = dt / (p["d_filter_s"] + dt) if p["d_filter_s"] > 0 else 1.0
        self.d_filtered += alpha * (raw_d - self.d_filtered)
        self.last_measure, self.last_time = m, sample.time_s

        if p["mode"] == "util" and sample.gpu_util_pct >= p["saturation_pct"]:
            self.output = self.f_hi  # saturated: jump up at once
            self.integral = self.f_hi - p["kp"] * err
            return self._setpoint()

        unclamped = self.integral + p["kp"] * err + p["kd"] * self.d_filtered
        saturated_hi = unclamped >= self.f_hi and err > 0
        saturated_lo = unclamped <= self.f_lo and err < 0
        if abs(err) <= p["integral_band"] and not (saturated_hi or saturated_lo):
            self.integral += p["ki"] * err * dt
        wanted = self.integral + p["kp"] * err + p["kd"] * self.d_filtered
        wanted = min(self.f_hi, max(self.f_lo, wanted))
        step_up, step_down = p["up_mhz_per_s"] * dt, p["down_mhz_per_s"] * dt
        self.output = min(self.output + step_up, max(self.output - step_down, wanted))
        return self._setpoint()

    def _setpoint(self) -> Setpoint:
        f = self.limits.snap_clock(self.output)
        if f >= self.limits.sm_clock_max_mhz:
            return Setpoint()
        return Setpoint(sm_clock_min_mhz=self.limits.sm_clock_min_mhz, sm_clock_max_mhz=f)

    def status(self) -> dict:
        return {"mode": self.params["mode"], "target": self.params["target"], "error": round(self.error, 3),
                "integral": round(self.integral, 2), "output_mhz": round(self.output, 1)}
