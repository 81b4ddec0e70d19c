"""The `model` controller's handling of mixes: phases that change faster than they can be measured
one by one are held as one phase, measured over whole cycles of the mix (mix.py has the cycle
arithmetic), with a pool of default-settings windows as its reference.

A mixin of ModelController (model.py): it reads the controller's phase models and parameters.
"""

from __future__ import annotations

import numpy as np

from ..telemetry import Sample
from .mix import CLEAN_SPREAD, whole_cycles_mean
from .model_state import State
from .phase_model import Probe

DRAIN_MAX_S = 5.0  # longest a mix's reference window waits for a backlog to drain (_draining)
DRAIN_MIN_S = 1.0  # saturated this long without a break: a backlog, not one short busy phase ...
DRAIN_RUN_MAX_S = 8.0  # ... and no longer than this: a mix that never leaves saturation has no backlog to see


class MixHandling:
    """Mixes of phases held as one (mixin of ModelController)."""

    def _measure_s(self) -> float:
        if not self.composite:
            return self.params["measure_s"]
        # five change intervals hold two cycles of a two-phase mix, so its period shows (mix.py)
        return min(20.0, max(self.params["composite_measure_s"], 5.0 * self.change_interval_s))

    def _fast_change(self, now: float) -> bool:
        """Note a phase change; True when this one switches to composite mode.

        Phases that change faster than a reference and its probes can be measured are treated as one
        mixed phase, measured over longer windows and held at one clock (what an administrator's
        best fixed clock does, but measured rather than guessed).
        """
        self.changes.append(now)
        while self.changes and now - self.changes[0] > 30.0:
            self.changes.popleft()
        if self.composite or len(self.changes) < self.params["fast_changes"]:
            return False
        self.composite = True
        self._set_mix_windows([])
        times = list(self.changes)
        self.change_interval_s = (times[-1] - times[0]) / max(1, len(times) - 1)
        self.models.clear()
        self.current = None
        return True

    def _draining(self, sample: Sample, dt: float) -> bool:
        """A mix's reference window waits, up to `DRAIN_MAX_S`, while the GPU is saturated at its
        start and has been for between `DRAIN_MIN_S` and `DRAIN_RUN_MAX_S`: it is working off the
        backlog the controller's own deep probes left, which is no part of the mix at default
        (docs/decisions/001). A window that starts in a saturated phase merely starts a phase
        later: it grows to whole cycles wherever it starts."""
        if not (self.composite and self.state == State.REFERENCE and not self.window):
            return False
        if not DRAIN_MIN_S <= self._saturated_s <= DRAIN_RUN_MAX_S or self._drained_s >= DRAIN_MAX_S:
            return False
        self._drained_s += dt  # the window ends as much later
        return True

    def _lengthen_mix_window(self) -> bool:
        """True when a window of a mix holds no whole number of its cycles and may grow.

        The window's length comes from how often phases were seen to change, which the first,
        confused seconds of a job estimate poorly (a 3.7 s burst and 5 s of quiet were taken for
        changes every 2.1 s: a 10.7 s window held one cycle and a quarter, and its mean progress was
        off by a quarter). Whole cycles show themselves (mix.py), so the window grows by half its
        length until they do or `mix_window_max_s` is reached."""
        if not self.composite or not self.window:
            return False
        grown = self._settle() + self._measure_s() + self._window_extra_s
        if grown + 0.5 * self._measure_s() > self._settle() + self.params["mix_window_max_s"]:
            return False
        power = np.array([s.power_now_w for s in self.window])
        progress = np.array([s.progress_pct for s in self.window])
        if whole_cycles_mean(power, progress).rel_spread <= CLEAN_SPREAD:
            return False
        self._window_extra_s += 0.5 * self._measure_s()
        return True

    def _probe_from_window(self) -> Probe | None:
        """Mean readings over the settled window; None if the window mixes phases."""
        if not self.window:
            return None
        obs = [self._last_obs(s) for s in self.window]
        util = np.array([o.util for o in obs])
        prog = np.array([o.progress for o in obs])
        mixed = np.ptp(util) > 0.25 or (np.mean(prog) > 5 and np.ptp(prog) > 0.3 * np.mean(prog))
        if mixed and not self.composite:
            return None
        mean = self._mean_obs(obs)
        if not self.composite:
            return mean
        cycles = whole_cycles_mean(np.array([o.power for o in obs]), prog)
        self._last_window_spread = cycles.rel_spread
        return Probe(clock_mhz=mean.clock_mhz, util=mean.util, progress=cycles.progress, power=cycles.power,
                     temp_c=mean.temp_c)

    def _recharge_probes(self) -> None:
        """A probe is charged with the slowdown the model predicted before it was measured (all busy
        time clock-bound: the worst case). For a mix of phases, whose probes are long, that worst case
        would eat the whole budget; once the mix is identified its probes are charged with what the
        fitted model says they cost. Single phases keep the cautious charge."""
        if not self.composite:
            return
        m = self.current
        for (model_id, f), charge in self._charges.items():
            if model_id != id(m):
                continue
            s = max(0.0, m.slowdown(f))
            fair = charge[0] * s / (1.0 + s)
            self.extra += fair - charge[1]
            charge[1] = fair
        self.extra = max(0.0, self.extra)

    def _mix_windows_precise(self) -> bool:
        """Whether the mix's windows each agree over their own cycles within `mix_window_error`.

        Only then is a new window worth more than the pool it replaces: warming moves a mix's energy
        per unit of progress by a percent or two, which a scattering window buries in noise
        (docs/decisions/002)."""
        w = self._mix_windows
        return bool(w) and max(e for _, e in w) < self.params["mix_window_error"]

    def _set_mix_windows(self, windows: list[tuple[Probe, float]]) -> None:
        """Replace the mix's pool of default-settings windows (the pooled reference is recomputed)."""
        self._mix_windows = windows
        self._mix_version += 1
