"""The `model` controller's counterfactual for the ledger: what each sample's work would have cost
at default settings, priced by the default-settings measurement (reference) of the phase the
sample belongs to, or unknown where no measured phase explains it.

The controller measures each phase at default settings anyway (its reference), so the ledger
needs no control windows of its own; this object is what it hands the ledger
(Controller.counterfactual). It reads the controller's phase models, never changes its plan.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..telemetry import UNKNOWN_REFERENCE, DefaultReference, Sample
from .mix import LineSums
from .model_state import State
from .phase_model import WARMER_C, PhaseModel, Probe

if TYPE_CHECKING:
    from .model import ModelController


LINE_REACH = 0.1  # busy share beyond the least and most busy readings of a mix's pool that its line still prices
QUIET_BUSY_SHARE = 0.5  # a pool whose quietest reading is at most this share of its busiest read its mix's
                        # seconds without work apart from its busy ones


@dataclass(frozen=True)
class PooledLine:
    """A mix pool's line of power against busy share at default settings (mix.LineSums), and where
    it was measured."""

    idle_w: float  # at no busy share
    per_busy_w: float  # per unit of busy share
    rel_error: float  # how far stretches of a few seconds lie off it, at least `mix_window_error`
    mean_busy: float  # the readings' mean busy share
    busy_lo: float  # the least and the most busy reading
    busy_hi: float
    work_line: tuple[float, float] | None = None  # busy share at no DRAM progress, and per unit of it

    def reaches(self, busy: float) -> bool:
        return self.busy_lo - LINE_REACH <= busy <= self.busy_hi + LINE_REACH


class ModelPricing:
    def __init__(self, controller: ModelController):
        self.c = controller
        self._pooled_cache: tuple | None = None
        self._line_cache: tuple | None = None
        self._held_busy: tuple[int, float, int] | None = None  # (pool version, summed busy share at default, readings)

    def throttled_work_ratio(self, sample: Sample, power_w: float) -> float | None:
        """How much faster default settings, throttled to power_w at the thermal limit, would do this
        sample's work (the planner's throttled_work_ratio): by the held phase, or, while a phase is
        measured at default (no phase held), by the known phase the sample matches."""
        m = self.c.current
        if m is None and not self.c.composite:
            m = self.c._match(self.c._last_obs(sample), None, self.c.params["ledger_match_tolerance"])
        return None if m is None else self.c.throttled_work_ratio(sample, power_w, m)

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
                                source=("phase", self.c._uid(best), best.ref.clock_mhz, best.ref.power))

    def _default_under_cap(self, m: PhaseModel, power_w: float) -> tuple[float, float]:
        """What default settings would draw, and how much longer their work would take than at the
        reference clock, once the GPU has warmed past the reference: the firmware holds the board
        within its default power limit, so where the warm excess would lift the reference over it
        default runs a clock step or two lower instead (docs/decisions/003). The limit is never
        below the reference's own measured power: a 1 s average can read over it, and that
        reading is what default did. As read, not as a power drift moved it with the model's curve
        (`PhaseModel.shift_power`): a training step capped at 689 W was shifted to 749, and every
        step after priced 9% over what default drew (h100, gen:training:90708, 104% over-claimed)."""
        cap = max(self.c.limits.power_limit_default_w, m.ref_power_read_w())
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
        With GPM's fine-grained progress; integer memory utilization cannot show a probe's few
        percent of slowdown, and pricing its work at default's rate would claim a saving that is
        time, so without it the probe's work is taken to have slowed as much as it can."""
        m = self.c.current
        if self.c.state != State.PROBE or m is None or self.c.composite or self.c.use_power \
                or obs.clock_mhz <= 0 or obs.clock_mhz > m.ref.clock_mhz or obs.power > m.ref.power:
            return UNKNOWN_REFERENCE
        coarse = sample.dram_bw_pct is None or not m.has_proxy or m.ref.progress < self.c.params["min_progress_pct"]
        # a quiet phase's progress (0.09% of DRAM bandwidth) is noise, and a reading of 0.14 failed
        # the check that progress never speeds up at a lower clock: its probes went unclaimed
        if not self.c._consistent(replace(m.ref, progress=0.0) if coarse else m.ref, obs):
            return UNKNOWN_REFERENCE
        work_ratio = None  # fine progress: the ledger prices the probe's measured progress
        if coarse:
            # without a progress reading fine enough to show a probe's slowdown: the same seconds at
            # default power, less the most a clock this much lower can slow the work (all its busy
            # time scaling with the clock), so that no slowdown is credited as a saving; a lower
            # bound of what the probe saved
            work_ratio = 1.0 / (1.0 + max(0.0, m.ref.util * (m.ref.clock_mhz / obs.clock_mhz - 1.0)))
        return DefaultReference(power_w=m.ref.power, progress=m.ref.progress, work_ratio=work_ratio,
                                source=("probe", self.c._uid(m), m.ref.clock_mhz, m.ref.power))

    def _warm_excess_w(self, m: PhaseModel, obs: Probe) -> float:
        """How many watts more the phase draws now than its model, fitted on a colder GPU, predicts.

        A reference taken on a cold GPU (the first minute of a job) underprices default settings
        once the GPU has warmed: leakage grows with temperature, and default settings would run at
        least as warm as govd does. The excess at the held clock is added to the reference: in
        watts, not as a ratio, since leakage is a larger share of a low clock's power (it is larger
        still at default's higher voltage, so this errs low). Only when the GPU is warmer than at the
        reference, and never negative, so a model's misfit on a cool GPU cannot inflate a saving."""
        if obs.temp_c - m.ref.temp_c < WARMER_C or obs.clock_mhz <= 0:
            return 0.0
        m.warm_excess_w += 0.02 * (obs.power - m.power(obs.clock_mhz) - m.warm_excess_w)
        return max(0.0, min(0.2 * m.ref.power, m.warm_excess_w))

    def _mix_reference(self, sample: Sample) -> DefaultReference:
        """The pooled reference of a mix (its default-settings windows' energy per unit of DRAM
        progress); below default settings, what default would draw for this sample's work: for a
        mix of arriving work at the busy share the work would keep the GPU busy there
        (_arrival_mix_reference), for a serial or busy mix over the seconds default would need for
        it (_serial_mix_reference)."""
        pooled = self._pooled_reference()
        m = self.c._mix_model
        if not pooled.known or m is None or m is not self.c.current or self.c.use_power \
                or self.c.state not in (State.PROBE, State.HOLD):
            return pooled
        if (m.kind != "arrival" and m.probes) or m.busy_mix():
            return self._serial_mix_reference(sample, m, pooled)
        # before its first probe a mix's kind is unknown: the busy-share price then shrinks the
        # busy share by the whole clock ratio, which prices serial work low, not high
        return self._arrival_mix_reference(sample, m, pooled)

    def _serial_mix_reference(self, sample: Sample, m: PhaseModel, pooled: DefaultReference) -> DefaultReference:
        """What default would spend on a serial (or busy) mix's sample, priced by the sample itself:
        its seconds without work (a training mix's input stalls: host time, as long at any clock) at
        what default draws with the GPU idle, and its busy time, shrunk to what default would need
        for the sample's DRAM progress, at what default draws busy; both from the pool's line of
        power against busy share, the busy time from its line of busy share against progress.

        The pool's energy per unit of progress is its mix's mean, stalls included, and a held
        stretch is no draw of the pool's make-up: a stretch of training steps was priced at 24 J
        per unit where a step cost 18 at default (h100, gen:training:278665: 71% over the saving),
        and a stall, with no progress to show, at 5 W where default drew 136. The busy time is no
        more than the sample's own (a lower clock never shortens kernels) and no less than the
        clock ratio allows. Only for a pool that read its GPU both quiet and busy (`QUIET_BUSY_SHARE`):
        where every reading is busy, a line over busy share cannot tell the mix's parts apart, and
        the pool's rate prices them (a fast compute and memory mix read 4-16% over, priced so)."""
        line = self._pooled_line()
        if line is None or line.work_line is None or line.busy_lo > QUIET_BUSY_SHARE * line.busy_hi \
                or sample.sm_clock_mhz <= 0:
            return pooled
        at_no_work, per_progress = line.work_line
        u = sample.gpu_util_pct / 100.0
        ratio = min(1.0, sample.sm_clock_mhz / max(m.ref.clock_mhz, 1.0))
        busy = min(u, max(u * ratio, at_no_work + per_progress * sample.progress_pct))
        seconds = (1.0 - u) + busy  # at default, for this second's work: the host time, and the busy time shrunk
        if seconds <= 0.0:
            return pooled
        price_w = (line.idle_w * (1.0 - u) + (line.idle_w + line.per_busy_w) * busy) / seconds
        return self._priced_by_line(sample, line, busy / seconds, price_w, seconds)

    def _arrival_mix_reference(self, sample: Sample, m: PhaseModel, pooled: DefaultReference) -> DefaultReference:
        """What default would draw for a sample of a mix of arriving work: at the busy share its work
        would keep the GPU busy there.

        The pool's energy per unit of DRAM progress is a mean over its windows' parts, and the parts
        of a mix of arriving work differ: a burst moves much DRAM data per joule, a quiet stretch
        little. A held stretch with more bursts than the pool's windows had was priced as if its
        progress had cost the pool's rate (a generated bursty mix: 28 kJ claimed where 5 kJ was
        saved, the truth outside the interval), and stretches run at default by the burst guard
        leave the held ones quieter than the pool. Such work arrives as it would at default, so the
        same seconds are priced: by the line of power against busy share that the default-settings
        windows' readings show (mix.LineSums), at this sample's busy share shrunk by how much
        shorter its kernels would run at default (the model's kernel time where the clock lies
        within its probes; the clock ratio, the most it can be, where it does not). Serial and busy
        mixes' work waits on the clock (_serial_mix_reference; docs/decisions/004, 015, 022)."""
        f = self.c.probe_target if self.c.state == State.PROBE else self.c.held_mhz
        line = self._pooled_line()
        if line is None or f is None:
            return pooled
        ref_f = m.ref.clock_mhz
        f = min(f, ref_f)
        measured = [p.clock_mhz for p in m.probes]
        shorter = float(m.kernel_time(ref_f) / m.kernel_time(f)) if measured and f >= min(measured) - 1e-6 \
            else f / ref_f
        shorter = min(1.0, max(f / ref_f, shorter))  # between the clock ratio and 1, whatever the fit
        busy = sample.gpu_util_pct / 100.0 * shorter
        return self._priced_by_line(sample, line, busy, line.idle_w + line.per_busy_w * busy, 1.0)

    def _priced_by_line(self, sample: Sample, line: PooledLine, busy: float, price_w: float,
                        work_ratio: float) -> DefaultReference:
        """A sample priced by the pool's line at price_w, for work_ratio seconds at default per second
        here, where the busy share default would keep for it is busy; unknown where the pool read no
        busy share near it: busier or quieter than any reading of the pool is other work than the mix
        it measured (a mixed job gone idle in the middle of a probe was priced at the mix's 541 W
        where default drew 150, h100 gen:mixed:930744), which the line cannot price.

        One error key for every sample a line prices: what it misses (the make-up of the mix against
        its busy share, a load that moved) misses alike from one pool to the next, so it adds up
        linearly, not in quadrature as independent measurements do (Totals). Keyed by pool, the
        truth fell outside the interval in 5 of 90 generated runs, on one key in 2."""
        if not line.reaches(busy):
            return UNKNOWN_REFERENCE
        return DefaultReference(power_w=price_w, progress=sample.progress_pct, work_ratio=work_ratio,
                                rel_error=line.rel_error + self._extrapolated_w(busy, line) / max(price_w, 1.0),
                                source=("mix line",))

    def _extrapolated_w(self, busy: float, line: PooledLine) -> float:
        """How far the line's price may be off where the stretch priced by one pool runs at another
        busy share than the pool's readings did, in watts: the whole move the line attributes to the
        busy share. The line's slope is fitted over readings whose parts differ (a prefill draws twice
        a decode's power per unit of busy share), so it also carries the make-up of the mix, and a
        stretch whose load moved is priced along it as if the make-up had stayed: a serving mix's
        pool sloped at 890 W per unit of busy share priced decodes 10 points quieter than its
        readings at 160 W where default drew 250, the truth outside the interval (h100,
        gen:serving:891853). Per stretch (the pool's version), by the stretch's mean so far: a
        stretch whose mean matches the pool's is priced where the line was measured, whatever its
        single readings."""
        version = self.c._mix_version
        held = self._held_busy
        if held is None or held[0] != version:
            held = (version, 0.0, 0)
        held = (version, held[1] + busy, held[2] + 1)
        self._held_busy = held
        return line.per_busy_w * abs(held[1] / held[2] - line.mean_busy)

    def _pooled_line(self) -> PooledLine | None:
        """The pool's line of power against busy share at default settings; None with too few
        readings. Cached per pool."""
        if self._line_cache is None or self._line_cache[0] != self.c._mix_version:
            w = self.c._mix_windows
            sums = sum((x.util_power for x in w), LineSums())
            fit = sums.line()
            priced = None
            if fit is not None:
                idle_w, per_busy_w = fit
                # single readings scatter about the line by the mix's parts (a burst draws more per
                # unit of busy share than a decode), which average out over stretches of the same
                # make-up; how far stretches of a few seconds lie off the line says how far the
                # make-up moves. The held stretches are no random draw of the pool's (the burst guard
                # takes the bursts out, the load moves), so their price is off by as much as one
                # stretch can be, not by the pool mean's error: taken as the latter, the truth fell
                # outside the interval in 17 of 30 generated runs (at least the floor a mix's window
                # is taken to be off by)
                parts = [q for x in w for q in x.parts if q.n]
                off = [(q.sy / q.n) / max(idle_w + per_busy_w * q.sx / q.n, 1.0) - 1.0 for q in parts]
                rel = max(self.c.params["mix_window_error"], float(np.sqrt(np.mean(np.square(off)))) if off else 0.0)
                priced = PooledLine(idle_w=idle_w, per_busy_w=per_busy_w, rel_error=rel, mean_busy=sums.sx / sums.n,
                                    busy_lo=sums.x_lo, busy_hi=sums.x_hi,
                                    work_line=sum((x.busy_by_progress for x in w), LineSums()).line())
            self._line_cache = (self.c._mix_version, priced)
        return self._line_cache[1]

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
        p = np.array([x.probe.power for x in w])
        r = np.array([x.probe.progress for x in w])
        mean_p, mean_r = float(p.mean()), float(r.mean())
        # each window: what its own cycles show, at least the floor for what they cannot
        single = float(np.mean([max(x.spread, self.c.params["mix_window_error"]) for x in w]))
        se = 0.0
        if n >= 2 and mean_p > 0 and mean_r > 0:
            # delta method for a ratio of means: the spread of P/P_mean - R/R_mean between windows
            se = float(np.std(p / mean_p - r / mean_r, ddof=1) / np.sqrt(n))
        return DefaultReference(power_w=mean_p, progress=mean_r, rel_error=max(se, single / float(np.sqrt(n))),
                                source=("mix", self.c._mix_version))
