"""The `model` controller's handling of mixes: phases that change faster than they can be measured
one by one are held as one phase, measured over whole cycles of the mix (mix.py has the cycle
arithmetic), with a pool of default-settings windows as its reference.

A mixin of ModelController (model.py): it reads the controller's phase models and parameters.
"""

from __future__ import annotations

import numpy as np

from ..telemetry import Sample
from .mix import CLEAN_SPREAD, LineSums, MixWindow, busy_kernel_time, mean_progress_error, whole_cycles_mean
from .model_state import State
from .phase_model import ARRIVAL_MISS, PhaseModel, Probe

HELD_SATURATED_SHARE = 0.5  # a quiet mix's held window saturated this much is checked too (_held_arrival_missed)
DRAIN_MAX_S = 5.0  # longest a mix's reference window waits for a backlog to drain (_draining)
DRAIN_MIN_S = 1.0  # saturated this long without a break: a backlog, not one short busy phase ...
DRAIN_RUN_MAX_S = 8.0  # ... and no longer than this: a mix that never leaves saturation has no backlog to see
BURST_SATURATED_S = 0.2  # a mix held below default saturated this long: a burst beyond what the clock keeps up with
IRREGULAR_SPREAD = 2.0 * CLEAN_SPREAD  # a mix read periodic is read irregular only beyond this (_mix_periodic)
MIX_REFRESH_GROWTH_MAX = 8.0  # a steady mix is refreshed at most this many times less often than `refresh_s`


class MixHandling:
    """Mixes of phases held as one (mixin of ModelController)."""

    def _measure_s(self) -> float:
        if not self.composite:
            return self.params["measure_s"]
        # five change intervals hold two cycles of a two-phase mix, so its period shows (mix.py)
        return min(20.0, max(self.params["composite_measure_s"], 5.0 * self.change_interval_s))

    def _next_window_s(self) -> float:
        """How long a mix's next probe window runs at its clock, its settling included: as long as
        the mix's windows grew to (_lengthen_mix_window), what the budget must pay for before the
        window can be read."""
        return self._settle() + max(self._measure_s(), self._mix_window_s)

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

    def _burst_guarded(self, sample: Sample) -> bool:
        """Under a latency bound, whether a mix held (or probed) below default settings runs this tick
        at default instead, because one of its bursts saturates the GPU.

        A mix is planned by its mean over whole cycles, but its requests queue wherever one of its
        phases needs more than the held clock gives: a burst that keeps the GPU 92% busy at default
        saturates it at any lower clock, and its backlog grows for as long as the burst lasts (a
        generated bursty mix held at 1425 MHz made a 9 s burst's requests 2.5 times late). Which
        phase of a mix is a burst is not known ahead, but saturation is read at once: after
        `BURST_SATURATED_S` of it (one reading at the default 200 ms period, docs/decisions/034)
        the clock goes back to the firmware, until the GPU is no busier than the mix is on average
        at default (the burst, and the backlog it left, are done). The windows the mix is measured
        and held by include these stretches, so the mix's model is of its clock with the guard, as
        it runs.

        A busy mix (PhaseModel.busy_mix) saturates the GPU by itself: a periodic one (its default
        windows each hold whole cycles, `_mix_periodic`: training steps between stalls, a fast
        alternation of kernels) is not guarded, as the guard would hand every step back to the
        firmware. One whose saturation comes irregularly is guarded: that is when requests come,
        and they queue through every burst below default (a bursty mix counted busy, probed at 0.91
        and 0.82 of its clock through two bursts, ran its requests 26% late over a 23-minute run;
        docs/decisions/036)."""
        m = self.current
        below_default = self.setpoint.sm_clock_max_mhz is not None or self.setpoint.power_limit_w is not None
        if not (self.composite and self.params["bound"] == "both" and m is not None and below_default
                and self.state in (State.HOLD, State.PROBE)):
            self.burst_guard = False
            return False
        if self.burst_guard:
            self.burst_guard = sample.gpu_util_pct / 100.0 > m.ref.util
        else:
            # half a tick short counts: readings come a tick apart, and a tick that came out a
            # rounding short of the threshold (0.19999 s) had waited a whole reading more
            self.burst_guard = (self._saturated_s > 0.0 and self._saturated_s >= BURST_SATURATED_S - 0.5 * self._tick_s
                                and not (m.busy_mix() and self._mix_periodic(m)))
        return self.burst_guard

    def _held_arrival_missed(self, m: PhaseModel, mean: Probe, now: float, saturated: float = 0.0) -> bool:
        """Under a time bound, a busy mix held below its reference as arriving work is checked at
        each held window as its probes were (PhaseModel._arrival_missed): a window whose progress
        lies `ARRIVAL_MISS` short of what the arrival reading predicts at the held clock joins the
        mix's probes, which reads it serial, and the time held so far is charged at the slowdown
        the mix now reads there. Its first probe may have read arriving work from a window that
        caught fewer input stalls than its reference; held windows are more readings of the same
        question (a mix of training steps held at 0.75 of its clock read 18-20% short there in
        four of its windows, and `batch` ran gen:mixed:520645 11% long). A quieter mix's held windows
        are checked so only where the GPU was saturated in `HELD_SATURATED_SHARE` of the window's
        readings: a lull in its arrivals reads short too, but leaves the GPU idle, and a serving mix
        held at 255 MHz queued its requests saturated for two minutes (a100 gen:serving:496270, 14%
        long; docs/decisions/029). True when so read."""
        if self.params["bound"] != "time" or m.kind != "arrival":
            return False
        if not m.busy_at_reference() and saturated < HELD_SATURATED_SHARE:
            return False
        if mean.clock_mhz >= m.ref.clock_mhz - self._bin() or not self._consistent(m.ref, mean):
            return False
        if mean.progress * m.wall_time(mean.clock_mhz) >= 1.0 - ARRIVAL_MISS:
            return False
        before = max(0.0, float(m.slowdown(mean.clock_mhz)))
        m.add(mean)
        after = max(0.0, float(m.slowdown(mean.clock_mhz)))
        self.extra += max(0.0, now - self.state_start) * max(0.0, after / (1.0 + after) - before / (1.0 + before))
        return True

    def _mix_refresh_after_s(self, m: PhaseModel) -> float:
        """How long mix m is held before it is refreshed: its own interval (_mix_refreshed), or
        `refresh_s` for a mix no refresh has found again."""
        return self.params["refresh_s"] if m.refresh_after_s is None else m.refresh_after_s

    def _mix_refreshed(self, held: PhaseModel) -> None:
        """A mix is held: if a refresh began since the last hold, the next refresh of this mix comes
        twice as late when it is the mix that refresh left (up to `MIX_REFRESH_GROWTH_MAX` times
        `refresh_s`), and after `refresh_s` when it is another. A refresh runs the work at default
        settings until a window of whole cycles is read (20-30 s, a sixth of a two-minute hold); one
        that finds the mix it left is evidence that the work is steady. A held window that misses
        the mix still starts a new reference at once, and puts that mix's next refresh back to
        `refresh_s`. The interval is the mix's own: a mix that comes by another path (a job starting
        or ending, a warmer GPU) is refreshed by what was seen of it, not of the mix before
        (docs/decisions/037, 039)."""
        if self._refreshed_mix is None:
            return
        base = self.params["refresh_s"]
        if self._refreshed_mix is held:
            held.refresh_after_s = min(MIX_REFRESH_GROWTH_MAX * base, 2.0 * self._mix_refresh_after_s(held))
        else:  # the work moved: neither mix has shown itself steady
            held.refresh_after_s = self._refreshed_mix.refresh_after_s = None
        self._refreshed_mix = None

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

    def _window_mixes_phases(self) -> bool:
        """Whether the window's readings moved more than one phase's do (busy share by a quarter,
        or progress by 30%)."""
        util = np.array([s.gpu_util_pct for s in self.window]) / 100.0
        prog = np.array([s.progress_pct for s in self.window])
        return bool(np.ptp(util) > 0.25 or (np.mean(prog) > 5 and np.ptp(prog) > 0.3 * np.mean(prog)))

    def _probe_from_window(self) -> Probe | None:
        """Mean readings over the settled window; None if the window mixes phases."""
        if not self.window:
            return None
        obs = [self._last_obs(s) for s in self.window]
        prog = np.array([o.progress for o in obs])
        if not self.composite and self._window_mixes_phases():
            return None
        mean = self._mean_obs(obs)
        if not self.composite:
            return mean
        power = np.array([o.power for o in obs])
        util = np.array([o.util for o in obs])
        cycles = whole_cycles_mean(power, prog)
        # how far its progress may be off: what its own parts show, and at least what a window of a
        # mix is taken to be off by beyond them (the load moves between windows)
        error = max(mean_progress_error(prog, cycles.ticks), self.params["mix_window_error"])
        probe = Probe(clock_mhz=mean.clock_mhz, util=mean.util, progress=cycles.progress, power=cycles.power,
                      temp_c=mean.temp_c, progress_sd=error, busy_kernel=busy_kernel_time(util, prog))
        self._last_window = MixWindow(probe=probe, spread=cycles.rel_spread,
                                      saturated=float(np.mean([o.saturated for o in obs])),
                                      parts=MixWindow.split(util, power), busy_by_progress=LineSums.of(prog, util))
        return probe

    def _recharge_probes(self) -> None:
        """A probe is charged with the slowdown the model predicted before it was measured (all busy
        time clock-bound: the worst case). For a mix of phases, whose probes are long, that worst case
        would eat the whole budget; once the mix is identified its probes are charged with what the
        fitted model says they cost. Single phases keep the cautious charge."""
        if not self.composite:
            return
        m = self.current
        for (model_id, f), charge in self._charges.items():
            if model_id != self._uid(m):
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
        return self._mix_spread() < self.params["mix_window_error"]

    def _mix_periodic(self, m: PhaseModel) -> bool:
        """Whether the mix m repeats in its own rhythm, as a program's steps do: its default-settings
        windows each hold whole cycles (spread within `CLEAN_SPREAD`, mix.py); bursts of requests
        come when the requests do, and a window over them holds no whole cycles. The reading is
        recorded on the mix model, which outlives its pools (a refresh empties the pool): a mix
        once read periodic stays so until a window reads beyond `IRREGULAR_SPREAD`, as one
        window's spread a hair over the line is noise (docs/decisions/038)."""
        spread = self._mix_spread()
        if m.periodic is None or spread <= CLEAN_SPREAD or spread > IRREGULAR_SPREAD:
            m.periodic = spread <= CLEAN_SPREAD
        return m.periodic

    def _mix_spread(self) -> float:
        """The largest spread over its own cycles of the mix's default-settings windows (infinite
        without any: nothing is known to agree)."""
        return max((x.spread for x in self._mix_windows), default=float("inf"))

    def _set_mix_windows(self, windows: list[MixWindow]) -> None:
        """Replace the mix's pool of default-settings windows (the pooled reference is recomputed)."""
        self._mix_windows = windows
        self._mix_version += 1
        if windows and self._mix_model is not None:
            self._mix_model.saturated_share = float(np.mean([w.saturated for w in windows]))
