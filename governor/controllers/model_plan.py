"""The `model` controller's planner: the budget spent so far, the clock each phase runs at (least
energy with the time-weighted slowdown within the budget), the dither between clock steps, how a
clock becomes a setpoint, and planning at the thermal limit.

A mixin of ModelController (model.py): it reads the controller's phase models and parameters.
"""

from __future__ import annotations

import numpy as np

from ..settings import Setpoint
from ..telemetry import Sample
from .phase_model import PhaseModel

MAY_WAIT_UTIL = 0.8  # below this busy share at its reference a phase may be waiting for requests


class Planner:
    """Budget and clock choice (mixin of ModelController)."""

    def _budget_now(self, latency: bool = False) -> float:
        """The budget to plan with now: end time's, or (latency) the mean request latency's; less
        what the running estimate of the spent share has overrun."""
        planned = self.params["slowdown_budget"] * self.params["budget_use"]
        m = self.current
        if self.composite and not (m is not None and m.mix and m.latency_planned()
                                   and ((m.kind == "arrival" and not m.busy_mix()) or m.boost_bound())):
            # half for a mix: its DRAM progress underweights a serial mix's compute-heavy parts in
            # its end time. Not for a mix of arriving work planned by its requests' stretch, which
            # bounds its end time too, for both budgets: the planner takes the smaller of the two,
            # and halving the end time's had halved the requests' as well (arriving mixes ran
            # 1.2-1.5% late against 3% on generated pipeline work, held two steps higher than planned).
            # Nor for a mix too quiet to read a stretch from (boost_bound): its cautious stretch, all
            # kernel time scaling from the boost, bounds its end time as well as its requests, and
            # with half the suite's `idle` saved 1.6% (h100) and 0.9% (a100) where 3.3% and 2.4% keep
            # both bounds (docs/decisions/028)
            planned *= self.params["composite_budget_share"]
        if latency:
            if self.lat_work_s <= 0.2:
                return planned
            spent = self.lat_extra_s / self.lat_work_s
        else:
            if self.elapsed <= 1.0:
                return planned
            spent = self._end_time_spent()
        return max(0.0, planned - max(0.0, spent - planned))

    def _uid(self, m: PhaseModel) -> int:
        """m's key in what the controller keeps about it beyond one call (probe charges, cached
        curves, the ledger's price source). Not id(m): a dropped model's address is reused by the
        next one made, which then inherited its charges and curves, so a run's decisions depended on
        what the process had run before it."""
        if not m.uid:
            m.uid = next(self._uids)
        return m.uid

    def _end_time_spent(self) -> float:
        """The running estimate of end time's slowdown so far: the extra seconds charged over the
        seconds default settings would have taken."""
        return self.extra / max(1e-6, self.elapsed - self.extra)

    def _lowest_affordable_mhz(self, m: PhaseModel, window_s: float, any_clock: bool = False) -> float:
        """The lowest supported clock (up to m's reference) at which a window of window_s seconds,
        were m's work serial (PhaseModel.serial_slowdown, the costlier reading), would leave end
        time's spent share within the share planned for (of the clocks it may run at, _clocks_up_to,
        or with any_clock of every supported clock up to its reference: a fixed window's clock is no
        plan, and under a latency bound _clocks_up_to stops at the deepest clock already measured);
        m's reference if none would."""
        planned = self.params["slowdown_budget"] * self.params["budget_use"]
        room = (planned * (self.elapsed + window_s) - (1.0 + planned) * self.extra) / (1.0 + planned)
        if room <= 0.0:
            return float(m.ref.clock_mhz)
        most = room / (window_s - room) if room < window_s else np.inf
        clocks = [float(c) for c in self.limits.sm_clocks_mhz if c <= m.ref.clock_mhz] if any_clock \
            else self._clocks_up_to(m)
        return min((f for f in clocks if m.serial_slowdown(f) <= most), default=float(m.ref.clock_mhz))

    def _account(self, dt: float, slowdown: float) -> None:
        self.elapsed += dt
        self.extra += dt * max(0.0, slowdown) / (1.0 + max(0.0, slowdown))

    def _account_latency(self, dt: float, m: PhaseModel, f: float) -> None:
        """Requests' latency, work-weighted as the bound is: the work of dt seconds of the phase (its
        busy share at the reference) at the stretch the model gives the clock it ran at."""
        work = dt * max(m.ref.util, 1e-3)
        self.lat_work_s += work
        self.lat_extra_s += work * m.spent_stretch(f)

    def _charge_probes_latency(self, m: PhaseModel) -> None:
        """A phase's probes count against the latency budget once it is known to be planned by
        latency (while probing, whether its work arrives is not known yet): at the stretch its fit
        gives each probe clock."""
        if not m.latency_planned():
            return
        for (model_id, f), charge in self._charges.items():
            if model_id == self._uid(m) and (model_id, f) not in self._lat_charged:
                self._lat_charged.add((model_id, f))
                self._account_latency(charge[0], m, f)

    def _curves(self, m: PhaseModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate clocks (up to the reference), cost and slowdown at each; cached per fit."""
        key = (self._uid(m), m.version)
        cached = self._curve_cache.get(key)
        if cached is None:
            clocks = np.array(self._clocks_up_to(m), dtype=float)
            slow = np.maximum(0.0, m.stretch(clocks))
            cost = m.energy_per_ref_second(clocks)
            if self.params["objective"] == "min_edp":
                cost = cost * (1.0 + slow)
            cached = (clocks, cost, slow)
            if len(self._curve_cache) > 4 * self.params["max_phases"]:
                self._curve_cache.clear()
            self._curve_cache[key] = cached
        return cached

    def _clocks_up_to(self, m: PhaseModel) -> list[float]:
        """The supported clocks a phase can be run at: none above its reference (the lowest if all are)
        or, for work whose requests meet the firmware's boost, above that (m.top_mhz); and for a mix
        or work that may be waiting for requests (idle a fifth of the time or more), under a latency
        bound, none below the lowest clock it was measured at.
        Their fits come from windows whose busy share moves little between clocks, and extrapolated
        below the data such a fit can call the work clock-insensitive: a generated serving mix was
        held at 345 MHz from windows at 1980-1530, its requests 50 times late from the backlog. A
        busy phase is measured at its plan before it is held there (a refining probe)."""
        top = m.top_mhz() + 1e-6
        unmeasured_risk = m.latency_planned() and (m.mix or m.kind == "arrival" or m.ref.util < MAY_WAIT_UTIL)
        bottom = min(p.clock_mhz for p in m.points()) - 1e-6 if unmeasured_risk else 0.0
        clocks = [float(c) for c in self.limits.sm_clocks_mhz if bottom <= c <= top]
        # and the reference itself (default settings: _realise), which is a mean of the clocks the
        # firmware chose and seldom a supported one; without it every candidate of a phase planned
        # by a stretch that forbids any clock below the reference was forbidden, and the cheapest
        # was taken (a bursty mix whose fit failed held at 1605 MHz, its requests 7% late)
        return sorted({*clocks, float(m.ref.clock_mhz)}) if m.ref.clock_mhz <= top else \
            (clocks or [float(self.limits.sm_clock_min_mhz)])

    def _allocate(self) -> dict[int, float]:
        """Per-phase clocks: minimum energy with the weighted stretch (PhaseModel.stretch) within the
        budget. End time weighs phases by their time; under a latency bound the mean request latency
        weighs them by their work, so each is weighted by the larger of its two shares and the budget
        is the smaller of the two budgets: one budget then bounds both (each phase's stretch is at
        least its slowdown).

        Lagrangian: each phase independently minimizes cost + lambda * stretch; lambda is raised by
        bisection until the weighted stretch fits the budget.
        """
        budget = self._budget_now()
        if budget <= 0.0 and self.composite and all(m.kind == "serial" for m in self.models):
            # the budget is spent on a mix of phases whose work waits on the clock: run at full
            # clocks until the spent share has fallen back, rather than trust the mix model's "no
            # slowdown here" (its DRAM proxy underweights the compute-heavy parts). Arriving work at
            # a clock that keeps up costs no time, so it keeps its clock
            top = float(self.limits.sm_clock_max_mhz)
            return {id(m): top for m in self.models}
        models = self.models
        if self.composite and self.current in models:
            # a mix is a whole workload held until it changes, not one of phases that take turns:
            # the mixes seen before it are not running, and weighting it by its own short past let it
            # borrow their budget (a burst-and-quiet mix, 1 s old beside one held for a minute, was
            # planned at a 39% stretch, and the next burst's requests ran 47% late for 20 s)
            models = [self.current]
        seen = np.array([max(m.seen_s, 1.0) for m in models])
        weights = seen / seen.sum()
        if self.params["bound"] == "both":
            work = seen * np.array([max(m.ref.util, 1e-3) for m in models])
            weights = np.maximum(weights, work / work.sum())
            budget = min(budget, self._budget_now(latency=True))
        curves = [self._curves(m) for m in models]

        def plan(lam):
            idx = [int(np.argmin(cost + lam * slow)) for _, cost, slow in curves]
            total = sum(w * c[2][i] for w, c, i in zip(weights, curves, idx, strict=True))
            return idx, total

        idx, slow = plan(0.0)
        if slow > budget:
            lo, hi = 0.0, 1.0
            while plan(hi)[1] > budget and hi < 1e9:
                hi *= 4.0
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                if plan(mid)[1] > budget:
                    lo = mid
                else:
                    hi = mid
            idx, _ = plan(hi)
        self._slack = {}
        total = sum(w * c[2][i] for w, c, i in zip(weights, curves, idx, strict=True))
        for m, w in zip(models, weights, strict=True):
            # budget the discrete clocks leave unspent, in this phase's own slowdown units
            self._slack[id(m)] = max(0.0, budget - total) / max(w, 1e-9)
        return {id(m): float(c[0][i]) for m, c, i in zip(models, curves, idx, strict=True)}

    def _dither_for(self, m: PhaseModel, f: float) -> tuple[float, float] | None:
        """(next lower clock, share of time at it) that spends the budget the chosen clock leaves
        (dither.py). Single phases with a fitted model only (a mix's model is too rough for it, a
        power cap has no clock steps), and only for a share worth the writes."""
        if self.composite or self.use_power or len(m.probes) < 2 or self.params["dither_period_s"] <= 0:
            return None
        clocks, cost, slow = self._curves(m)
        i = int(np.argmin(np.abs(clocks - f)))
        if i == 0 or not (cost[i - 1] < cost[i] and slow[i - 1] > slow[i]):
            return None
        share = self._slack.get(id(m), 0.0) / (slow[i - 1] - slow[i])
        if share < 0.1:
            return None
        return float(clocks[i - 1]), min(share, 0.9)

    def _realise(self, f: float, m: PhaseModel | None) -> Setpoint:
        lim = self.limits
        if self.use_power:
            if m is None or f >= m.ref.clock_mhz - 1e-6:
                return Setpoint()
            watts = m.power(f) * (1.0 + self.params["power_margin"])
            return Setpoint(power_limit_w=min(lim.power_limit_default_w, watts))
        snapped = lim.snap_clock(f)
        if snapped >= lim.sm_clock_max_mhz or (m is not None and f >= m.ref.clock_mhz - 1e-6):
            # the reference clock is what default settings chose: hand the choice back to the
            # firmware rather than pin it (a reference taken under the thermal guard's ceiling
            # would otherwise keep the GPU there after the room cooled)
            return Setpoint()
        return Setpoint(sm_clock_min_mhz=lim.sm_clock_min_mhz, sm_clock_max_mhz=snapped)

    def _dither_step(self, now: float) -> bool:
        """Follow the dither (dither.py); True when the clock was switched this tick."""
        if self.dither.low is None or self.plan_mhz is None:
            return False
        want = self.dither.clock(now, self.plan_mhz)
        if want == self.held_mhz:
            return False
        self.held_mhz = want
        self.setpoint = self._realise(want, self.current)
        self._dither_switch_t = now
        return True

    def _probe_setpoint(self, frac: float, m: PhaseModel) -> tuple[float, Setpoint]:
        """The setpoint of a fixed probe at `frac` of the phase's reference: of the clock its
        requests meet where that is the firmware's boost (PhaseModel.top_mhz), not of the mean clock
        of a mostly idle phase (an idle phase at 345 MHz was probed at 345 MHz, and the burst that
        came ran there until the probe saw it: 1.6 s of work behind it, requests twice late)."""
        ref = m.ref
        if self.use_power:
            watts = max(self.limits.power_limit_min_w, ref.power * frac)
            return watts, Setpoint(power_limit_w=watts)
        f = self.limits.snap_clock(m.top_mhz() * frac)
        return float(f), Setpoint(sm_clock_min_mhz=self.limits.sm_clock_min_mhz, sm_clock_max_mhz=f)

    def _bin(self) -> float:
        c = self.limits.sm_clocks_mhz
        return float(c[1] - c[0]) if len(c) > 1 else 15.0

    def _thermal_plan(self, m: PhaseModel, sample: Sample) -> float:
        """At the thermal limit default settings are throttled, so the budget is spent against the
        clock they would run at there, not the phase's unthrottled reference: the least-energy clock
        whose slowdown against that throttled clock fits the budget (the reference clock, handed
        back to the firmware, when nothing is known)."""
        f_td = self._throttled_clock(sample, self._thermal_power_w)
        if f_td is None:
            return m.ref.clock_mhz
        budget = self._budget_now()
        t_td = m.wall_time(f_td)
        best_f, best_e = m.ref.clock_mhz, float("inf")
        for f in self.limits.sm_clocks_mhz:
            if f > f_td or m.wall_time(f) / t_td - 1.0 > budget:
                continue
            e = m.power(f) * m.wall_time(f)
            if e < best_e:
                best_f, best_e = float(f), e
        return best_f

    def _throttled_clock(self, sample: Sample, power_w: float, m: PhaseModel | None = None) -> float | None:
        """The clock default settings would run the held serial phase (or m) at, dissipating power_w."""
        m = self.current if m is None else m
        if m is None or m.kind != "serial" or sample.sm_clock_mhz <= 0:
            return None
        offset = sample.power_now_w - m.power(sample.sm_clock_mhz)
        return m.highest_clock_within(self.limits.sm_clocks_mhz, power_w, offset)

    def throttled_work_ratio(self, sample: Sample, power_w: float, m: PhaseModel | None = None) -> float | None:
        """Work per second at the highest clock whose power, as the held phase's model (or m's) has
        it on this GPU now (offset by what the model misses at the current clock: leakage of a hot
        GPU), stays within power_w, relative to the work per second now. Serial phases only:
        arriving work is done at the rate it arrives, whatever the clock."""
        m = self.current if m is None else m
        f_default = self._throttled_clock(sample, power_w, m)
        if f_default is None:
            return None
        return m.wall_time(sample.sm_clock_mhz) / m.wall_time(f_default)

    def _thermal_slowdown(self, sample: Sample) -> float | None:
        """At the thermal limit, how much slower the GPU runs now than default would, throttled."""
        if self._thermal_power_w is None:
            return None
        ratio = self.throttled_work_ratio(sample, self._thermal_power_w)
        return None if ratio is None else max(0.0, ratio - 1.0)
