"""`model`: model-based minimum energy within a slowdown budget (the default controller).

For each workload phase it measures the phase at default settings (the reference the budget is
held against, never the current state: EAR #5), probes a few neighbouring clocks, fits how time
and power depend on the clock (phase_model.py), and runs at the clock that minimizes energy while
the predicted slowdown stays within budget. It works from samples only.

- Phase detection: a two-sided CUSUM change-point test on the residuals between what the phase
  model predicts at the held clock and what the GPU reports (utilization, DRAM progress, power).
  On a change it first looks for a known phase whose model explains the new readings (each phase
  keeps its own model); only an unknown signature is probed anew.
- Budget: across the known phases the budget is shared by a Lagrangian: each phase runs at
  argmin P(f)(1 + s(f)) + lambda s(f), lambda found by bisection so the time-weighted slowdown
  stays within the budget, so the budget goes where it saves most. A running estimate of the
  slowdown spent (probes included) tightens the budget when it runs ahead.
- Clock steps: the budget the nearest supported clock leaves unspent is spent by alternating it
  with the next lower clock for the right share of each period (dither.py).
- Mixes of phases too short to measure one by one are held as one phase, measured over whole
  cycles of the mix (mix.py).
- For the ledger, reference(sample) prices each sample by the default-settings measurement of the
  phase it belongs to (or says it cannot).
- Objectives: `min_energy` (the above), `min_edp` (energy x delay, still within the budget), and
  `power_cap` (the same choice of operating point, realised with a power limit instead of locked
  clocks, and probed with power limits, for GPUs or sites that allow only that).
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np

from ..schema import Key
from ..vocabulary import UNKNOWN_REFERENCE, DefaultReference, Sample, Setpoint
from .base import Controller
from .dither import Dither
from .mix import CLEAN_SPREAD, whole_cycles_mean
from .phase_model import PhaseModel, Probe

DRAIN_MAX_S = 5.0  # longest a mix's reference window waits for a backlog to drain (_draining)
DRAIN_MIN_S = 1.0  # saturated this long without a break: a backlog, not one short busy phase ...
DRAIN_RUN_MAX_S = 8.0  # ... and no longer than this: a mix that never leaves saturation has no backlog to see
MIX_STEP_MIN = 0.5  # a mix's refining window goes no deeper than this share of its deepest (_next_probe)


class _Cusum:
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


class ModelController(Controller):
    name = "model"
    measures_reference = True
    PARAMS = {
        "objective": Key(str, "min_energy", choices=("min_energy", "min_edp", "power_cap"),
                         doc="what to minimize within the budget"),
        "slowdown_budget": Key(float, 0.03, lo=0.0, hi=1.0, doc="largest slowdown against default, a fraction"),
        "budget_use": Key(float, 0.8, lo=0.1, hi=1.0, doc="share of the budget planned for (the rest is margin)"),
        "settle_s": Key(float, 0.4, lo=0.0, hi=10.0, doc="ignore readings this long after a change"),
        "measure_s": Key(float, 0.8, lo=0.2, hi=30.0, doc="measuring time at each probe point"),
        "probe_fracs": Key(str, "auto",
                           doc="first probe clocks as fractions of the reference clock, comma-separated; "
                               "auto: 1 - 3 x budget and 1 - 6 x budget, so probing costs scale with the budget"),
        "max_probes": Key(int, 4, lo=1, hi=10, doc="most probe points per phase"),
        "refresh_s": Key(float, 120.0, lo=5.0, hi=86400.0, doc="re-measure a held phase this often"),
        "reference_warmer_c": Key(float, 10.0, lo=1.0, hi=100.0,
                                  doc="also re-measure a held phase when the GPU is this much warmer than at "
                                      "its reference"),
        "cusum_drift": Key(float, 0.06, lo=0.0, hi=1.0, doc="CUSUM drift allowance (normalized residual)"),
        "cusum_threshold": Key(float, 0.5, lo=0.05, hi=10.0, doc="CUSUM alarm threshold"),
        "match_tolerance": Key(float, 0.12, lo=0.01, hi=1.0, doc="largest residual for a known phase to match"),
        "max_phases": Key(int, 8, lo=1, hi=64, doc="phase models kept"),
        "min_progress_pct": Key(float, 2.0, lo=0.01, hi=50.0,
                                doc="least DRAM activity (NVML memory utilization) for the progress proxy"),
        "min_progress_gpm_pct": Key(float, 0.05, lo=0.001, hi=50.0,
                                    doc="the same for GPM DRAM bandwidth, which has finer resolution"),
        "arrival_util_max": Key(float, 0.9, lo=0.5, hi=1.0,
                                doc="arrival phases: most busy share planned for (headroom for backlogs)"),
        "power_margin": Key(float, 0.03, lo=0.0, hi=0.5, doc="power_cap: limit above the predicted power"),
        "fast_changes": Key(int, 4, lo=2, hi=100,
                            doc="changes to an unknown phase (or unmeasurable windows) within 30 s after which "
                                "the mix is treated as one phase"),
        "composite_measure_s": Key(float, 4.0, lo=1.0, hi=120.0,
                                   doc="measuring window while phases change too fast to tell apart"),
        "composite_budget_share": Key(float, 0.5, lo=0.0, hi=1.0,
                                      doc="share of the budget planned for a mix of phases: DRAM progress "
                                          "weights memory-heavy phases more, so a mix's slowdown is "
                                          "underestimated"),
        "ledger_match_tolerance": Key(float, 0.2, lo=0.01, hi=1.0,
                                      doc="largest residual of one sample for the ledger to price it by a "
                                          "known phase's reference (else no saving is claimed for it)"),
        "mix_window_error": Key(float, 0.03, lo=0.0, hi=1.0,
                                doc="least relative error of one default-settings window of a mix of phases "
                                    "(beyond what the spread over its own cycles shows)"),
        "dither_period_s": Key(float, 60.0, lo=0.0, hi=3600.0,
                               doc="alternate with the next lower clock over this period to spend the budget "
                                   "the clock steps leave (0: never)"),
        "mix_window_max_s": Key(float, 30.0, lo=1.0, hi=600.0,
                                doc="longest window of a mix of phases: one in which no whole number of the "
                                    "mix's cycles is found is lengthened up to this"),
        "composite_tolerance": Key(float, 0.2, lo=0.01, hi=1.0,
                                   doc="largest window residual before a composite phase is re-measured"),
    }

    def __init__(self, params, limits):
        super().__init__(params, limits)
        p = self.params
        self.probe_fracs = self._parse_fracs(str(p["probe_fracs"]), p["slowdown_budget"])
        # a mix's probes last several of its cycles, and probing arriving work deep makes backlogs the
        # next window misreads; they go no deeper than a 3% budget's, whatever the budget. Deepest
        # first: one probe there tells arriving work from serial (_next_probe)
        self.mix_probe_fracs = sorted(max(f, g) for f, g in
                                      zip(self.probe_fracs, self._parse_fracs("auto", min(p["slowdown_budget"], 0.03)),
                                          strict=False))
        self.use_power = p["objective"] == "power_cap" or not limits.capabilities.can_lock_clocks
        self.models: list[PhaseModel] = []
        self.current: PhaseModel | None = None
        self.state = "reference"
        self.state_start: float | None = None
        self.window: list[Sample] = []
        self.probe_target: float | None = None  # clock (or power limit) being probed
        self.setpoint = Setpoint()
        self.held_f: float | None = None
        self.cusums = [_Cusum(p["cusum_drift"], p["cusum_threshold"]) for _ in range(3)]
        self.recent: deque = deque(maxlen=3)
        self.last_t: float | None = None
        self.elapsed = 0.0
        self.extra = 0.0  # estimated extra seconds spent (slowdown), probes included
        self.failed_windows = 0
        self.last_change: str = "start"
        self._curve_cache: dict = {}
        self._tick_s = 0.2
        self._window_extra_s = 0.0  # a mix window lengthened until it holds whole cycles
        self._drained_s = 0.0  # a mix reference's wait for a backlog to drain (_draining)
        self._saturated_s = 0.0  # how long the GPU has been saturated without a break
        self._thermal_power_w: float | None = None  # what default would dissipate at the thermal limit
        self._refreshing: PhaseModel | None = None  # the phase a refresh re-measures
        self._charges: dict = {}  # (phase model id, probe clock) -> [seconds, slowdown seconds charged]
        self.changes: deque = deque()  # times of phase changes and unmeasurable windows
        self.change_interval_s = 0.0
        self.composite = False  # phases change faster than they can be measured: treat the mix as one
        self._last_plan_t = float("-inf")
        self.plan_f: float | None = None  # the clock the plan chose (held_f may be its dither partner)
        self.dither = Dither(period_s=p["dither_period_s"])
        self._dither_switch_t = float("-inf")
        self._slack: dict = {}
        self._mix_windows: list[tuple[Probe, float]] = []  # default-settings windows of the current mix, and
        self._last_window_spread = 0.0                     # how far each may be off (mix.py)
        self._mix_model: PhaseModel | None = None  # the model those windows belong to
        self._pooled_cache: tuple | None = None
        self._mix_version = 0  # bumped by _set_mix_windows, keys the pooled reference
        self._mix_restart = False  # the next window of the mix starts its pool anew (the GPU warmed)

    @staticmethod
    def _parse_fracs(text: str, budget: float) -> list[float]:
        if text.strip() == "auto":
            if budget <= 0:
                return []  # no budget: nothing to probe, the phase runs at its reference
            return [max(0.5, 1.0 - 3.0 * budget), max(0.4, 1.0 - 6.0 * budget)]
        try:
            fracs = [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"probe_fracs must be 'auto' or comma-separated numbers, got {text!r}") from None
        if not fracs or not all(0.1 <= x < 1.0 for x in fracs):
            raise ValueError("probe_fracs must be fractions in [0.1, 1)")
        return fracs

    # ----- reading the window --------------------------------------------------------------------
    def _min_progress(self, s: Sample) -> float:
        p = self.params
        return p["min_progress_gpm_pct"] if s.dram_bw_pct is not None else p["min_progress_pct"]

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

    def _settle(self) -> float:
        # a 1 s averaged power reading needs a longer settle than an instant one
        return self.params["settle_s"] + (0.0 if self.limits.capabilities.has_instant_power else 0.8)

    def _draining(self, sample: Sample, dt: float) -> bool:
        """A mix's reference window waits, up to `DRAIN_MAX_S`, while the GPU is saturated at its
        start and has been for `DRAIN_MIN_S` (a 0.3 s compute phase saturates it briefly every
        cycle; waiting for those only moved where the window began) but not for longer than
        `DRAIN_RUN_MAX_S` (a mix of phases all busy all the time is saturated throughout; waiting
        there only moved the window, and one variant's ledger over-reported by 42%): it is working
        off the backlog a lower clock left (the deep probes of the phases the controller first
        tried to tell apart), which is no part of the mix at default. Counted
        in, it read a bursty mix's progress 10% high; against that reference the probes' progress
        seemed to fall with the clock, and arriving work was fitted as serial (6.7% saved where the
        best fixed clock saves 33%). A mix whose window starts in a saturated phase merely starts
        its window a phase later: the window grows to whole cycles wherever it starts."""
        if not (self.composite and self.state == "reference" and not self.window):
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
        return Probe(f=mean.f, util=mean.util, progress=cycles.progress, power=cycles.power, temp_c=mean.temp_c)

    # ----- budget ------------------------------------------------------------------------------
    def _budget_now(self) -> float:
        planned = self.params["slowdown_budget"] * self.params["budget_use"]
        if self.composite:
            planned *= self.params["composite_budget_share"]
        if self.elapsed <= 1.0:
            return planned
        spent = self.extra / max(1e-6, self.elapsed - self.extra)
        return max(0.0, planned - max(0.0, spent - planned))

    def _account(self, dt: float, slowdown: float) -> None:
        self.elapsed += dt
        self.extra += dt * max(0.0, slowdown) / (1.0 + max(0.0, slowdown))

    # ----- decisions ---------------------------------------------------------------------------
    def _curves(self, m: PhaseModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate clocks (up to the reference), cost and slowdown at each; cached per fit."""
        key = (id(m), m.version)
        cached = self._curve_cache.get(key)
        if cached is None:
            clocks = np.array(self._clocks_up_to(m), dtype=float)
            slow = np.maximum(0.0, m.slowdown(clocks))
            cost = m.energy_per_ref_second(clocks)
            if self.params["objective"] == "min_edp":
                cost = cost * (1.0 + slow)
            cached = (clocks, cost, slow)
            if len(self._curve_cache) > 4 * self.params["max_phases"]:
                self._curve_cache.clear()
            self._curve_cache[key] = cached
        return cached

    def _clocks_up_to(self, m: PhaseModel) -> list[float]:
        """The supported clocks a phase can be run at: none above its reference (the lowest if all are)."""
        return [c for c in self.limits.sm_clocks_mhz if c <= m.ref.f + 1e-6] or [float(self.limits.sm_clock_min_mhz)]

    def _allocate(self) -> dict[int, float]:
        """Per-phase clocks: minimum energy with the time-weighted slowdown within the budget.

        Lagrangian: each phase independently minimizes cost + lambda * slowdown; lambda is raised
        by bisection until the weighted slowdown fits the budget.
        """
        budget = self._budget_now()
        if budget <= 0.0 and self.composite and all(m.kind == "serial" for m in self.models):
            # the budget is spent on a mix of phases whose work waits on the clock: run at full
            # clocks until the spent share has fallen back, rather than trust the mix model's "no
            # slowdown here" (its DRAM proxy underweights the compute-heavy parts). Arriving work at
            # a clock that keeps up costs no time, so it keeps its clock
            top = float(self.limits.sm_clock_max_mhz)
            return {id(m): top for m in self.models}
        curves = [self._curves(m) for m in self.models]
        weights = np.array([max(m.seen_s, 1.0) for m in self.models])
        weights = weights / weights.sum()

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
        for m, w in zip(self.models, weights, strict=True):
            # budget the discrete clocks leave unspent, in this phase's own slowdown units
            self._slack[id(m)] = max(0.0, budget - total) / max(w, 1e-9)
        return {id(m): float(c[0][i]) for m, c, i in zip(self.models, curves, idx, strict=True)}

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
            if m is None or f >= m.ref.f - 1e-6:
                return Setpoint()
            watts = m.power(f) * (1.0 + self.params["power_margin"])
            return Setpoint(power_limit_w=min(lim.power_limit_default_w, watts))
        snapped = lim.snap_clock(f)
        if snapped >= lim.sm_clock_max_mhz or (m is not None and f >= m.ref.f - 1e-6):
            # the reference clock is what default settings chose: hand the choice back to the
            # firmware rather than pin it (a reference taken under the thermal guard's ceiling
            # would otherwise keep the GPU there after the room cooled)
            return Setpoint()
        return Setpoint(sm_clock_min_mhz=lim.sm_clock_min_mhz, sm_clock_max_mhz=snapped)

    # ----- state machine -----------------------------------------------------------------------
    def _enter(self, state: str, now: float, setpoint: Setpoint) -> None:
        self.state, self.state_start, self.window = state, now, []
        self._window_extra_s = self._drained_s = 0.0
        self.setpoint = setpoint
        for c in self.cusums:
            c.reset()
        self.recent.clear()

    def _start_reference(self, now: float, why: str) -> None:
        self.last_change = why
        self._refreshing = self.current if why == "refresh" else None
        self.current = None
        self.held_f = None
        self._enter("reference", now, Setpoint())

    def _probe_setpoint(self, frac: float, ref: Probe) -> tuple[float, Setpoint]:
        if self.use_power:
            watts = max(self.limits.power_limit_min_w, ref.power * frac)
            return watts, Setpoint(power_limit_w=watts)
        f = self.limits.snap_clock(ref.f * frac)
        return float(f), Setpoint(sm_clock_min_mhz=self.limits.sm_clock_min_mhz, sm_clock_max_mhz=f)

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

    def _hold(self, now: float, why: str) -> None:
        self._recharge_probes()
        plan = self._allocate()
        f = plan[id(self.current)]
        self.held_f = self.plan_f = f
        self.last_change = why
        self._enter("hold", now, self._realise(f, self.current))
        self.dither.set(now, self._dither_for(self.current, f))

    def _dither_step(self, now: float) -> bool:
        """Follow the dither (dither.py); True when the clock was switched this tick."""
        if self.dither.low is None or self.plan_f is None:
            return False
        want = self.dither.clock(now, self.plan_f)
        if want == self.held_f:
            return False
        self.held_f = want
        self.setpoint = self._realise(want, self.current)
        self._dither_switch_t = now
        return True

    def _next_probe(self, now: float) -> None:
        m = self.current
        n = len(m.probes)
        fracs = self.mix_probe_fracs if self.composite else self.probe_fracs
        if self.composite and n >= 1 and m.kind == "arrival":
            # a mix of arriving work (its progress kept up at the deepest fixed probe): the next
            # window goes to the clock the fit plans. Each window of a mix lasts 15 s or so, and a
            # shallower probe taught the fit little while the mix ran near default (variants of
            # LLM serving, pipeline bubbles, bursty inference: 2-4 points more saved, one bursty
            # variant 11% -> 38%). A serial mix keeps its second probe: its fit bends, and the
            # budget is spent on it
            fracs = fracs[:n]
        if n < len(fracs) and n < self.params["max_probes"]:
            target, sp = self._probe_setpoint(fracs[n], m.ref)
        elif n < self.params["max_probes"]:
            # refine around the clock the current fit would choose, if it is not probed yet
            f = self._allocate()[id(m)]
            if self.composite:
                # a mix's refining window goes at most halfway below its deepest one: fitted over
                # two windows a fifth apart in clock, the kernel time's share that scales with the
                # clock is mostly noise (a v100 bursty mix whose utilization read 0.42 then 0.40 was
                # fitted as not clock-bound at all and sent to 135 MHz, 2.4 times too slow for its
                # work: 11% of the budget spent in one window, and the mix then held at default)
                f = max(f, self.limits.snap_clock(MIX_STEP_MIN * min(p.f for p in m.points())))
            if f >= m.ref.f - 1e-6 or min(abs(p.f - f) for p in m.points()) < 3 * self._bin():
                self._hold(now, "identified")
                return
            target = f
            sp = self._realise(f, m)
        else:
            self._hold(now, "identified")
            return
        self.probe_target = target
        self._enter("probe", now, sp)

    def _bin(self) -> float:
        c = self.limits.sm_clocks_mhz
        return float(c[1] - c[0]) if len(c) > 1 else 15.0

    def _match(self, obs: Probe, exclude: PhaseModel | None, tolerance: float | None = None) -> PhaseModel | None:
        """The known phase that explains obs best within tolerance (match_tolerance by default)."""
        best, best_r = None, self.params["match_tolerance"] if tolerance is None else tolerance
        for m in self.models:
            if m is exclude:
                continue
            r = self._residual(m, obs)
            if r < best_r:
                best, best_r = m, r
        return best

    def _residual(self, m: PhaseModel, obs: Probe) -> float:
        u, prog, power = m.predict(obs.f)
        return max(abs(obs.util - u) / max(u, 0.05), abs(obs.progress - prog) / max(prog, 2.0),
                   abs(obs.power - power) / max(power, 1.0))

    def start(self, sample: Sample, current: Setpoint) -> None:
        self.last_t = sample.time_s
        self._start_reference(sample.time_s, "start")

    def decide(self, sample: Sample) -> Setpoint:
        now = sample.time_s
        if self.last_t is None:
            self.start(sample, Setpoint())
        dt = max(0.0, now - self.last_t)
        self.last_t = now
        if dt > 0:
            self._tick_s = dt
        in_state = now - self.state_start
        settled = in_state >= self._settle()
        # every tick, whatever the state: a run counted only outside holds carried a stale length
        # from an earlier probe into the next mix reference (_draining)
        self._saturated_s = self._saturated_s + dt if sample.gpu_util_pct >= 97.0 else 0.0
        # at the thermal limit default settings would be throttled too: what counts then is how much
        # slower than that the GPU runs (the guard's cut included), whatever the state
        thermal = self._thermal_slowdown(sample)
        if self.state == "hold" and self.current is not None:
            self.current.seen_s += dt
            if thermal is not None:
                self._account(dt, thermal)
                return self._decide_hold(sample, now, settled)
            # charged at the clock the GPU actually ran, so a thermal guard's (or firmware's) cuts
            # below the held clock count against the budget too
            # (not for a mix, whose clock swings with its phases under the firmware's power cap)
            ran = self.held_f
            if not self.composite and 0 < sample.sm_clock_mhz < self.held_f:
                ran = sample.sm_clock_mhz
            self._account(dt, self.current.slowdown(ran))
            return self._decide_hold(sample, now, settled)
        probe_slow = 0.0
        if self.state == "probe" and self.current is not None and not self.use_power:
            probe_slow = self.current.slowdown(self.probe_target)
            charge = self._charges.setdefault((id(self.current), self.probe_target), [0.0, 0.0])
            charge[0] += dt
            charge[1] += dt * max(0.0, probe_slow) / (1.0 + max(0.0, probe_slow))
        self._account(dt, probe_slow if thermal is None else thermal)
        if self.state == "reference" and self.last_change == "refresh" and self._thermal_power_w is not None \
                and self._refreshing in self.models:
            # the GPU reached the thermal limit during the refresh: what the window would measure is
            # the guard's (or firmware's) ceiling, no reference of default (taken as one, it had the
            # budget charged against a clock 10% under what default ran at, and a hot room's variant
            # ran 3.8% slow against 3%); the phase keeps the reference it had
            self.current = self._refreshing
            self._hold(now, "refresh abandoned: thermal limit")
            return self.setpoint
        if settled and self._draining(sample, dt):
            return self.setpoint
        if settled:
            self.window.append(sample)
            if self.state == "reference" and not self.composite and len(self.window) >= 2 \
                    and self.last_change != "refresh" and self._back_to_known(now):
                return self.setpoint
        if in_state < self._settle() + self._measure_s() + self._window_extra_s + self._drained_s:
            return self.setpoint
        if self._lengthen_mix_window():
            return self.setpoint
        obs = self._probe_from_window()
        if obs is None:
            if self._fast_change(now):
                self._start_reference(now, "phases change too fast: measuring the mix")
                return self.setpoint
            if self._back_to_known(now):
                return self.setpoint
            self.failed_windows += 1
            if self.failed_windows >= 3:  # the phase changes faster than it can be measured
                self.failed_windows = 0
                if self.models:
                    self.current = min(self.models, key=lambda m: self._residual(m, self._last_obs(sample)))
                    self._hold(now, "unstable: nearest known phase")
                else:
                    self._enter("reference", now, Setpoint())
                return self.setpoint
            self._enter(self.state, now, self.setpoint)
            return self.setpoint
        self.failed_windows = 0
        if self.state == "reference":
            known = self._match(obs, None)
            if known is not None:
                if self.composite and known is self._mix_model:
                    # the same mix again: pool its windows, each caught it at another point of its cycle
                    kept = [] if self._mix_restart else self._mix_windows
                    self._mix_restart = False
                    self._set_mix_windows([*kept, (obs, self._last_window_spread)])
                    known.ref = self._mean_obs([w for w, _ in self._mix_windows])
                else:
                    self._rebase(known, obs)  # a fresh reference for a known phase
                known.refit()
                self.current = known
                self._hold(now, "known phase")
                return self.setpoint
            m = PhaseModel(ref=obs, min_progress=self._min_progress(sample),
                           util_max=self.params["arrival_util_max"], mix=self.composite)
            self._set_mix_windows([(obs, self._last_window_spread)] if self.composite else [])
            self._mix_model = m if self.composite else None
            self.models.append(m)
            if len(self.models) > self.params["max_phases"]:
                self.models.pop(0)
            self.current = m
            self._next_probe(now)
            return self.setpoint
        # a probe finished: keep it only if it can be the same phase at a lower clock
        if not self._consistent(self.current.ref, obs):
            if self._fast_change(now):
                self._start_reference(now, "phases change too fast: measuring the mix")
            else:
                self._start_reference(now, "phase changed while probing")
            return self.setpoint
        self.current.add(obs)
        self._next_probe(now)
        return self.setpoint

    @staticmethod
    def _rebase(m: PhaseModel, obs: Probe) -> None:
        """Take a fresh reference for a known phase. Its probes were measured on a GPU of another
        temperature; leakage adds about the same watts at every clock, so they are shifted by the
        difference between the new reference and what the model predicted there, keeping the power
        curve consistent with the reference it is compared with."""
        offset = obs.power - m.power(obs.f)
        if abs(offset) <= 0.2 * max(obs.power, 1.0):
            m.shift_power(offset, with_ref=False)
        m.ref = obs

    def _extrapolated(self, m: PhaseModel, obs: Probe) -> bool:
        """True when obs was read at a clock the model has no probe near (it predicts by extrapolation)."""
        return len(m.probes) < self.params["max_probes"] + 2 and \
            min(abs(p.f - obs.f) for p in m.points()) >= 3 * self._bin()

    def _consistent(self, ref: Probe, obs: Probe) -> bool:
        """Physics a probe must obey if the phase did not change: a lower clock never makes the GPU
        less busy, never speeds progress up, and slows it at most in proportion to the clock."""
        if self.composite or self.use_power:
            return True  # a mix varies by nature; under a power cap the clock is the firmware's choice
        if obs.util < ref.util - 0.1:
            return False
        if ref.progress >= self.current.min_progress:
            ratio = obs.progress / ref.progress
            if ratio > 1.15 or ratio < 0.8 * obs.f / max(ref.f, 1.0):
                return False
        return True

    def _back_to_known(self, now: float) -> bool:
        """If the latest readings match a known phase, hold it at once (no need to measure again).
        Not on a refresh, whose point is a new measurement (the GPU has warmed, the work drifted)."""
        tail = self.window[-2:]
        if not tail or not self.models:
            return False
        obs = self._mean_obs([self._last_obs(s) for s in tail])
        known = self._match(obs, None)
        if known is None:
            return False
        self.current = known
        self._hold(now, "known phase")
        return True

    @staticmethod
    def _mean_obs(obs: list[Probe]) -> Probe:
        return Probe(f=float(np.mean([o.f for o in obs])), util=float(np.mean([o.util for o in obs])),
                     progress=float(np.mean([o.progress for o in obs])),
                     power=float(np.mean([o.power for o in obs])), temp_c=float(np.mean([o.temp_c for o in obs])))

    def _last_obs(self, s: Sample) -> Probe:
        return Probe(f=s.sm_clock_mhz, util=s.gpu_util_pct / 100.0, progress=s.progress_pct, power=s.power_now_w,
                     temp_c=s.temp_c)

    def _decide_hold(self, sample: Sample, now: float, settled: bool) -> Setpoint:
        m = self.current
        if not settled:
            return self.setpoint
        obs = self._last_obs(sample)
        if self.composite:
            return self._decide_hold_composite(m, obs, now)
        if self._dither_step(now) or now - self._dither_switch_t < self._settle():
            return self.setpoint  # readings straddle a dither switch: nothing to judge them by
        self.recent.append(obs)
        u, prog, power = m.predict(obs.f)
        residuals = ((obs.util - u) / max(u, 0.05), (obs.progress - prog) / max(prog, 2.0),
                     (obs.power - power) / max(power, 1.0))
        alarms = [c.update(r) for c, r in zip(self.cusums, residuals, strict=True)]
        if alarms[2] and not (alarms[0] or alarms[1]) and self._power_drifted(m, residuals):
            return self.setpoint
        if any(alarms):
            recent = self._mean_obs(list(self.recent))
            if self._extrapolated(m, recent) and self._consistent(m.ref, recent):
                # the held clock lies beyond the probed ones and the readings are what the same phase
                # would show at a lower clock: the model was off, not the phase. The hold is a probe
                m.add(recent)
                self._hold(now, "held clock measured")
                return self.setpoint
            other = self._match(recent, m)
            if other is not None:  # switching between known phases is cheap, however often it happens
                self.current = other
                self._hold(now, "phase change: known phase")
            elif self._fast_change(now):
                self._start_reference(now, "phases change too fast: measuring the mix")
            else:
                self._start_reference(now, "phase change: new phase")
            return self.setpoint
        warmed = obs.temp_c - m.ref.temp_c > self.params["reference_warmer_c"]
        if (now - self.state_start > self.params["refresh_s"] or warmed) and self._thermal_power_w is None:
            # not at the thermal limit: default settings measured there run under the guard's
            # ceiling, which is no measurement of default
            # also when the GPU has warmed well past its reference: default settings run differently
            # on a warm GPU (more leakage, so the firmware's power and thermal limits bite earlier)
            self._start_reference(now, "refresh")
            return self.setpoint
        # re-plan now and then: the budget tightens when the spent estimate runs ahead
        if now - self._last_plan_t < 2.0:
            return self.setpoint
        self._last_plan_t = now
        plan_f = self._allocate()[id(m)]
        if self._thermal_power_w is not None:
            plan_f = min(plan_f, self._thermal_plan(m, sample))
        # up at once (the budget tightened), down only by two steps or more: a one-step move down is
        # what the dither already spends, and following it each time flapped between neighbours
        if plan_f >= self.plan_f + self._bin() or plan_f <= self.plan_f - 2 * self._bin():
            self.held_f = self.plan_f = plan_f
            self.setpoint = self._realise(plan_f, m)
        self.dither.set(now, self._dither_for(m, self.plan_f))
        return self.setpoint

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
        offset = recent.power - m.power(recent.f)
        if abs(offset) > 0.2 * max(m.ref.power, 1.0):
            return False
        m.shift_power(offset)
        for c in self.cusums:
            c.reset()
        return True

    def _decide_hold_composite(self, m: PhaseModel, obs: Probe, now: float) -> Setpoint:
        """Composite mode: compare window means, not single readings, with the model."""
        self.window.append(obs)
        if now - self.state_start > self.params["refresh_s"]:
            self.composite = False  # look again whether the phases can now be told apart
            self._set_mix_windows([])
            self.changes.clear()
            self.models.clear()
            self._start_reference(now, "refresh")
            return self.setpoint
        if len(self.window) * 1.0 < self._measure_s() / max(1e-3, self._tick_s):
            return self.setpoint
        mean = self._mean_obs(self.window)
        self.window = []
        if mean.temp_c - m.ref.temp_c > self.params["reference_warmer_c"] and self._mix_windows_precise():
            # the mix's windows were taken on a colder GPU (less leakage, so more clock under the
            # same cap): measure it again and start its pool anew
            self._mix_restart = True
            self._start_reference(now, "GPU warmer than at the mix's reference")
            return self.setpoint
        if self._residual(m, mean) > self.params["composite_tolerance"]:
            self._start_reference(now, "composite phase changed")
            return self.setpoint
        # re-plan once per window: the budget moves as the spent share falls back (or runs ahead)
        plan_f = self._allocate()[id(m)]
        if self.held_f is None or abs(plan_f - self.held_f) >= self._bin():
            self.held_f = plan_f
            self.setpoint = self._realise(plan_f, m)
        return self.setpoint

    def reference(self, sample: Sample) -> DefaultReference:
        """The default-settings measurement of the phase this sample belongs to, for the ledger.

        The ledger asks before decide() has seen the sample, and right after a phase change the
        held phase's reference would price the new phase's work wrongly (an input stall priced as
        compute by its DRAM traffic), so the sample is matched against every known phase at its own
        clock; work no phase explains is unknown and no saving is claimed for it. A mix of phases
        too fast to tell apart is priced by the mean of all its default-settings windows: single
        windows catch the mix at different points of its cycle, the mean converges."""
        if self.composite:
            return self._mix_reference(sample)
        obs = self._last_obs(sample)
        best = self._match(obs, None, self.params["ledger_match_tolerance"])
        if best is None:
            return self._probe_reference(sample, obs)
        ratio = None
        if sample.dram_bw_pct is None and best.has_proxy:
            # NVML's memory utilization is an integer: at 33% it cannot show a 2% slowdown, which the
            # model, fitted over probes far apart, predicts better than a rounded reading shows it
            ratio = 1.0 / (1.0 + max(0.0, best.slowdown(obs.f)))
        power, slower = self._default_under_cap(best, best.ref.power + self._warm_excess_w(best, obs))
        return DefaultReference(power_w=power, progress=best.ref.progress / slower,
                                work_ratio=None if ratio is None else ratio * slower,
                                source=("phase", id(best), best.ref.f, best.ref.power))

    def _default_under_cap(self, m: PhaseModel, power_w: float) -> tuple[float, float]:
        """What default settings would draw, and how much longer their work would take than at the
        reference clock, once the GPU has warmed past the reference: the firmware holds the board
        within its default power limit, so where the warm excess would lift the reference over it
        default runs a clock step or two lower instead. Priced at the reference plus excess, an a100
        training variant capped at 400 W was priced at 401 W where default ran 1335 MHz at 394 W, and
        its saving over-reported by 22%. (The limit is never below the reference's own measured power:
        a 1 s average can read over it, and that reading is what default did.)"""
        cap = max(self.limits.power_limit_default_w, m.ref.power)
        if power_w <= cap:
            return power_w, 1.0
        offset = power_w - m.power(m.ref.f)
        f = m.highest_clock_within(self._clocks_up_to(m), cap, offset)
        return m.power(f) + offset, m.wall_time(f) / m.wall_time(m.ref.f)

    def _probe_reference(self, sample: Sample, obs: Probe) -> DefaultReference:
        """The phase being probed prices a probe's readings that its model cannot predict yet.

        A model fitted on one or two clocks extrapolates poorly, so the first probes of a phase match
        nothing and their saving went unclaimed (on a 2 minute training job, an eighth of it). A
        reading that obeys what the same work must show at a lower clock (as busy, progress no faster
        and slower at most by the clock ratio, no more power than at default) is priced by the phase's
        default-settings measurement and its measured progress: as the ledger prices its own windows.
        Only with GPM's fine-grained progress: integer memory utilization cannot show a probe's few
        percent of slowdown, and pricing its work at default's rate would claim a saving that is time."""
        m = self.current
        if self.state != "probe" or m is None or self.composite or self.use_power or not m.has_proxy \
                or sample.dram_bw_pct is None or obs.f <= 0 or obs.f > m.ref.f \
                or obs.power > m.ref.power or not self._consistent(m.ref, obs):
            return UNKNOWN_REFERENCE
        return DefaultReference(power_w=m.ref.power, progress=m.ref.progress,
                                source=("probe", id(m), m.ref.f, m.ref.power))

    def _warm_excess_w(self, m: PhaseModel, obs: Probe) -> float:
        """How many watts more the phase draws now than its model, fitted on a colder GPU, predicts.

        A reference taken on a cold GPU (the first minute of a job) underprices default settings
        once the GPU has warmed: leakage grows with temperature, and default settings would run at
        least as warm as govd does. The excess at the held clock is added to the reference: in
        watts, not as a ratio, since leakage is a larger share of a low clock's power (it is larger
        still at default's higher voltage, so this errs low). Only when the GPU is warmer than at the
        reference, and never negative, so a model's misfit on a cool GPU cannot inflate a saving."""
        if obs.temp_c - m.ref.temp_c < 2.0 or obs.f <= 0:
            return 0.0
        m.warm_excess_w += 0.02 * (obs.power - m.power(obs.f) - m.warm_excess_w)
        return max(0.0, min(0.2 * m.ref.power, m.warm_excess_w))

    def throttled_work_ratio(self, sample: Sample, power_w: float) -> float | None:
        """Work per second at the highest clock whose power, as the held phase's model has it on
        this GPU now (offset by what the model misses at the current clock: leakage of a hot GPU),
        stays within power_w, relative to the work per second now. Serial phases only: arriving
        work is done at the rate it arrives, whatever the clock."""
        f_default = self._throttled_clock(sample, power_w)
        if f_default is None:
            return None
        m = self.current
        return m.wall_time(sample.sm_clock_mhz) / m.wall_time(f_default)

    def _throttled_clock(self, sample: Sample, power_w: float) -> float | None:
        """The clock default settings would run the held serial phase at, dissipating power_w."""
        m = self.current
        if m is None or m.kind != "serial" or sample.sm_clock_mhz <= 0:
            return None
        offset = sample.power_now_w - m.power(sample.sm_clock_mhz)
        return m.highest_clock_within(self.limits.sm_clocks_mhz, power_w, offset)

    def _mix_windows_precise(self) -> bool:
        """Whether the mix's windows each agree over their own cycles within `mix_window_error`.

        Only then is a new window worth more than the pool it replaces: warming moves a mix's energy
        per unit of progress by a percent or two (leakage), which a window scattering by 5% (0.3 s
        phases read through NVML's integer memory utilization) would bury in noise; restarting the
        pool on such a window made a100 fast-phases over-report by a third."""
        w = self._mix_windows
        return bool(w) and max(e for _, e in w) < self.params["mix_window_error"]

    def _set_mix_windows(self, windows: list[tuple[Probe, float]]) -> None:
        """Replace the mix's pool of default-settings windows (the pooled reference is recomputed)."""
        self._mix_windows = windows
        self._mix_version += 1

    def _mix_reference(self, sample: Sample) -> DefaultReference:
        """The pooled reference of the mix, with the work it does per second at this clock taken from
        the mix's model where NVML's integer memory utilization is the only progress reading.

        A mix's phases can read a point off in opposite directions (a quiet phase at 4.5% reads 4
        in one run and 5 in another, a burst at 42.5% reads 42 or 43): the reference window and
        the held clock's readings round differently, and pricing by their ratio put an a100 bursty
        mix's default energy 5% low (the ledger under-reported its saving by 12%). The model's
        slowdown, fitted over windows at clocks far apart, is what the budget is spent by; it
        prices the work once the mix has probes (a reference alone predicts nothing)."""
        pooled = self._pooled_reference()
        m = self._mix_model
        f = sample.sm_clock_mhz
        if not pooled.known or sample.dram_bw_pct is not None or m is None or not m.has_proxy \
                or m.kind != "arrival" or self.state != "hold" or m is not self.current \
                or not m.probes or f < min(p.f for p in m.probes):
            # a probe is what tests the model, and below its deepest probe the model extrapolates (two
            # windows a few percent apart fitted kernel time falling with the clock; a v100 mix probed
            # at 135 MHz, 2.4 times slower, was priced as on time): the readings price those
            return pooled
        ratio = 1.0 / (1.0 + max(0.0, m.delay(f)))
        return replace(pooled, work_ratio=ratio)

    def _pooled_reference(self) -> DefaultReference:
        # asked for at every tick, changed once per window: computed when the pool changes
        if self._pooled_cache is None or self._pooled_cache[0] != self._mix_version:
            self._pooled_cache = (self._mix_version, self._pool())
        return self._pooled_cache[1]

    def _pool(self) -> DefaultReference:
        w = self._mix_windows
        if not w:
            return UNKNOWN_REFERENCE
        n = len(w)
        p = np.array([o.power for o, _ in w])
        r = np.array([o.progress for o, _ in w])
        mean_p, mean_r = float(p.mean()), float(r.mean())
        # each window: what its own cycles show, at least the floor for what they cannot
        single = float(np.mean([max(e, self.params["mix_window_error"]) for _, e in w]))
        se = 0.0
        if n >= 2 and mean_p > 0 and mean_r > 0:
            # delta method for a ratio of means: the spread of P/P_mean - R/R_mean between windows
            se = float(np.std(p / mean_p - r / mean_r, ddof=1) / np.sqrt(n))
        return DefaultReference(power_w=mean_p, progress=mean_r, rel_error=max(se, single / float(np.sqrt(n))),
                                source=("mix", self._mix_version))

    def note_thermal(self, default_power_w: float | None) -> None:
        self._thermal_power_w = default_power_w

    def _thermal_plan(self, m: PhaseModel, sample: Sample) -> float:
        """At the thermal limit default settings are throttled, so the budget is spent against the
        clock they would run at there, not the phase's unthrottled reference: the least-energy clock
        whose slowdown against that throttled clock fits the budget (the reference clock, handed
        back to the firmware, when nothing is known)."""
        f_td = self._throttled_clock(sample, self._thermal_power_w)
        if f_td is None:
            return m.ref.f
        budget = self._budget_now()
        t_td = m.wall_time(f_td)
        best_f, best_e = m.ref.f, float("inf")
        for f in self.limits.sm_clocks_mhz:
            if f > f_td or m.wall_time(f) / t_td - 1.0 > budget:
                continue
            e = m.power(f) * m.wall_time(f)
            if e < best_e:
                best_f, best_e = float(f), e
        return best_f

    def _thermal_slowdown(self, sample: Sample) -> float | None:
        """At the thermal limit, how much slower the GPU runs now than default would, throttled."""
        if self._thermal_power_w is None:
            return None
        ratio = self.throttled_work_ratio(sample, self._thermal_power_w)
        return None if ratio is None else max(0.0, ratio - 1.0)

    def status(self) -> dict:
        m = self.current
        return {
            "state": self.state, "phases_known": len(self.models), "last_change": self.last_change,
            "composite": self.composite,
            "held_clock_mhz": self.held_f,
            "phase": None if m is None else {"kind": m.kind, "reference_clock_mhz": round(m.ref.f),
                                             "predicted_slowdown": round(m.slowdown(self.held_f), 4)
                                             if self.held_f else None,
                                             "probes": len(m.probes), "has_progress_proxy": m.has_proxy},
            "budget": self.params["slowdown_budget"],
            "estimated_slowdown_spent": round(self.extra / max(1e-6, self.elapsed - self.extra), 4)
            if self.elapsed > 0 else 0.0,
            "dither": None if self.dither.low is None or self.state != "hold" else
            {"planned_clock_mhz": self.plan_f, "lower_clock_mhz": self.dither.low,
             "lower_share": round(self.dither.share, 3)},
        }
