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

import itertools
from collections import deque
from dataclasses import replace

from ..settings import Setpoint
from ..telemetry import Sample
from .base import NO_CONTEXT, Controller, TickContext
from .dither import Dither
from .mix import MixWindow
from .model_detect import Cusum, PhaseDetection
from .model_memory import MemoryHandling
from .model_mix import MixHandling
from .model_params import MODEL_EXPERT, MODEL_PARAMS
from .model_plan import Planner
from .model_pricing import ModelPricing
from .model_state import State
from .phase_model import BUSY_MIX_REF_UTIL, SATURATED_UTIL, PhaseModel, Probe

REPLAN_MIN_SHARE = 0.02  # a held clock follows a new plan only when it moves by this share of the clock or more
MIX_STEP_MIN = 0.5  # a mix's refining window goes no deeper than this share of its deepest (_next_probe)


class ModelController(PhaseDetection, MixHandling, MemoryHandling, Planner, Controller):
    name = "model"
    PARAMS = MODEL_PARAMS
    EXPERT = MODEL_EXPERT

    def __init__(self, params, limits):
        super().__init__(params, limits)
        self.counterfactual = ModelPricing(self)
        p = self.params
        self.probe_fracs = self._parse_fracs(str(p["probe_fracs"]), p["slowdown_budget"])
        shallow = self._parse_fracs("auto", min(p["slowdown_budget"], 0.03))
        if p["bound"] == "both":
            # under a latency bound a request served during a probe is late by its kernels' stretch
            # there, and a deep probe of arriving work leaves a backlog behind: probes go no deeper
            # than a 3% budget's, whatever the budget (a 10% budget's probe at 0.4 of the clock made
            # a serving trace's requests 7% late on average, more than its whole plan did)
            self.probe_fracs = [max(f, g) for f, g in zip(self.probe_fracs, shallow, strict=False)]
        # a mix's probes last several of its cycles, and probing arriving work deep makes backlogs the
        # next window misreads; they go no deeper than a 3% budget's, whatever the budget. Deepest
        # first: one probe there tells arriving work from serial (_next_probe)
        self.mix_probe_fracs = sorted(max(f, g) for f, g in zip(self.probe_fracs, shallow, strict=False))
        if p["bound"] == "both" and len(self.mix_probe_fracs) > 1:
            # under a latency bound the shallowest first: a mix's windows last many of its cycles,
            # and every request served in one is late by its kernels' full stretch at the probe
            # clock. A mix of arriving work then goes to the clock its fit plans; a serial mix, whose
            # fit bends, still gets the deep probe
            self.mix_probe_fracs = [self.mix_probe_fracs[-1], *self.mix_probe_fracs[:-1]]
        self.use_power = p["objective"] == "power_cap" or not limits.capabilities.can_lock_clocks
        self.models: list[PhaseModel] = []
        self.current: PhaseModel | None = None
        self.state = State.REFERENCE
        self.state_start: float | None = None
        self.window: list[Sample] = []
        self.probe_target: float | None = None  # clock (or power limit) being probed
        self.setpoint = Setpoint()
        self.held_mhz: float | None = None
        self.cusums = [Cusum(p["cusum_drift"], p["cusum_threshold"]) for _ in range(3)]
        self.recent: deque = deque(maxlen=3)
        self.last_t: float | None = None
        self.elapsed = 0.0
        self.extra = 0.0  # estimated extra seconds spent (slowdown), probes included
        self.lat_work_s = 0.0  # work of latency-planned phases so far (kernel seconds at the reference)
        self.lat_extra_s = 0.0  # and the latency it is estimated to have gained (work x stretch), probes included
        self._lat_charged: set = set()  # (phase model key, probe clock) charged to the latency estimate
        self.failed_windows = 0
        self.last_change: str = "start"
        self._curve_cache: dict = {}
        self._uids = itertools.count(1)  # keys of phase models (Planner._uid)
        self._tick_s = 0.2
        self._window_extra_s = 0.0  # a mix window lengthened until it holds whole cycles
        self._mix_window_s = 0.0  # how long the mix's last window grew to (its held windows are as long)
        self._hold_floor_mhz = 0.0  # the clock a hold stays at or above through its re-plans (_hold)
        self._refreshed_mix: PhaseModel | None = None  # the mix held when the last refresh began
        self._drained_s = 0.0  # a mix reference's wait for a backlog to drain (_draining)
        self._saturated_s = 0.0  # how long the GPU has been saturated without a break
        self.burst_guard = False  # a saturated burst of a mix runs at default settings (_burst_guarded)
        self._thermal_power_w: float | None = None  # what default would dissipate at the thermal limit
        self._refreshing: PhaseModel | None = None  # the phase a refresh re-measures
        self._charges: dict = {}  # (phase model key, probe clock) -> [seconds, slowdown seconds charged]
        self.changes: deque = deque()  # times of phase changes and unmeasurable windows
        self.change_interval_s = 0.0
        self.composite = False  # phases change faster than they can be measured: treat the mix as one
        self._last_plan_t = float("-inf")
        self.plan_mhz: float | None = None  # the clock the plan chose (held_mhz may be its dither partner)
        self.dither = Dither(period_s=p["dither_period_s"])
        self._dither_switch_t = float("-inf")
        self._slack: dict = {}
        self._mix_windows: list[MixWindow] = []  # default-settings windows of the current mix (mix.py)
        self._last_window: MixWindow | None = None  # the last window of a mix, as a default-settings window
        self._mix_model: PhaseModel | None = None  # the model those windows belong to
        self._mix_version = 0  # bumped by _set_mix_windows, keys the pooled reference
        self._mix_restart = False  # the next window of the mix starts its pool anew (the GPU warmed)
        self.memory_dropped = 0  # recalled models dropped because their predictions missed
        self._trial_obs: list[Probe] = []  # a recalled model's hold readings, for its check (model_memory.py)
        self._start_tail: list[Sample] = []  # readings before the first settle, matched against remembered phases
        self.mix_memory: list[PhaseModel] = []  # mixes identified in this run: a mix seen again is held at once
        self.learned_keys: set[str] = set()  # fingerprints of phases learned here and exported (import_models)

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
    def _arrival_util_max(self) -> float:
        """Busy share planned for arriving work: headroom for requests' queueing when the budget
        bounds latency, just keeping up when it bounds end time only."""
        if self.params["bound"] == "time":
            return self.params["arrival_util_max_time"]
        return self.params["arrival_util_max"]

    def _min_progress(self, s: Sample) -> float:
        p = self.params
        return p["min_progress_gpm_pct"] if s.dram_bw_pct is not None else p["min_progress_pct"]

    def _settle(self) -> float:
        # a 1 s averaged power reading needs a longer settle than an instant one
        return self.params["settle_s"] + (0.0 if self.limits.capabilities.has_instant_power else 0.8)

    # ----- budget ------------------------------------------------------------------------------
    # ----- decisions ---------------------------------------------------------------------------
    # ----- state machine -----------------------------------------------------------------------
    def _enter(self, state: State, now: float, setpoint: Setpoint) -> None:
        self.state, self.state_start, self.window = state, now, []
        self._window_extra_s = self._drained_s = 0.0
        self.setpoint = setpoint
        for c in self.cusums:
            c.reset()
        self.recent.clear()
        self._trial_obs = []
        self._hold_floor_mhz = 0.0

    def _start_reference(self, now: float, why: str) -> None:
        self.last_change = why
        self._refreshing = self.current if why == "refresh" else None
        self.current = None
        self.held_mhz = None
        self._enter(State.REFERENCE, now, Setpoint())

    def _hold(self, now: float, why: str, floor_mhz: float = 0.0) -> None:
        """Hold the current phase at its planned clock, or at floor_mhz where the plan is deeper, for
        the whole hold: its re-plans keep the floor too (a quiet mix held at 1515 MHz, the deepest it
        was measured at, was re-planned to 495 and 345 MHz as its budget came back, on serial work:
        `batch` ran h100 gen:training:378584 14% long; docs/decisions/030)."""
        if self.composite and self.current is not None and self.current.mix and self.current.probes \
                and self.current not in self.mix_memory:
            self.mix_memory = [*self.mix_memory, self.current][-self.params["max_phases"]:]
        if self.composite and self.current is not None and self.current.mix:
            self._mix_refreshed(self.current)
        self._recharge_probes()
        self._charge_probes_latency(self.current)
        plan = self._allocate()
        f = max(plan[id(self.current)], floor_mhz)
        self.held_mhz = self.plan_mhz = f
        self.last_change = why
        self._enter(State.HOLD, now, self._realise(f, self.current))
        self._hold_floor_mhz = floor_mhz  # through the whole hold: its re-plans keep it (_enter resets it)
        self.dither.set(now, self._dither_for(self.current, f))

    def _resume(self, known: PhaseModel, now: float, why: str) -> None:
        """Run a known phase: hold it, or, if its first probes were cut short by a change of phase
        (a phase shorter than its reference and probes), go on probing it where they stopped.
        Phases of a few seconds that come back are identified over their occurrences, and held one
        by one, rather than taken for a mix."""
        self.current = known
        if not self.composite and len(known.probes) < min(len(self.probe_fracs), self.params["max_probes"]):
            self.last_change = why
            self._next_probe(now)
        else:
            self._hold(now, why)

    def _next_probe(self, now: float) -> None:
        m = self.current
        n = len(m.probes)
        fracs = self.mix_probe_fracs if self.composite else self.probe_fracs
        if self.composite and n >= 1 and m.kind == "arrival":
            # a mix of arriving work (its progress kept up at the deepest fixed probe): the next
            # window goes to the clock the fit plans; a serial mix keeps its second probe, since its
            # fit bends and the budget is spent on it (docs/decisions/005)
            fracs = fracs[:n]
        if not self.composite and m.latency_planned() and m.ref.saturated:
            # no clock below the reference is planned for it (PhaseModel.stretch): nothing to probe
            self._hold(now, "identified")
            return
        if self.composite and self._mix_probe_waits(m, n):
            # a mix's further probes wait for budget: each lasts many of its cycles, and work that
            # arrives meanwhile meets its clock (a busy training mix's second fixed probe, at 0.82 of
            # its clock with the requests' budget spent, was met by serving work whose prefills
            # saturated the GPU there: the run's requests 8.5% late)
            self._hold(now, "identified")
            return
        if self.composite and m.boost_bound():
            # a mix too idle (or with too little DRAM traffic) to read its requests' stretch from: its
            # windows caught the quiet between bursts, and a probe, which lasts several cycles and
            # ends only when the guard sees saturation, meets the next burst below the clock default
            # runs it at. A burst that keeps the GPU saturated at default keeps whatever backlog it
            # met for as long as it lasts: a fixed probe at 0.91 of the boost left 20 ms behind 24 ms
            # requests for a 7.5 s burst, which ran 47% late, and the run 5.7% (gen:bursty:253428).
            # It is planned by the cautious stretch from the boost, which no probe changes, so it is
            # probed once, at the clock that stretch allows (for its power there), and then held
            if n >= 1:
                self._hold(now, "identified")
                return
            frac = 1.0 / (1.0 + max(0.0, self._budget_now(latency=True)))
            target, sp = self._probe_setpoint(frac, m)
            if frac >= 1.0 or (not self.use_power and target >= m.top_mhz() - 1e-6):
                self._hold(now, "identified")
                return
            self._start_probe(now, target, sp)
            return
        if self.composite and n >= 1 and m.cautious and self.params["bound"] == "time":
            # a mix whose windows could not tell arriving work from serial (PhaseModel.cautious):
            # not its next fixed window, which tells less, but one that tells more
            f = self._telling_window_mhz(m)
            if f is None:
                self._hold(now, "identified")
                return
            target, sp = f, self._realise(f, m)
        elif n < len(fracs) and n < self.params["max_probes"]:
            target, sp = self._probe_setpoint(fracs[n], m)
            if self.composite and n >= 1 and self.params["bound"] == "both" and not self.use_power:
                # under both bounds a mix's further fixed window goes no deeper than end time's
                # budget left can pay for, were its work serial as its fit reads it (a fixed window
                # lasts 20-30 s): h100 gen:mixed:910188's second window, at 0.82 of its clock with
                # 1.1% of budget left, ran to the end of its 133 s job, 4.36% long (decision 025).
                # Where no clock a few steps below the reference is affordable the mix is held
                affordable = self._lowest_affordable_mhz(m, self._next_window_s(), any_clock=True)
                if affordable > target:
                    if affordable >= m.ref.clock_mhz - 3 * self._bin():
                        self._hold(now, "identified")
                        return
                    target, sp = affordable, self._realise(affordable, m)
        elif n < self.params["max_probes"]:
            # refine around the clock the current fit would choose, if it is not probed yet
            f = self._allocate()[id(m)]
            if self.composite:
                # a mix's refining window goes at most halfway below its deepest one: fitted over
                # two windows a fifth apart in clock, the kernel time's share that scales with the
                # clock is mostly noise (a v100 bursty mix whose utilization read 0.42 then 0.40 was
                # fitted as not clock-bound at all and sent to 135 MHz, 2.4 times too slow for its
                # work: 11% of the budget spent in one window, and the mix then held at default)
                step = MIX_STEP_MIN
                if self.params["bound"] == "time" and self.probe_fracs and m.ref.util >= BUSY_MIX_REF_UTIL:
                    # under a time bound a mix busy half its time or more goes one fixed step:
                    # nothing else stops a mix read as arriving work (free until it saturates) from
                    # going deep, and two windows of a training mix whose load moved between them
                    # read so: its next window at 915 MHz, 30 s at 0.56 of its clock, and `batch`
                    # ran 11% long. A quieter mix keeps the halfway step: the headroom it reads is
                    # there (`idle` under `batch` saved 4.4% with one step, 39.6% without)
                    step = max(step, min(self.probe_fracs))
            elif self.probe_fracs:
                # a single phase's refining probe goes at most one fixed step below its deepest: two
                # probes that showed no change fit a phase the clock does not touch, and one far below
                # them meets a roofline's knee. A decode phase was sent to 345 MHz under a latency
                # bound, its requests 30% late there; a copy loop on a real H200, flat from 1980 to
                # 1620 MHz, was sent to 870 under `batch`, 1.9 times slower there, which spent the
                # budget its knee (1440 MHz, 19% less energy) needed (docs/hardware.md)
                step = min(self.probe_fracs)
            else:
                step = None  # no fixed probes to step by
            deepest = min(p.clock_mhz for p in m.points())
            if step is not None:
                f = max(f, self.limits.snap_clock(step * deepest))
            if self.composite and self.params["bound"] == "time" and m.kind == "arrival":
                # under a time bound an arriving mix's refining window goes no deeper than end time's
                # budget could pay for were its work serial (the costlier reading), and at least one
                # fixed step: a training mix whose reference window caught a checkpoint's end read
                # arriving work, and its refining window went halfway down, to 0.43 of its clock,
                # for 30 s (gen:training:185263, 10% long). Over 134 dev runs the windows kept so
                # saved more (decision 020)
                one_step = self._mix_step_below_mhz(deepest)
                if self._budget_now() <= 0.0:
                    # with end time's budget read as spent it takes no refining window, and is held
                    # no deeper than it was measured: a quiet mix's window one step down, at 375 MHz
                    # from 740 with the budget spent, met a training job's steps there, which ran
                    # 16 s at a quarter of their clock before the window ended (h100
                    # gen:mixed:480411, 4.03% long; decision 026)
                    self._hold(now, "identified: no budget for a refining window", floor_mhz=deepest)
                    return
                f = max(f, min(self._lowest_affordable_mhz(m, self._next_window_s()), one_step))
            if f >= m.ref.clock_mhz - 1e-6 or min(abs(p.clock_mhz - f) for p in m.points()) < 3 * self._bin():
                self._hold(now, "identified")
                return
            target = f
            sp = self._realise(f, m)
        else:
            self._hold(now, "identified")
            return
        self._start_probe(now, target, sp)

    def _start_probe(self, now: float, target: float, setpoint: Setpoint) -> None:
        """Probe target (a clock, or a power limit) through setpoint, which realises it."""
        self.probe_target = target
        self._enter(State.PROBE, now, setpoint)

    def _telling_window_mhz(self, m: PhaseModel) -> float | None:
        """Under a time bound, the clock of the next window of a mix whose windows so far cannot
        tell arriving work from serial (PhaseModel.cautious); None where there is none to take (it
        has its probes, or no clock three steps below its deepest is affordable).

        A deeper window tells the two readings apart better (the gap between them grows as the
        clock falls), so it goes as deep as the cautious reading can pay for a window of its
        length, and one fixed step below the deepest at most. Early in a run little is affordable,
        so a mix held meanwhile takes the window once its budget has grown (_decide_hold_composite):
        held at its first window's reading, a pipeline whose forward passes kept their progress
        within 2% at 0.82 of its clock saved 5.4% under `batch`, and 24.8% once a window at 0.78
        told (h100 gen:pipeline:844616)."""
        if len(m.probes) >= self.params["max_probes"]:
            return None
        deepest = min(p.clock_mhz for p in m.points())
        f = max(self._mix_step_below_mhz(deepest),
                self._lowest_affordable_mhz(m, self._next_window_s(), any_clock=True))
        return None if f >= deepest - 3 * self._bin() else f

    def _mix_step_below_mhz(self, deepest_mhz: float) -> float:
        """One fixed step below deepest_mhz, the deepest clock a mix was measured at: the
        shallowest probe fraction of it, or `MIX_STEP_MIN` of it without fixed probes."""
        return self.limits.snap_clock(min(self.probe_fracs or [MIX_STEP_MIN]) * deepest_mhz)

    def _mix_probe_waits(self, m: PhaseModel, n: int) -> bool:
        """Whether a mix's next window waits for budget. Under a latency bound its further windows
        do, once the requests' budget is spent. Under either bound (both bound end time) a mix whose
        work waits on the clock (saturated at default in a quarter of its readings, or busy at default
        and read serial by its first window) waits while end time's budget is spent: each window
        lasts 20-30 s at up to 0.82 of its clock, and busy training mixes probed again after their
        first window had spent the budget ran 5-9% long under `batch` (gen:training:44595, 991031),
        and 3.6% under `balanced` (a100 gen:training:44595, a mix met anew after a checkpoint;
        docs/decisions/024). Its windows so far are first charged at what its fit says they cost.
        Quieter mixes do not wait: their windows cost little end time, and bursty mixes, whose first
        window often reads serial, saved 1.6-1.9 points less waiting."""
        waits_on_clock = m.busy_mix() or (n >= 1 and m.kind == "serial" and m.busy_at_reference())
        if self.params["bound"] == "both":
            if n >= 1 and self._budget_now(latency=True) <= 0.0:
                return True
            if not waits_on_clock:
                return False
        self._recharge_probes()
        return waits_on_clock and self._budget_now() <= 0.0

    def start(self, sample: Sample, current: Setpoint) -> None:
        self.last_t = sample.time_s
        self._start_reference(sample.time_s, "start")

    def work_changed(self, time_s: float) -> None:
        """A job started or ended: a hold or probe of the work before ends, and the work now is
        measured at default settings. What was learned stays (the same work may come back), and so
        does the budget spent (the bound is kept over the run)."""
        if self.state in (State.HOLD, State.PROBE):
            self._start_reference(time_s, "the work changed: a job started or ended")

    def decide(self, sample: Sample, context: TickContext = NO_CONTEXT) -> Setpoint:
        setpoint = self._decide(sample, context)
        return Setpoint() if self._burst_guarded(sample) else setpoint

    def _decide(self, sample: Sample, context: TickContext) -> Setpoint:
        # at the thermal limit: what default settings would dissipate there (TickContext)
        self._thermal_power_w = context.thermal_default_power_w
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
        self._saturated_s = self._saturated_s + dt if sample.gpu_util_pct / 100.0 >= SATURATED_UTIL else 0.0
        # at the thermal limit default settings would be throttled too: what counts then is how much
        # slower than that the GPU runs (the guard's cut included), whatever the state
        thermal = self._thermal_slowdown(sample)
        if self.state == State.HOLD and self.current is not None:
            self.current.seen_s += dt
            if thermal is not None:
                self._account(dt, thermal)
                return self._decide_hold(sample, now, settled)
            # charged at the clock the GPU actually ran, so a thermal guard's (or firmware's) cuts
            # below the held clock count against the budget too
            # (not for a mix, whose clock swings with its phases under the firmware's power cap)
            ran = self.held_mhz
            if not self.composite and 0 < sample.sm_clock_mhz < self.held_mhz:
                ran = sample.sm_clock_mhz
            self._account(dt, self.current.slowdown(ran))
            if self.current.latency_planned():
                self._account_latency(dt, self.current, ran)
            return self._decide_hold(sample, now, settled)
        probe_slow = 0.0
        if self.state == State.PROBE and self.current is not None and not self.use_power:
            probe_slow = self.current.slowdown(self.probe_target)
            charge = self._charges.setdefault((self._uid(self.current), self.probe_target), [0.0, 0.0])
            charge[0] += dt
            charge[1] += dt * max(0.0, probe_slow) / (1.0 + max(0.0, probe_slow))
        self._account(dt, probe_slow if thermal is None else thermal)
        if self.state == State.REFERENCE and self.last_change == "refresh" and self._thermal_power_w is not None \
                and self._refreshing in self.models:
            # the GPU reached the thermal limit during the refresh: what the window would measure is
            # the guard's (or firmware's) ceiling, no reference of default; the phase keeps the
            # reference it had (docs/decisions/006)
            self.current = self._refreshing
            self._hold(now, "refresh abandoned: thermal limit")
            return self.setpoint
        if not settled and self.state == State.REFERENCE and self.last_change == "start" \
                and any(m.memory_age_s is not None for m in self.models):
            # taking over a GPU nothing has just changed: its readings need no settling, and work the
            # store remembers is held from its first two readings
            self._start_tail.append(sample)
            if len(self._start_tail) >= 2 and self._back_to_known(now, self._start_tail):
                return self.setpoint
        if settled and self._draining(sample, dt):
            return self.setpoint
        if settled:
            self.window.append(sample)
            if self.state == State.PROBE and not self.composite and sample.gpu_util_pct / 100.0 >= SATURATED_UTIL \
                    and self._window_mixes_phases():
                # work the probe's ceiling cannot keep up with arrived: back to default settings at
                # once, not at the window's end (a burst that arrived during a quiet phase's probe at
                # 345 MHz ran there for 2.4 s of failed windows, and its requests were 10 times late).
                # A change the clock keeps up with waits for the window's end: a lone request in an
                # idle phase interrupted every probe of it
                self._probe_interrupted(now)
                return self.setpoint
            if self.state == State.REFERENCE and not self.composite and len(self.window) >= 2 \
                    and self.last_change != "refresh" and self._back_to_known(now):
                return self.setpoint
        if in_state < self._settle() + self._measure_s() + self._window_extra_s + self._drained_s:
            return self.setpoint
        if self._lengthen_mix_window():
            return self.setpoint
        if self.composite:
            self._mix_window_s = self._measure_s() + self._window_extra_s
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
                    self._enter(State.REFERENCE, now, Setpoint())
                return self.setpoint
            self._enter(self.state, now, self.setpoint)
            return self.setpoint
        self.failed_windows = 0
        if self.state == State.REFERENCE:
            known = self._match(obs, None)
            if known is None and self.composite and self._adopt_mix(obs, now):
                return self.setpoint
            if known is not None:
                if self.composite and known is self._mix_model:
                    # the same mix again: pool its windows, each caught it at another point of its cycle
                    kept = [] if self._mix_restart else self._mix_windows
                    self._mix_restart = False
                    self._set_mix_windows([*kept, self._last_window])
                    pooled = [w.probe for w in self._mix_windows]
                    busy = [p.busy_kernel for p in pooled if p.busy_kernel > 0]
                    known.ref = replace(self._mean_obs(pooled), progress_sd=sum(
                        p.progress_sd ** 2 for p in pooled) ** 0.5 / len(pooled),
                        busy_kernel=sum(busy) / len(busy) if busy else 0.0)
                    known.refit()
                    self.current = known
                    if not known.probes:
                        # its probing waited for budget (_mix_probe_waits), which may be back: held
                        # instead, `training-stalls` stayed at default for good (4.4% -> 0.7% saved
                        # under `batch`; under `balanced` 2.9% -> 0.7% once its mixes waited too,
                        # docs/decisions/024)
                        self.last_change = "known phase"
                        self._next_probe(now)
                    else:
                        self._hold(now, "known phase")
                    return self.setpoint
                probed = bool(known.probes)
                if self.composite:
                    # another mix measured earlier in this run: the pool of default-settings windows is
                    # the current mix's, and the ledger prices its work by it (ModelPricing); kept for
                    # the mix it was measured on, it priced a steady decode by a quieter mix's energy
                    # per unit of DRAM traffic, at twice what default drew (h100, gen:serving:888122)
                    self._mix_model = known
                    self._set_mix_windows([self._last_window])
                self._rebase(known, obs)  # a fresh reference for a known phase
                known.refit()
                if known.mix and probed and not known.probes:
                    self.current = known
                    self.last_change = "known phase"
                    self._next_probe(now)  # its probes were dropped (PhaseModel.drop_foreign_probes)
                    return self.setpoint
                self._resume(known, now, "known phase")
                return self.setpoint
            m = PhaseModel(ref=obs, min_progress=self._min_progress(sample),
                           util_max=self._arrival_util_max(), mix=self.composite,
                           latency_bound=self.params["bound"] == "both", boost_mhz=self.limits.sm_clock_max_mhz)
            self._mix_model = m if self.composite else None
            self._set_mix_windows([self._last_window] if self.composite else [])
            m.refit()  # with its saturated share (PhaseModel.busy_mix)
            self.models.append(m)
            if len(self.models) > self.params["max_phases"]:
                self.models.pop(0)
            self.current = m
            self._next_probe(now)
            return self.setpoint
        # a probe finished: keep it only if it can be the same phase at a lower clock
        if not self._consistent(self.current.ref, obs):
            self._probe_interrupted(now)
            return self.setpoint
        self.current.add(obs)
        self._next_probe(now)
        return self.setpoint

    def _probe_interrupted(self, now: float) -> None:
        """The readings of a probe are not the probed phase's: a known phase again, or a new one."""
        tail = self._mean_obs([self._last_obs(s) for s in self.window[-2:]])
        other = None if self.composite else self._match(tail, self.current)
        if other is not None:  # the work went back to a phase seen before: no news of a fast mix
            self._resume(other, now, "phase change: known phase")
        elif self._fast_change(now):
            self._start_reference(now, "phases change too fast: measuring the mix")
        else:
            self._start_reference(now, "phase changed while probing")

    @staticmethod
    def _rebase(m: PhaseModel, obs: Probe) -> None:
        """Take a fresh reference for a known phase. Its probes were measured on a GPU of another
        temperature; leakage adds about the same watts at every clock, so they are shifted by the
        difference between the new reference and what the model predicted there, keeping the power
        curve consistent with the reference it is compared with."""
        offset = obs.power - m.power(obs.clock_mhz)
        if abs(offset) <= 0.2 * max(obs.power, 1.0):
            m.shift_power(offset, with_ref=False)
        if m.mix:
            m.kind_before_rebase = m.kind  # its probes were read against the old one (PhaseModel.refit)
        m.ref = obs
        m.drop_foreign_probes()  # a busy mix's, under a time bound, that its new reference disowns

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
        if not m.verified:
            self._trial_obs.append(obs)
        u, prog, power = m.predict(obs.clock_mhz)
        residuals = ((obs.util - u) / max(u, 0.05), (obs.progress - prog) / max(prog, 2.0),
                     (obs.power - power) / max(power, 1.0))
        alarms = [c.update(r) for c, r in zip(self.cusums, residuals, strict=True)]
        if alarms[2] and not (alarms[0] or alarms[1]) and self._power_drifted(m, residuals):
            return self.setpoint
        if (any(alarms) and self._trial_missed(m, now)) or self._trial_check(m, now):
            self._start_reference(now, "remembered phase missed its check: measuring it anew")
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
                self._resume(other, now, "phase change: known phase")
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
        plan_mhz = max(self._allocate()[id(m)], self._hold_floor_mhz)
        if self._thermal_power_w is not None:
            plan_mhz = min(plan_mhz, self._thermal_plan(m, sample))
        # up at once when the budget tightened (spent ahead of plan); otherwise only by two steps and
        # 2% of the clock or more: a one-step move is what the dither already spends, and following
        # each one flapped between neighbours (at the thermal limit the plan moves with every integer
        # reading of the temperature: a v100, 7.5 MHz a step, reversed 33 times in 5 minutes)
        tightened = self._end_time_spent() > self.params["slowdown_budget"] * self.params["budget_use"]
        step = max(2 * self._bin(), REPLAN_MIN_SHARE * self.plan_mhz)
        if plan_mhz >= self.plan_mhz + (self._bin() if tightened else step) or plan_mhz <= self.plan_mhz - step:
            self.held_mhz = self.plan_mhz = plan_mhz
            self.setpoint = self._realise(plan_mhz, m)
        self.dither.set(now, self._dither_for(m, self.plan_mhz))
        return self.setpoint

    def _decide_hold_composite(self, m: PhaseModel, obs: Probe, now: float) -> Setpoint:
        """Composite mode: compare window means, not single readings, with the model."""
        self.window.append(obs)
        if now - self.state_start > self._mix_refresh_after_s(m):
            self._refreshed_mix = m
            self.composite = False  # look again whether the phases can now be told apart
            self._set_mix_windows([])
            self.changes.clear()
            self.models.clear()
            self._start_reference(now, "refresh")
            return self.setpoint
        # as long as the mix's own windows grew to: a shorter one holds part of a cycle, whose mean
        # is no measure of the mix (a 9 s burst-and-quiet cycle read through 5 s windows was "changed"
        # at every other window, and measured anew at default settings each time)
        if len(self.window) * 1.0 < max(self._measure_s(), self._mix_window_s) / max(1e-3, self._tick_s):
            return self.setpoint
        mean = self._mean_obs(self.window)
        saturated = sum(o.saturated for o in self.window) / len(self.window)  # share of readings (Probe.saturated)
        self.window = []
        if mean.temp_c - m.ref.temp_c > self.params["reference_warmer_c"] and self._mix_windows_precise():
            # the mix's windows were taken on a colder GPU (less leakage, so more clock under the
            # same cap): measure it again and start its pool anew
            self._mix_restart = True
            self._start_reference(now, "GPU warmer than at the mix's reference")
            return self.setpoint
        if self._residual(m, mean) > self.params["composite_tolerance"]:
            m.refresh_after_s = None  # its window missed: the next time it is held, refreshed as usual
            self._start_reference(now, "composite phase changed")
            return self.setpoint
        self._held_arrival_missed(m, mean, now, saturated)  # may read the mix anew: re-planned below
        if m.cautious and self.params["bound"] == "time":
            f = self._telling_window_mhz(m)
            if f is not None:  # the budget grew enough for a window that can tell
                self.last_change = "budget for a telling window"
                self._start_probe(now, f, self._realise(f, m))
                return self.setpoint
        # re-plan once per window: the budget moves as the spent share falls back (or runs ahead)
        plan_mhz = max(self._allocate()[id(m)], self._hold_floor_mhz)
        if self.held_mhz is None or abs(plan_mhz - self.held_mhz) >= self._bin():
            self.held_mhz = plan_mhz
            self.setpoint = self._realise(plan_mhz, m)
        return self.setpoint

    def status(self) -> dict:
        m = self.current
        return {
            "state": self.state, "phases_known": len(self.models), "last_change": self.last_change,
            "composite": self.composite,
            "held_clock_mhz": self.held_mhz,
            "phases_from_memory": sum(1 for x in self.models if x.memory_age_s is not None),
            "phase": None if m is None else {"kind": m.kind, "reference_clock_mhz": round(m.ref.clock_mhz),
                                             "from_memory": self.memory_status(m),
                                             "predicted_slowdown": round(m.slowdown(self.held_mhz), 4)
                                             if self.held_mhz else None,
                                             "probes": len(m.probes), "has_progress_proxy": m.has_proxy,
                                             "cautious": m.cautious},
            "budget": self.params["slowdown_budget"],
            "estimated_slowdown_spent": round(self._end_time_spent(), 4)
            if self.elapsed > 0 else 0.0,
            "dither": None if self.dither.low is None or self.state != State.HOLD else
            {"planned_clock_mhz": self.plan_mhz, "lower_clock_mhz": self.dither.low,
             "lower_share": round(self.dither.share, 3)},
        }
