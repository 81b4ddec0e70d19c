"""The `model` controller's counterfactual for the ledger: what each sample's work would have cost
at default settings, priced by the default-settings measurement (reference) of the phase the
sample belongs to, or unknown where no measured phase explains it.

The controller measures each phase at default settings anyway (its reference), so the ledger
needs no control windows of its own; this object is what it hands the ledger
(Controller.counterfactual). It reads the controller's phase models, never changes its plan.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..telemetry import UNKNOWN_REFERENCE, DefaultReference, Sample
from .model_state import State
from .phase_model import PhaseModel, Probe

if TYPE_CHECKING:
    from .model import ModelController


class ModelPricing:
    def __init__(self, controller: ModelController):
        self.c = controller
        self._pooled_cache: tuple | None = None

    def throttled_work_ratio(self, sample: Sample, power_w: float) -> float | None:
        return self.c.throttled_work_ratio(sample, power_w)

    def reference(self, sample: Sample) -> DefaultReference:
        """The default-settings measurement of the phase this sample belongs to, for the ledger.

        The ledger asks before decide() has seen the sample, and right after a phase change the
        held phase's reference would price the new phase's work wrongly (an input stall priced as
        compute by its DRAM traffic), so the sample is matched against every known phase at its own
        clock; work no phase explains is unknown and no saving is claimed for it. A mix of phases
        too fast to tell apart is priced by the mean of all its default-settings windows: single
        windows catch the mix at different points of its cycle, the mean converges."""
        if self.c.composite:
            return self._mix_reference(sample)
        obs = self.c._last_obs(sample)
        best = self.c._match(obs, None, self.c.params["ledger_match_tolerance"])
        if best is None:
            return self._probe_reference(sample, obs)
        ratio = None
        if sample.dram_bw_pct is None and best.has_proxy:
            # NVML's memory utilization is an integer: at 33% it cannot show a 2% slowdown, which the
            # model, fitted over probes far apart, predicts better than a rounded reading shows it
            ratio = 1.0 / (1.0 + max(0.0, best.slowdown(obs.clock_mhz)))
        power, slower = self._default_under_cap(best, best.ref.power + self._warm_excess_w(best, obs))
        return DefaultReference(power_w=power, progress=best.ref.progress / slower,
                                work_ratio=None if ratio is None else ratio * slower,
                                source=("phase", id(best), best.ref.clock_mhz, best.ref.power))

    def _default_under_cap(self, m: PhaseModel, power_w: float) -> tuple[float, float]:
        """What default settings would draw, and how much longer their work would take than at the
        reference clock, once the GPU has warmed past the reference: the firmware holds the board
        within its default power limit, so where the warm excess would lift the reference over it
        default runs a clock step or two lower instead (docs/decisions/003). The limit is never
        below the reference's own measured power: a 1 s average can read over it, and that
        reading is what default did."""
        cap = max(self.c.limits.power_limit_default_w, m.ref.power)
        if power_w <= cap:
            return power_w, 1.0
        offset = power_w - m.power(m.ref.clock_mhz)
        f = m.highest_clock_within(self.c._clocks_up_to(m), cap, offset)
        return m.power(f) + offset, m.wall_time(f) / m.wall_time(m.ref.clock_mhz)

    def _probe_reference(self, sample: Sample, obs: Probe) -> DefaultReference:
        """The phase being probed prices a probe's readings that its model cannot predict yet.

        A model fitted on one or two clocks extrapolates poorly, so the first probes of a phase match
        nothing and their saving went unclaimed (on a 2 minute training job, an eighth of it). A
        reading that obeys what the same work must show at a lower clock (as busy, progress no faster
        and slower at most by the clock ratio, no more power than at default) is priced by the phase's
        default-settings measurement and its measured progress: as the ledger prices its own windows.
        Only with GPM's fine-grained progress: integer memory utilization cannot show a probe's few
        percent of slowdown, and pricing its work at default's rate would claim a saving that is time."""
        m = self.c.current
        if self.c.state != State.PROBE or m is None or self.c.composite or self.c.use_power or not m.has_proxy \
                or sample.dram_bw_pct is None or obs.clock_mhz <= 0 or obs.clock_mhz > m.ref.clock_mhz \
                or obs.power > m.ref.power or not self.c._consistent(m.ref, obs):
            return UNKNOWN_REFERENCE
        return DefaultReference(power_w=m.ref.power, progress=m.ref.progress,
                                source=("probe", id(m), m.ref.clock_mhz, m.ref.power))

    def _warm_excess_w(self, m: PhaseModel, obs: Probe) -> float:
        """How many watts more the phase draws now than its model, fitted on a colder GPU, predicts.

        A reference taken on a cold GPU (the first minute of a job) underprices default settings
        once the GPU has warmed: leakage grows with temperature, and default settings would run at
        least as warm as govd does. The excess at the held clock is added to the reference: in
        watts, not as a ratio, since leakage is a larger share of a low clock's power (it is larger
        still at default's higher voltage, so this errs low). Only when the GPU is warmer than at the
        reference, and never negative, so a model's misfit on a cool GPU cannot inflate a saving."""
        if obs.temp_c - m.ref.temp_c < 2.0 or obs.clock_mhz <= 0:
            return 0.0
        m.warm_excess_w += 0.02 * (obs.power - m.power(obs.clock_mhz) - m.warm_excess_w)
        return max(0.0, min(0.2 * m.ref.power, m.warm_excess_w))

    def _mix_reference(self, sample: Sample) -> DefaultReference:
        """The pooled reference of the mix, with the work it does per second at this clock taken from
        the mix's model where NVML's integer memory utilization is the only progress reading.

        A mix's phases can read a point off in opposite directions, so the reference window and the
        held clock's readings round differently; the model's slowdown, fitted over windows at
        clocks far apart, prices the work once the mix has probes (docs/decisions/004)."""
        pooled = self._pooled_reference()
        m = self.c._mix_model
        f = sample.sm_clock_mhz
        if not pooled.known or sample.dram_bw_pct is not None or m is None or not m.has_proxy \
                or m.kind != "arrival" or self.c.state != State.HOLD or m is not self.c.current \
                or not m.probes or f < min(p.clock_mhz for p in m.probes):
            # a probe is what tests the model, and below its deepest probe the model extrapolates (two
            # windows a few percent apart fitted kernel time falling with the clock; a v100 mix probed
            # at 135 MHz, 2.4 times slower, was priced as on time): the readings price those
            return pooled
        ratio = 1.0 / (1.0 + max(0.0, m.delay(f)))
        return replace(pooled, work_ratio=ratio)

    def _pooled_reference(self) -> DefaultReference:
        # asked for at every tick, changed once per window: computed when the pool changes
        if self._pooled_cache is None or self._pooled_cache[0] != self.c._mix_version:
            self._pooled_cache = (self.c._mix_version, self._pool())
        return self._pooled_cache[1]

    def _pool(self) -> DefaultReference:
        w = self.c._mix_windows
        if not w:
            return UNKNOWN_REFERENCE
        n = len(w)
        p = np.array([o.power for o, _ in w])
        r = np.array([o.progress for o, _ in w])
        mean_p, mean_r = float(p.mean()), float(r.mean())
        # each window: what its own cycles show, at least the floor for what they cannot
        single = float(np.mean([max(e, self.c.params["mix_window_error"]) for _, e in w]))
        se = 0.0
        if n >= 2 and mean_p > 0 and mean_r > 0:
            # delta method for a ratio of means: the spread of P/P_mean - R/R_mean between windows
            se = float(np.std(p / mean_p - r / mean_r, ddof=1) / np.sqrt(n))
        return DefaultReference(power_w=mean_p, progress=mean_r, rel_error=max(se, single / float(np.sqrt(n))),
                                source=("mix", self.c._mix_version))
