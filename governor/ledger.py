"""Energy accounting for one GPU: energy used (measured) and energy saved (estimated, with bounds).

Measured energy comes from NVML's total-energy counter, corrected for counter resets (a driver
reload starts it from zero) and, on GPUs without the counter, from integrating power readings.

Saved energy is a counterfactual: what the same work would have cost at default settings, minus
what it cost. The estimate is built only from samples:
- Control windows. Now and then (a small, randomized share of time, `control_share`) the GPU runs
  at default settings for `control_window_s`; any other time it is at default anyway (performance
  policy, a controller's reference measurement) counts too. In a settled window the ledger
  measures power P_def and the DRAM progress rate R_def (the same progress proxy as the model
  controller: DRAM traffic is part of the work, so it tracks work done at any clock).
- Between windows, energy per unit of progress at default, P_def / R_def, times the progress
  actually made, is the counterfactual energy; for work that arrives over time (R unchanged by the
  clock) this reduces to P_def x time. Where a phase moves too little DRAM data for the proxy, the
  counterfactual is P_def x time (the same time at default power: no slowdown credited).
- A shift in the readings at the same settings (a new phase) asks for a new window soon.
- A controller that measures each phase at default itself (the model controller) prices each
  sample instead, by the phase that sample belongs to (DefaultReference); work it cannot place
  (a change it has not measured yet) is counted at its measured energy: no saving claimed.
- At the thermal limit a short window at default cannot show what default would do (the firmware
  would throttle it to what the cooling removes at its slowdown temperature). There the default
  power comes from the GPU's cooling, learned from its own readings (cooling.py), and the work it
  would buy from the controller's phase model; without both, no saving is claimed.
- Uncertainty: the relative standard error of P_def / R_def over the window's readings, plus a
  floor for what the model cannot see (`model_error`), plus drift growing with the age of the
  window; summed linearly over the samples one measurement prices and in quadrature across
  measurements (Totals). Saved energy is reported with its interval; nothing is claimed outside it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from .cooling import CoolingModel
from .telemetry import DefaultReference, Sample


@dataclass
class EnergyMeter:
    """Energy since govd took the GPU, across counter resets; integrates power without a counter."""

    joules: float = 0.0
    resets: int = 0
    _last_mj: int | None = None
    _last_t: float | None = None
    _last_w: float | None = None

    def update(self, sample: Sample) -> tuple[float, bool]:
        """Add this sample's energy; returns (joules added, counter reset seen)."""
        added, reset = 0.0, False
        if sample.energy_mj is not None:
            if self._last_mj is not None:
                if sample.energy_mj >= self._last_mj:
                    added = (sample.energy_mj - self._last_mj) / 1000.0
                else:  # driver reload (or a wrap): the counter restarted from zero
                    added = sample.energy_mj / 1000.0
                    reset = True
                    self.resets += 1
            self._last_mj = sample.energy_mj
        elif self._last_t is not None and self._last_w is not None:
            added = 0.5 * (self._last_w + sample.power_w) * max(0.0, sample.time_s - self._last_t)
        self._last_t, self._last_w = sample.time_s, sample.power_w
        self.joules += added
        return added, reset


@dataclass
class CounterPower:
    """Fills in each sample's mean power since the previous counter change (Sample.power_counter_w).

    An instant power reading is one point of the interval that utilization and DRAM bandwidth
    describe; where phases change on a rhythm, such points are biased (on a simulated 2 s + 1 s
    training loop they missed 0.24% of the energy, a tenth of what govd saves there). The counter's
    difference is exact. A counter not yet updated since the last reading gives nothing (its update
    period need not divide the sampling period); a reset or a gap over `max_gap_s` starts anew."""

    max_gap_s: float = 1.0
    _t: float | None = None
    _mj: int | None = None

    def annotate(self, sample: Sample) -> Sample:
        e = sample.energy_mj
        if e is None:
            return sample
        t = sample.time_s
        if self._mj is None or self._t is None or e < self._mj or t - self._t > self.max_gap_s:
            self._t, self._mj = t, e
            return sample
        if e == self._mj or t <= self._t:
            return sample
        power = (e - self._mj) / 1000.0 / (t - self._t)
        self._t, self._mj = t, e
        return replace(sample, power_counter_w=power)


@dataclass
class Totals:
    """Energy sums over a stretch of time, with the counterfactual's uncertainty.

    Errors are shared by every sample priced by the same default-settings measurement (a reference
    5% off is 5% off for all of them), and independent between measurements. So the uncertainty is
    summed linearly within a reference and in quadrature across references. The last few
    references stay open (phases alternate, so one comes back); older ones are folded into the
    quadrature sum, which keeps the memory bounded for a daemon that runs for months."""

    measured_j: float = 0.0
    counterfactual_j: float = 0.0
    time_s: float = 0.0
    default_time_s: float = 0.0  # how long the same work would have taken at default
    _open_u: dict = field(default_factory=dict)  # reference key -> summed absolute uncertainty (J)
    _closed_sq: float = 0.0  # quadrature sum of folded references

    OPEN_REFERENCES: ClassVar[int] = 16

    def add(self, measured: float, cf: float, u_rel: float, dt: float, dt_default: float,
            key: Hashable = None) -> None:
        self.measured_j += measured
        self.counterfactual_j += cf
        self.time_s += dt
        self.default_time_s += dt_default
        # at most the whole counterfactual: a baseline below zero energy bounds nothing, and so capped
        # the interval grows no faster than the baseline (govd_baseline_energy_joules_total's lower
        # bound is a counter that never decreases)
        u = abs(cf) * min(u_rel, 1.0)
        if u > 0:
            self._open_u[key] = self._open_u.pop(key, 0.0) + u  # re-inserted: most recent last
            if len(self._open_u) > self.OPEN_REFERENCES:
                oldest = next(iter(self._open_u))
                self._closed_sq += self._open_u.pop(oldest) ** 2

    @property
    def saved_j(self) -> float:
        return self.counterfactual_j - self.measured_j

    def bounds(self) -> tuple[float, float]:
        """Saved energy interval: linear within a reference, quadrature across references."""
        half = math.sqrt(self._closed_sq + sum(u * u for u in self._open_u.values()))
        return self.saved_j - half, self.saved_j + half

    @property
    def slowdown(self) -> float:
        return self.time_s / self.default_time_s - 1.0 if self.default_time_s > 0 else 0.0

    def to_dict(self) -> dict:
        lo, hi = self.bounds()
        return {"measured_j": round(self.measured_j, 3), "counterfactual_j": round(self.counterfactual_j, 3),
                "saved_j": round(self.saved_j, 3), "saved_lo_j": round(lo, 3), "saved_hi_j": round(hi, 3),
                "slowdown": round(self.slowdown, 5)}


@dataclass
class _Reference:
    power_w: float
    progress: float
    rel_error: float
    taken_at: float
    util: float


@dataclass(frozen=True)
class ThermalLimit:
    """What the ledger needs to price work that default settings would do at the thermal limit.

    default_temp_c: where default settings would hold the GPU there (just under its slowdown
    temperature); work_ratio(sample, power_w): how much more work per second the GPU would do at
    default settings dissipating power_w than it does now (a controller's phase model), or None if
    unknown; at_limit: the GPU is at the limit now (govd's guard or the firmware holds it there).
    When it is not, default settings may still be: they run hotter, and the ledger follows how hot
    with the cooling it learned."""

    default_temp_c: float
    work_ratio: Callable[[Sample, float], float | None]
    at_limit: bool = True


@dataclass
class GpuLedger:
    cfg: Any  # the [ledger] config section (config.SECTION_TYPES['ledger'])
    seed: int = 0
    meter: EnergyMeter = field(default_factory=EnergyMeter)
    cooling: CoolingModel = field(default_factory=CoolingModel)
    since_start: Totals = field(default_factory=Totals)
    job: Totals | None = None  # the running job's totals on this GPU (govctl job start .. end)
    minute: Totals = field(default_factory=Totals)
    ref: _Reference | None = None
    window: list = field(default_factory=list)
    next_window_at: float = 0.0
    forcing_until: float | None = None
    _last_t: float | None = None
    _default_temp_c: float | None = None  # how warm the GPU would be at default settings (followed)
    _limit_temp_c: float | None = None  # where default settings would be held at the thermal limit
    _slow: float | None = None
    _fast: float | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.next_window_at = self._interval()  # no savings are claimed before the first window

    # ----- control windows ---------------------------------------------------------------------
    def _interval(self) -> float:
        share = self.cfg.control_share
        if share <= 0:
            return float("inf")
        mean = self.cfg.control_window_s / share
        return mean * self.rng.uniform(0.5, 1.5)

    def wants_default(self, now: float) -> bool:
        """True while the ledger needs the GPU at default settings for a control window. The worker
        does not ask when the controller measures each phase at default settings itself."""
        if self.forcing_until is not None:
            if now < self.forcing_until:
                return True
            self.forcing_until = None
        if now >= self.next_window_at and self.cfg.control_share > 0:
            self.forcing_until = now + self.cfg.control_window_s
            self.next_window_at = now + self._interval()
            return True
        return False

    def _close_window(self) -> None:
        w = self.window
        if len(w) >= 3:
            p = [s.power_now_w for s in w]
            r = [s.progress_pct for s in w]
            n = len(w)
            mean_p, mean_r = sum(p) / n, sum(r) / n
            e = [pi / ri for pi, ri in zip(p, r, strict=True) if ri > 0]
            if len(e) == n and mean_r >= self.cfg.min_progress_pct:
                mean_e = sum(e) / n
                var = sum((x - mean_e) ** 2 for x in e) / max(1, n - 1)
                rel = math.sqrt(var / n) / mean_e if mean_e > 0 else 1.0
            else:
                var = sum((x - mean_p) ** 2 for x in p) / max(1, n - 1)
                rel = math.sqrt(var / n) / mean_p if mean_p > 0 else 1.0
            self.ref = _Reference(power_w=mean_p, progress=mean_r, rel_error=rel, taken_at=w[-1].time_s,
                                  util=sum(s.gpu_util_pct for s in w) / n)
            self.next_window_at = max(self.next_window_at, w[-1].time_s + self._interval())
            self._slow = self._fast = None
        self.window = []

    # ----- per sample --------------------------------------------------------------------------
    def observe(self, sample: Sample, at_default: bool, settled: bool,
                reference: DefaultReference | None = None, thermal: ThermalLimit | None = None) -> bool:
        """Account one sample; returns True when the energy counter went backwards (a reset).

        at_default: the GPU holds default settings; settled: long enough to measure; reference: the
        controller's own default-settings measurement of this sample's phase (used instead of the
        ledger's windows when given; unknown: no saving is claimed for this sample); thermal: given
        when the GPU is at its thermal limit (govd's guard or the firmware holds it there)."""
        added, reset = self.meter.update(sample)
        if not reset:
            self.cooling.observe(sample.time_s, sample.temp_c, added)
        self._count(sample, added, at_default, settled, reference, thermal)
        return reset

    def _count(self, sample: Sample, added: float, at_default: bool, settled: bool,
               reference: DefaultReference | None, thermal: ThermalLimit | None) -> None:
        now = sample.time_s
        if thermal is not None:
            self._limit_temp_c = thermal.default_temp_c
        dt = 0.0 if self._last_t is None else max(0.0, now - self._last_t)
        self._last_t = now
        if at_default and settled:
            self.window.append(sample)
            if len(self.window) >= 3 and self.forcing_until is None:
                self._close_window()  # an unforced default stretch: keep the reference fresh
        elif self.window:
            self._close_window()
        if dt <= 0:
            return
        if thermal is not None and not at_default and thermal.at_limit:
            cf, dt_default = self._throttled_default(sample, added, dt, thermal)
            self._add_throttled(sample, added, cf, dt, dt_default)
            return
        if at_default and thermal is not None and not thermal.at_limit and self.default_at_limit():
            # default settings on a GPU govd kept cooler than default would have it by now: it boosts
            # where default, throttled at its limit, would not, and spends more on the same work (h100
            # hot-room: 7% more, which counted as no saving made the ledger claim 77% over). Priced as
            # the throttled default, never above what was measured (docs/decisions/023)
            cf_hot, dt_hot = self._throttled_default(sample, added, dt, thermal)
            if cf_hot < added:
                self._add_throttled(sample, added, cf_hot, dt, dt_hot)
                return
        if at_default or (reference is None and self.ref is None) or (reference is not None and not reference.known):
            # at default the counterfactual is what was measured; without a measurement of this
            # work at default there is no evidence of a saving, so none is claimed
            u = 0.0 if at_default else self.cfg.unpriced_error
            self._add(sample, added, added, u, dt, dt, "unpriced", added / dt)
            return
        if reference is not None:
            ref = _Reference(power_w=reference.power_w, progress=reference.progress, rel_error=reference.rel_error,
                             taken_at=now, util=0.0)
            key = ("controller", reference.source) if reference.source is not None else \
                ("controller", round(reference.power_w), round(reference.progress, 1))
        else:
            ref = self.ref
            key = ("window", ref.taken_at)
            if not self._same_work(sample, ref):
                # the window measured other work (a prefill, where this is a decode): it cannot price
                # this sample, and a new window is asked for soon; no saving is claimed meanwhile
                self._add(sample, added, added, self.cfg.unpriced_error, dt, dt, "unpriced", added / dt)
                self._watch_shift(sample, sample.progress_pct)
                return
        progress = sample.progress_pct
        # seconds at default that this second's work is worth (1 without a usable proxy). A reading
        # with no progress is worth nothing: the reference prices the mix's quiet moments in its
        # busy ones (a ratio of means), so pricing them again at full power would count them twice
        work_ratio = progress / ref.progress if ref.progress >= self.cfg.min_progress_pct else 1.0
        if reference is not None and reference.work_ratio is not None:
            work_ratio = reference.work_ratio
        cf = ref.power_w * dt * work_ratio
        age = max(0.0, now - ref.taken_at)
        u = ref.rel_error + self.cfg.model_error + self.cfg.drift_per_min * age / 60.0
        if thermal is not None and self.default_at_limit():
            # default would be throttled by now though govd keeps the GPU cooler: its power there is
            # what the cooling removes, if that is less than the (unthrottled) reference's
            cf_hot, dt_hot = self._throttled_default(sample, added, dt, thermal)
            if cf_hot < cf:
                self._add_throttled(sample, added, cf_hot, dt, dt_hot)
                if reference is None:
                    self._watch_shift(sample, progress)
                return
        self._add(sample, added, cf, u, dt, dt * work_ratio, key, ref.power_w)
        if reference is None:
            self._watch_shift(sample, progress)

    def _follow_default_temp(self, sample: Sample, power_w: float, dt: float) -> None:
        """Follow how warm default settings would have made the GPU: the learned cooling driven by
        the power default dissipates while doing this work, never cooler than the GPU is. Until the
        cooling is learned, the GPU's own temperature (so no throttling of default is assumed that
        was not seen)."""
        temp = None if self._default_temp_c is None else \
            self.cooling.advance(self._default_temp_c, power_w, dt)
        self._default_temp_c = sample.temp_c if temp is None else max(sample.temp_c, temp)

    def default_at_limit(self) -> bool:
        """Whether default settings would hold the GPU at its thermal limit now, though govd may keep
        it cooler: a phase's reference, measured unthrottled, would price its work too high there."""
        # held at the limit, default dissipates what the cooling removes there, which keeps the
        # followed temperature just at it: a tolerance, so it does not flap on rounding
        return self._default_temp_c is not None and self._limit_temp_c is not None \
            and self._default_temp_c >= self._limit_temp_c - 0.5

    def _add_throttled(self, sample: Sample, added: float, cf: float, dt: float, dt_default: float) -> None:
        """Account a sample priced as default throttled at the thermal limit (_throttled_default)."""
        self._add(sample, added, cf, self.cfg.thermal_error, dt, dt_default, "thermal", cf / dt_default)

    def _throttled_default(self, sample: Sample, added: float, dt: float,
                           thermal: ThermalLimit) -> tuple[float, float]:
        """What this sample's work would have cost at default settings, throttled at the thermal limit.

        Default settings would hold the GPU at about `thermal.default_temp_c`, dissipating what the
        cooling removes there (CoolingModel), and would do the work faster in proportion to the
        clock that power buys (the controller's phase model). Without either no saving is claimed.
        Where govd's GPU, kept cooler, runs faster than that clock, default would have taken longer
        at less power and the saving is negative: it is counted as such (claimed as zero, it had
        made the estimate err high by a fifth of a hot room's saving). Returns (energy J, seconds) at
        default for this sample's work."""
        power_default = self.cooling.steady_power_w(thermal.default_temp_c)
        if power_default is None:
            return added, dt
        ratio = thermal.work_ratio(sample, power_default)
        if ratio is None or ratio <= 0:
            return added, dt
        return power_default * dt / ratio, dt / ratio

    def _same_work(self, sample: Sample, ref: _Reference) -> bool:
        """Whether a sample at other settings does the kind of work a window at default measured:
        a lower clock never makes the GPU less busy, and moves DRAM progress by at most the slowdown
        (arriving work not at all)."""
        if sample.gpu_util_pct < ref.util - self.cfg.match_util_pct:
            return False
        floor = self.cfg.min_progress_pct
        progress = sample.progress_pct
        if ref.progress < floor:
            return progress < floor
        return abs(progress - ref.progress) <= self.cfg.match_progress * ref.progress

    def _watch_shift(self, sample: Sample, progress: float) -> None:
        """A lasting jump in the readings at unchanged settings means a new phase: measure soon."""
        if self._slow is None:
            self._slow = self._fast = progress
            return
        self._fast += 0.3 * (progress - self._fast)
        self._slow += 0.03 * (progress - self._slow)
        base = max(self._slow, self.cfg.min_progress_pct)
        if abs(self._fast - self._slow) / base > 0.5 and self.forcing_until is None:
            self.next_window_at = min(self.next_window_at, sample.time_s + self.cfg.control_window_s)
            self._slow = self._fast

    def _add(self, sample: Sample, measured: float, cf: float, u: float, dt: float, dt_default: float,
             key: Hashable, default_power_w: float) -> None:
        """Count one sample's measured and counterfactual energy, and follow how warm default
        settings would have made the GPU doing that work at default_power_w."""
        self.since_start.add(measured, cf, u, dt, dt_default, key)
        self.minute.add(measured, cf, u, dt, dt_default, key)
        if self.job is not None:
            self.job.add(measured, cf, u, dt, dt_default, key)
        self._follow_default_temp(sample, default_power_w, dt)

    def take_minute(self) -> Totals:
        """The totals since the last call (for the per-minute store), reset to zero."""
        done, self.minute = self.minute, Totals()
        return done
