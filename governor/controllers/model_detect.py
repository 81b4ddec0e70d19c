"""The `model` controller's phase detection: which known phase explains a reading, whether a
probe's readings can be the same phase at a lower clock, and the CUSUM test that notices a change.

A mixin of ModelController (model.py): it reads the controller's phase models and parameters.
"""

from __future__ import annotations

import numpy as np

from ..telemetry import Sample
from .phase_model import WARMER_C, PhaseModel, Probe, kernel_time_fell

MIX_WINDOW_SPREAD = 1.5  # a mix's window may be this much busier (or less busy) than its reference, beyond the clock's
                         # doing, before it is taken for other work (_consistent)
MIX_PROGRESS_RISE = 1.1  # a busy mix's window with this much more progress than its reference, at a lower clock,
                         # is other work (_consistent)


class Cusum:
    """Two-sided CUSUM on a normalized residual: alarms on a persistent shift, ignores noise."""

    def __init__(self, drift: float, threshold: float):
        self.drift, self.threshold = drift, threshold
        self.hi = self.lo = 0.0

    def update(self, r: float) -> bool:
        self.hi = max(0.0, self.hi + r - self.drift)
        self.lo = max(0.0, self.lo - r - self.drift)
        return self.hi > self.threshold or self.lo > self.threshold

    def reset(self) -> None:
        self.hi = self.lo = 0.0


class PhaseDetection:
    """Telling phases apart (mixin of ModelController)."""

    def _match(self, obs: Probe, exclude: PhaseModel | None, tolerance: float | None = None,
               among: list[PhaseModel] | None = None) -> PhaseModel | None:
        """The known phase (of `among`, else of the phases in use) that explains obs best within
        tolerance (match_tolerance by default)."""
        best, best_r = None, self.params["match_tolerance"] if tolerance is None else tolerance
        for m in self.models if among is None else among:
            if m is exclude:
                continue
            r = self._residual(m, obs)
            if r < best_r:
                best, best_r = m, r
        return best

    def _residual(self, m: PhaseModel, obs: Probe) -> float:
        u, prog, power = m.predict(obs.clock_mhz)
        return max(abs(obs.util - u) / max(u, 0.05), abs(obs.progress - prog) / max(prog, 2.0),
                   abs(obs.power - power) / max(power, 1.0))

    def _consistent(self, ref: Probe, obs: Probe) -> bool:
        """Physics a probe must obey if the phase did not change: a lower clock never makes the GPU
        less busy, never speeds progress up, and slows it at most in proportion to the clock."""
        if self.use_power:
            return True  # under a power cap the clock is the firmware's choice
        # busy time grows at most as the clock falls: the busiest the same work can read at obs's clock
        most = min(1.0, ref.util * ref.clock_mhz / max(obs.clock_mhz, 1.0))
        if self.composite:
            m = self.current
            busy = m.busy_at_reference() if self.params["bound"] == "time" else m.busy_mix()
            if busy and ref.progress >= m.min_progress and \
                    (obs.progress > MIX_PROGRESS_RISE * ref.progress or kernel_time_fell(ref, obs)):
                # a lower clock never speeds the same work up: a busy mix's reference window that
                # caught a checkpoint (68% busy against 90%) read 18-47% less progress than its first
                # probe, which was fitted as arriving work and held at 1080-1170 MHz (`batch` ran
                # gen:training:229377 15% long, 186672 12%). Busy mixes only: the windows of bursty
                # and serving mixes vary by more than this with the bursts they catch, and measuring
                # them anew cost `batch` 2-3 points on them (docs/decisions/019). Nor does it shorten
                # its kernels: kernel time per unit of work does not move with the load (decision 020).
                # Under either bound: under a latency bound such a window went on to the mix's next
                # fixed probe, and a pipeline that had begun under the first met 0.64 of its clock
                # there, its requests 16% late (h100 gen:mixed:520355; docs/decisions/035)
                return False
            if self.params["bound"] != "time":
                return True  # a mix varies by nature
            # its windows catch more or less of its bursts; but a window busier than its reference
            # by more than half again beyond what the clock's stretch allows (or less busy by as
            # much) is other work. A training mix measured while its job was still quiet (28% busy
            # at 1432 MHz) read 88% busy at its first probe, 1170 MHz; kept, it was fitted as
            # arriving work and held at 570 MHz, saturated: the run 17% long. Under a time bound
            # only: under a latency bound the busy-share stretch and its headroom keep such a mix
            # from being planned deep, and measuring bursty mixes anew at each such window cost
            # `balanced` up to 3.8 points on them (docs/decisions/018)
            return ref.util / MIX_WINDOW_SPREAD - 0.1 <= obs.util <= most * MIX_WINDOW_SPREAD + 0.1
        if obs.util < ref.util - 0.1:
            return False
        # nor busier than that: a quiet phase (6% busy) probed at 345 MHz when a burst arrived read
        # 100% busy; its progress too small to compare, the burst was taken for the quiet phase at a
        # lower clock
        if obs.util > most + 0.1:
            return False
        if ref.progress >= self.current.min_progress:
            ratio = obs.progress / ref.progress
            if ratio > 1.15 or ratio < 0.8 * obs.clock_mhz / max(ref.clock_mhz, 1.0):
                return False
        return True

    def _extrapolated(self, m: PhaseModel, obs: Probe) -> bool:
        """True when obs was read at a clock the model has no probe near (it predicts by extrapolation)."""
        return len(m.probes) < self.params["max_probes"] + 2 and \
            min(abs(p.clock_mhz - obs.clock_mhz) for p in m.points()) >= 3 * self._bin()

    def _back_to_known(self, now: float, tail: list[Sample] | None = None) -> bool:
        """If the latest readings (the window's last two, or `tail`) match a known phase, hold it at
        once (no need to measure again). Not on a refresh, whose point is a new measurement (the GPU
        has warmed, the work drifted)."""
        tail = self.window[-2:] if tail is None else tail[-2:]
        if not tail or not self.models:
            return False
        obs = self._mean_obs([self._last_obs(s) for s in tail])
        known = self._match(obs, None)
        if known is None:
            return False
        self._resume(known, now, "known phase")
        return True

    def _mean_obs(self, obs: list[Probe]) -> Probe:
        """Mean readings. Under a latency bound the clock is weighted by how busy the GPU was at each
        reading, the clock requests saw: the firmware idles the clock down between sparse requests,
        and the plain mean of a quiet phase's clock (754 MHz on an h100 whose requests ran at 1980)
        made fractions of it probes and plans far below what its requests met at default. End-time
        planning keeps the plain mean, which its mix fits are made on (weighted, a training mix's
        probes went a step deeper and a generated training job ran 10% long against 3%)."""
        util = np.array([o.util for o in obs])
        clock = np.array([o.clock_mhz for o in obs])
        weighted = self.params["bound"] == "both" and util.sum() > 0.05 * len(obs)
        busy_clock = float(np.dot(util, clock) / util.sum()) if weighted else float(clock.mean())
        return Probe(clock_mhz=busy_clock, util=float(np.mean([o.util for o in obs])),
                     progress=float(np.mean([o.progress for o in obs])),
                     power=float(np.mean([o.power for o in obs])), temp_c=float(np.mean([o.temp_c for o in obs])))

    def _last_obs(self, s: Sample) -> Probe:
        return Probe(clock_mhz=s.sm_clock_mhz, util=s.gpu_util_pct / 100.0, progress=s.progress_pct,
                     power=s.power_now_w, temp_c=s.temp_c)

    def _power_drifted(self, m: PhaseModel, residuals: tuple[float, float, float]) -> bool:
        """Power alone moved away from the model while utilization and progress still fit it: the
        GPU warmed (leakage grows with temperature) or the model's power curve was off at this
        clock. The same work is being done, so the power curve is shifted to the readings rather
        than the phase taken for a new one (which measured it anew and, three times in 30 s, turned
        a training job into a "mix" for the rest of the demo run). True when so handled."""
        drift = self.params["cusum_drift"]
        if abs(residuals[0]) >= drift or abs(residuals[1]) >= drift or not self.recent:
            return False
        recent = self._mean_obs(list(self.recent))
        offset = recent.power - m.power(recent.clock_mhz)
        if abs(offset) > 0.2 * max(m.ref.power, 1.0):
            return False
        # the reference was read at default settings: a GPU no warmer than then draws there what it
        # drew, and a drift at the held clock is the curve's misfit there, not the reference's (a
        # training step's reference, capped at 689 W, was moved to 749 by a probe that had read
        # 459 W at 1620 MHz, and the ledger priced every later step 9% over; h100 gen:training:90708)
        m.shift_power(offset, with_ref=recent.temp_c - m.ref.temp_c >= WARMER_C)
        for c in self.cusums:
            c.reset()
        return True
