"""The model-based controller on synthetic sequences and on the simulator."""

from dataclasses import replace

import numpy as np
import pytest
from controller_helpers import H100, ceiling, sample

from governor.controllers.base import TickContext
from governor.controllers.mix import LineSums, MixWindow
from governor.controllers.model import MIX_STEP_MIN, ModelController
from governor.controllers.model_mix import DRAIN_MAX_S, MIX_REFRESH_GROWTH_MAX
from governor.controllers.phase_model import QUEUED, PhaseModel, Probe
from governor.lab.simulate import DEFAULT_POLICY, run_trace
from governor.policy import load_policy
from governor.settings import Setpoint
from governor.sim.spec import load_spec
from governor.sim.trace import load_trace


class SyntheticGpu:
    """A memory-bound arrival phase: util and DRAM progress answer to the locked clock."""

    def __init__(self, cb=0.1, busy=0.5, dram=0.5):
        self.cb, self.busy, self.dram = cb, busy, dram
        self.f = 1980.0

    def apply(self, sp: Setpoint):
        self.f = float(ceiling(sp))

    def read(self, t):
        k = self.cb * 1980.0 / self.f + 1 - self.cb
        util = min(1.0, self.busy * k)
        rate = min(self.busy, 1.0 / k)  # work per second
        power = 70 + 40 * self.dram + 400 * util * (self.f / 1980.0) ** 3
        return sample(t, util=100 * util, clock=self.f, power=power, mem=100 * self.dram * rate,
                      dram=100 * self.dram * rate)


def drive(controller, gpu, seconds, t0=0.0):
    t = t0
    sps = []
    while t < t0 + seconds:
        sp = controller.decide(gpu.read(t))
        gpu.apply(sp)
        sps.append(sp)
        t += 0.2
    return sps


def test_references_at_default_then_holds_a_lower_clock_for_memory_bound_arrival_work():
    """Bound by end time only, arriving work needs only to be kept up with: most of the clock goes."""
    c = ModelController({"slowdown_budget": 0.03, "bound": "time"}, H100)
    gpu = SyntheticGpu()
    c.start(gpu.read(0), Setpoint())
    sps = drive(c, gpu, 40)
    assert sps[0].is_default  # the first measurement is at default settings
    assert c.state == "hold" and c.current.kind == "arrival"
    assert ceiling(sps[-1]) < 1300  # most of the clock is not needed
    assert c.current.slowdown(ceiling(sps[-1])) <= 0.03


def test_under_a_latency_bound_arriving_work_is_held_where_its_requests_stretch_within_budget():
    """Each request's kernels run 10% clock-bound (cb 0.1): a 3% budget on their latency allows the
    clock down to 1980 / (1 + 0.03 x 0.95 / 0.1) = 1541 MHz, far less than keeping up would."""
    c = ModelController({"slowdown_budget": 0.03}, H100)
    gpu = SyntheticGpu()
    c.start(gpu.read(0), Setpoint())
    sps = drive(c, gpu, 40)
    assert c.state == "hold" and c.current.kind == "arrival" and c.current.latency_planned()
    held = ceiling(sps[-1])
    true_stretch = 0.1 * (1980.0 / held - 1.0)
    assert 1500 <= held < 1980 and true_stretch <= 0.03
    assert abs(c.current.stretch(held) - true_stretch) < 0.005  # what the busy share showed


def test_zero_budget_never_probes():
    c = ModelController({"slowdown_budget": 0.0}, H100)
    gpu = SyntheticGpu(cb=1.0, busy=1.0)
    c.start(gpu.read(0), Setpoint())
    sps = drive(c, gpu, 20)
    assert all(sp.is_default for sp in sps)


def test_a_phase_change_is_detected_and_a_known_phase_is_reused():
    c = ModelController({"slowdown_budget": 0.05}, H100)
    mem = SyntheticGpu(cb=0.1, busy=0.5, dram=0.5)
    comp = SyntheticGpu(cb=0.9, busy=0.95, dram=0.2)
    c.start(mem.read(0), Setpoint())
    drive(c, mem, 40)
    first = c.current
    comp.f = mem.f
    drive(c, comp, 40, t0=40)
    assert c.current is not first and len(c.models) == 2
    mem.f = comp.f
    drive(c, mem, 10, t0=80)
    assert c.current is first  # recognised, not probed again
    assert c.last_change in ("known phase", "phase change: known phase")


def test_power_cap_objective_uses_power_limits_only():
    c = ModelController({"slowdown_budget": 0.05, "objective": "power_cap"}, H100)
    gpu = SyntheticGpu()

    class PowerCapped(SyntheticGpu):
        def apply(self, sp):
            watts = sp.power_limit_w or 700.0
            self.f = 1980.0
            while self.f > 345 and self.read(0).power_w > watts:
                self.f -= 15

    gpu = PowerCapped()
    c.start(gpu.read(0), Setpoint())
    sps = drive(c, gpu, 40)
    assert all(not sp.locks_clocks for sp in sps)
    assert any(sp.power_limit_w is not None for sp in sps)


@pytest.mark.parametrize("bad", ["0.9,x", "1.2", ""])
def test_bad_probe_fracs_are_refused(bad):
    with pytest.raises(ValueError, match="probe_fracs"):
        ModelController({"probe_fracs": bad}, H100)


def test_min_edp_trades_less_time_than_min_energy():
    held = {}
    for objective in ("min_energy", "min_edp"):
        # a budget loose enough that the objective, not the budget, decides
        # serial-like, saturated (slower clocks cost time): batch work, bounded by end time
        c = ModelController({"slowdown_budget": 1.0, "objective": objective, "bound": "time"}, H100)
        gpu = SyntheticGpu(cb=0.6, busy=1.0, dram=0.4)
        c.start(gpu.read(0), Setpoint())
        sps = drive(c, gpu, 60)
        assert c.state == "hold"
        held[objective] = ceiling(sps[-1])
    assert held["min_edp"] > held["min_energy"] + 100  # energy x delay values time: a higher clock


def test_the_ledger_is_told_which_phase_a_sample_belongs_to_or_that_none_fits():
    c = ModelController({"slowdown_budget": 0.05}, H100)
    mem = SyntheticGpu(cb=0.1, busy=0.5, dram=0.5)
    comp = SyntheticGpu(cb=0.9, busy=0.95, dram=0.2)
    c.start(mem.read(0), Setpoint())
    drive(c, mem, 40)
    comp.f = mem.f
    drive(c, comp, 40, t0=40)
    mem.f = comp.f = c.limits.snap_clock(1200)
    # each phase's reading is priced by its own default-settings measurement, whichever phase is held
    for gpu in (mem, comp):
        ref = c.counterfactual.reference(gpu.read(100.0))
        model = min(c.models, key=lambda m: abs(m.ref.progress - ref.progress))
        assert ref.known and ref.power_w == model.ref.power
    assert c.counterfactual.reference(mem.read(100.0)).power_w != c.counterfactual.reference(comp.read(100.0)).power_w
    # a reading no known phase explains (an idle gap) gets no price: the ledger claims no saving for it
    idle = SyntheticGpu(cb=0.5, busy=0.02, dram=0.01)
    idle.f = mem.f
    assert not c.counterfactual.reference(idle.read(100.0)).known


def controller_with_phase(params, ref, *probes):
    """A model controller that already knows one phase: its reference and probes, as measured."""
    c = ModelController(params, H100)
    c.start(sample(0.0), Setpoint())
    m = PhaseModel(ref=ref)
    for p in probes:
        m.add(p)
    c.models, c.current = [m], m
    return c, m


def _mix_window_start(saturated_s, saturated_before_s=0.0):
    """When a mix's reference window takes its first reading, after saturated_s of a backlog."""
    c = ModelController({"slowdown_budget": 0.03}, H100)
    c.start(sample(0.0), Setpoint())
    c.composite, c.change_interval_s = True, 2.0
    c._enter("reference", 0.0, Setpoint())
    c._saturated_s = saturated_before_s
    t = 0.0
    while t < 40.0 and not c.window:
        t = round(t + 0.2, 1)
        busy = t < saturated_s or (t % 6.0) < 2.0  # a backlog worked off, then 2 s bursts in 6 s
        c.decide(sample(t, util=100.0 if busy else 20.0, mem=60.0 if busy else 5.0, dram=60.0 if busy else 5.0,
                        power=600.0 if busy else 150.0))
    return t, c._settle()


def test_a_mix_reference_waits_for_a_backlog_to_drain_but_not_forever():
    start, _ = _mix_window_start(saturated_s=4.0)
    assert start == pytest.approx(4.0, abs=0.21)  # the saturated start was not measured
    start, settle = _mix_window_start(saturated_s=100.0)  # saturated throughout: waits DRAIN_MAX_S at most
    assert start == pytest.approx(settle + DRAIN_MAX_S, abs=0.41)
    # saturated since long before the reference: a mix of phases all busy all the time, no backlog
    start, settle = _mix_window_start(saturated_s=100.0, saturated_before_s=20.0)
    assert start == pytest.approx(settle, abs=0.41)


def _mix_after_its_first_probe(progress_at_probe, bound="time", clock_bound=1.0):
    c = ModelController({"slowdown_budget": 0.03, "bound": bound}, H100)
    c.start(sample(0.0), Setpoint())
    c.composite = True
    ref = Probe(clock_mhz=1940, util=0.55, progress=30.0, power=420.0, temp_c=45.0)
    f = c.mix_probe_fracs[0] * ref.clock_mhz
    m = PhaseModel(ref=ref, mix=True, latency_bound=bound == "both")
    util = 0.55 * (clock_bound * ref.clock_mhz / f + 1.0 - clock_bound)
    m.add(Probe(clock_mhz=f, util=util, progress=progress_at_probe, power=330.0, temp_c=45.0))
    c.models, c.current = [m], m
    c._next_probe(100.0)
    return c, m, f


def test_a_mix_of_arriving_work_goes_from_its_deepest_probe_straight_to_the_planned_clock():
    c, m, first = _mix_after_its_first_probe(progress_at_probe=30.0)  # the work kept up
    assert c.mix_probe_fracs == sorted(c.mix_probe_fracs) and len(c.mix_probe_fracs) == 2
    assert m.kind == "arrival"
    assert c.state == "probe" and c.probe_target < first  # not the shallower fixed probe: the plan


def test_under_a_latency_bound_a_mix_is_probed_shallow_first_then_planned_by_its_requests_stretch():
    c, m, first = _mix_after_its_first_probe(progress_at_probe=30.0, bound="both")
    assert c.mix_probe_fracs == sorted(c.mix_probe_fracs, reverse=True)  # the shallowest first
    assert first == c.mix_probe_fracs[0] * 1940 and m.kind == "arrival" and m.latency_planned()
    # its kernels are all clock-bound: a lower clock stretches every request by as much, so the mix
    # is held within the budget's stretch of its reference, with no more probing (a bound on end
    # time alone would go on to a plan far below)
    held = c.setpoint.sm_clock_max_mhz
    assert c.state == "hold" and 1940 / (1 + 0.03 * 0.95) <= held < 1940 and m.stretch(held) <= 0.03 * 0.95
    c, m, first = _mix_after_its_first_probe(progress_at_probe=30.0, bound="both", clock_bound=0.1)
    # a tenth of its kernel time scales with the clock: held no lower than it was measured, its
    # requests within budget
    plan = c.probe_target if c.state == "probe" else c.setpoint.sm_clock_max_mhz
    assert plan <= first + c._bin() and m.stretch(plan) <= c._budget_now(latency=True) + 1e-9

def _window(probe, spread=0.0, saturated=0.0, util=(), power=()):
    return MixWindow(probe=probe, spread=spread, saturated=saturated,
                     parts=MixWindow.split(np.array(util, dtype=float), np.array(power, dtype=float)))


# a mix's default-settings readings: quiet stretches and bursts, 100 W + 500 W per unit of busy share
MIX_UTIL = [0.05, 0.1, 0.2, 0.6, 0.9, 0.95, 0.1, 0.05, 0.7, 0.8]
MIX_POWER = [100.0 + 500.0 * u for u in MIX_UTIL]


def _held_mix(progress_at_probe, saturated=0.0):
    c, m, f = _mix_after_its_first_probe(progress_at_probe)
    c._mix_model = m
    c._set_mix_windows([_window(m.ref, saturated=saturated, util=MIX_UTIL, power=MIX_POWER)])
    m.refit()
    c._hold(150.0, "identified")
    return c, m


def test_a_mix_of_arriving_work_is_priced_at_the_busy_share_its_work_would_have_at_default():
    # a mix's parts differ in energy per unit of DRAM progress (a burst moves much data per joule,
    # a quiet stretch little), so pricing a held stretch's progress at the pool's rate claimed 28 kJ
    # where 5 kJ was saved on a generated bursty mix; its busy share prices the same seconds instead
    c, m = _held_mix(progress_at_probe=30.0)
    assert m.kind == "arrival" and not m.busy_mix()
    held = c.held_mhz = c.limits.snap_clock(0.9 * m.ref.clock_mhz)  # between the reference and the deepest probe
    shorter = m.kernel_time(m.ref.clock_mhz) / m.kernel_time(held)
    ref = c.counterfactual.reference(sample(200.0, util=70.0, clock=held, mem=28.0, dram=28.4))
    assert ref.known and ref.work_ratio == 1.0
    assert ref.power_w == pytest.approx(100.0 + 500.0 * 0.70 * shorter)
    # a quieter stretch is priced lower, whatever its DRAM progress
    quiet = c.counterfactual.reference(sample(201.0, util=10.0, clock=held, mem=28.0, dram=28.4))
    assert quiet.power_w == pytest.approx(100.0 + 500.0 * 0.10 * shorter)
    # below its deepest probe the model extrapolates: the busy share shrinks by the clock ratio, the most
    c.held_mhz = deep = c.limits.snap_clock(0.5 * m.probes[0].clock_mhz)
    priced = c.counterfactual.reference(sample(202.0, util=99.0, clock=deep, mem=20.0, dram=None))
    assert priced.power_w == pytest.approx(100.0 + 500.0 * 0.99 * deep / m.ref.clock_mhz)
    # a serial mix's work waits on the clock: its progress prices it, at the pool's rate
    c, m = _held_mix(progress_at_probe=30.0 * 0.85)
    assert m.kind == "serial"
    assert c.counterfactual.reference(sample(200.0, util=70.0, clock=m.probes[0].clock_mhz, mem=25.0)).work_ratio \
        is None
    # and so does a busy mix's (saturated at default in a quarter of its readings or more)
    c, m = _held_mix(progress_at_probe=30.0, saturated=0.6)
    assert m.busy_mix()
    assert c.counterfactual.reference(sample(200.0, util=70.0, clock=c.held_mhz, mem=25.0)).work_ratio is None


# a training mix's default-settings readings: input stalls (5% busy, next to no DRAM progress, 130 W)
# and steps (97% busy, 38 units of progress, 680 W), as (busy share, progress, power)
STALL, STEP = (0.05, 0.2, 130.0), (0.97, 38.0, 680.0)


def _held_serial_mix(readings):
    c, m, f = _mix_after_its_first_probe(progress_at_probe=30.0 * 0.85)
    c._mix_model = m
    util, progress, power = (np.array(x) for x in zip(*readings, strict=True))
    c._set_mix_windows([MixWindow(probe=m.ref, spread=0.0, saturated=0.0, parts=MixWindow.split(util, power),
                                  busy_by_progress=LineSums.of(progress, util))])
    m.refit()
    c._hold(150.0, "identified")
    c.held_mhz = c.limits.snap_clock(0.85 * m.ref.clock_mhz)
    return c, m


def test_a_serial_mix_is_priced_reading_by_reading_its_stalls_at_idle_and_its_steps_by_their_work():
    # priced at the pool's energy per unit of progress, a stretch of steps cost the mix's mean, stalls
    # included (24 J per unit where a step cost 18), and a stall, with no progress, next to nothing
    # (5 W where default drew 136): a training job's saving claimed 71% over (docs/decisions/022)
    c, m = _held_serial_mix([STALL, STEP, STALL, STEP, STEP, STEP, STALL, STEP])
    assert m.kind == "serial"
    held = c.held_mhz
    # a step at the held clock: its work is done at the clock's pace; default would have done it at
    # 680 W in the share of the second its progress is of a step's at default
    step_progress = STEP[1] * held / m.ref.clock_mhz
    step = c.counterfactual.reference(sample(200.0, util=98.0, clock=held, mem=30.0, dram=step_progress))
    assert step.known and step.work_ratio == pytest.approx(0.02 + 0.98 * held / m.ref.clock_mhz, rel=0.01)
    assert step.power_w * step.work_ratio == pytest.approx(STEP[2] * step_progress / STEP[1], rel=0.02)
    # a stall: host time, as long at default, at what default draws with the GPU that idle
    stall = c.counterfactual.reference(sample(201.0, util=5.0, clock=held, mem=1.0, dram=STALL[1]))
    assert stall.work_ratio == pytest.approx(1.0)
    assert stall.power_w == pytest.approx(STALL[2], rel=0.02)


def test_a_serial_mix_busy_in_every_reading_keeps_its_pools_rate():
    # compute and memory phases, both busy: a line over busy share cannot tell them apart (a fast
    # compute and memory mix read 4-16% over priced reading by reading), the pool's rate prices them
    c, m = _held_serial_mix([(0.95, 10.0, 650.0), (0.9, 60.0, 450.0)] * 4)
    assert m.kind == "serial"
    ref = c.counterfactual.reference(sample(200.0, util=96.0, clock=c.held_mhz, mem=20.0, dram=30.0))
    assert ref.known and ref.work_ratio is None and ref.source == ("mix", c._mix_version)


def test_util_power_line_is_least_squares_and_never_falls_with_busy_share():
    line = LineSums.of(np.array(MIX_UTIL), np.array(MIX_POWER)).line()
    assert line == pytest.approx((100.0, 500.0), abs=1e-3)
    halves = LineSums.of(np.array(MIX_UTIL[:5]), np.array(MIX_POWER[:5])) + \
        LineSums.of(np.array(MIX_UTIL[5:]), np.array(MIX_POWER[5:]))
    assert halves.line() == pytest.approx(line, abs=1e-3)
    flat = LineSums.of(np.full(5, 0.3), np.array([200.0, 210.0, 190.0, 205.0, 195.0])).line()
    assert flat[1] == 0.0 and flat[0] == pytest.approx(200.0)
    falling = LineSums.of(np.array([0.1, 0.5, 0.9]), np.array([300.0, 200.0, 100.0])).line()
    assert falling[1] == 0.0 and falling[0] == pytest.approx(200.0)
    assert LineSums.of(np.array([0.1, 0.2]), np.array([1.0, 2.0])).line() is None


def test_a_mix_line_never_reads_less_than_nothing_at_idle():
    # decodes half busy at 200-250 W and prefills saturated at 620 W: the least-squares line through
    # both runs from -190 W at idle, and priced a decode stretch at 160 W where default drew 250;
    # no idle GPU draws less than nothing, so the line is at most as steep as through zero there
    util = np.array([0.45, 0.5, 0.55, 0.5, 0.45, 0.55, 1.0, 1.0])
    power = np.array([200.0, 225.0, 250.0, 225.0, 200.0, 250.0, 620.0, 620.0])
    sums = LineSums.of(util, power)
    idle_w, per_busy_w = sums.line()
    assert idle_w == pytest.approx(0.0, abs=1e-9) and per_busy_w == pytest.approx(power.mean() / util.mean())
    assert idle_w + per_busy_w * util.mean() == pytest.approx(power.mean())  # still through the means
    assert (sums.x_lo, sums.x_hi) == (0.45, 1.0)
    halves = LineSums.of(util[:3], power[:3]) + LineSums.of(util[3:], power[3:])
    assert (halves.x_lo, halves.x_hi) == (0.45, 1.0)


def _held_arrival_mix(util, power):
    c, m, f = _mix_after_its_first_probe(progress_at_probe=30.0)
    c._mix_model = m
    c._set_mix_windows([_window(m.ref, util=util, power=power)])
    m.refit()
    c._hold(150.0, "identified")
    c.held_mhz = c.limits.snap_clock(0.9 * m.ref.clock_mhz)
    return c, m


def test_a_mix_line_prices_no_reading_busier_or_quieter_than_its_pool_read():
    # a mixed job gone idle in the middle of a probe was priced at the pool's 541 W, read at 60-95%
    # busy, where default drew 150 W (h100, gen:mixed:930744): the ledger claimed five times the saving
    util = [0.6, 0.7, 0.8, 0.9, 0.95, 0.65, 0.75, 0.85]
    c, m = _held_arrival_mix(util, [100.0 + 500.0 * u for u in util])
    assert m.kind == "arrival"
    assert c.counterfactual.reference(sample(200.0, util=75.0, clock=c.held_mhz, mem=28.0, dram=28.4)).known
    assert not c.counterfactual.reference(sample(200.2, util=5.0, clock=c.held_mhz, mem=1.0, dram=1.0)).known


def test_a_mix_line_widens_its_error_by_how_far_the_stretch_moved_from_the_pool():
    # the line's slope carries the mix's make-up as well as what busy share costs: a stretch priced
    # away from the pool's mean busy share may be off by the whole move the line puts on it
    c, m = _held_arrival_mix(MIX_UTIL, MIX_POWER)
    pool_mean = float(np.mean(MIX_UTIL))
    shorter = m.kernel_time(m.ref.clock_mhz) / m.kernel_time(c.held_mhz)
    at_mean = c.counterfactual.reference(sample(200.0, util=100.0 * pool_mean / shorter, clock=c.held_mhz, mem=28.0,
                                                dram=28.4))
    base = at_mean.rel_error
    assert base == pytest.approx(c.counterfactual._pooled_line().rel_error)
    c._set_mix_windows(list(c._mix_windows))  # a new pool version: a new stretch
    busier = c.counterfactual.reference(sample(201.0, util=90.0, clock=c.held_mhz, mem=28.0, dram=28.4))
    moved_w = 500.0 * abs(0.9 * shorter - pool_mean)
    assert busier.rel_error == pytest.approx(base + moved_w / busier.power_w)
    # every stretch a line prices shares one error key: what it misses, it misses alike
    assert busier.source == at_mean.source


def test_a_mix_whose_utilization_did_not_rise_at_its_probe_is_not_sent_far_below_it():
    # two windows a fifth apart in clock, utilization 0.42 then 0.40: fitted as not clock-bound at
    # all, the plan is the lowest clock; the next window goes at most halfway below the probe
    c = ModelController({"slowdown_budget": 0.03}, H100)
    c.start(sample(0.0), Setpoint())
    c.composite = True
    ref = Probe(clock_mhz=1980, util=0.42, progress=16.67, power=300.0, temp_c=45.0)
    f = c.limits.snap_clock(c.mix_probe_fracs[0] * ref.clock_mhz)
    m = PhaseModel(ref=ref, mix=True)
    m.add(Probe(clock_mhz=f, util=0.40, progress=16.67, power=240.0, temp_c=45.0))
    c.models, c.current = [m], m
    assert m.kind == "arrival" and m.slowdown(c.limits.sm_clock_min_mhz) == pytest.approx(0.0)
    c._next_probe(100.0)
    assert c.state == "probe" and c.probe_target == c.limits.snap_clock(MIX_STEP_MIN * f)


def test_a_serial_mix_keeps_its_second_fixed_probe():
    c, m, first = _mix_after_its_first_probe(progress_at_probe=30.0 * 0.85)  # progress fell with the clock
    assert m.kind == "serial"
    assert c.state == "probe"
    assert c.probe_target == pytest.approx(c.limits.snap_clock(c.mix_probe_fracs[1] * m.ref.clock_mhz))


def test_a_hold_beyond_the_probed_clocks_corrects_the_model_instead_of_seeing_a_new_phase():
    # a light arrival phase probed only near the top; holding it far lower is an extrapolation
    c, m = controller_with_phase({"slowdown_budget": 0.03},
                                 Probe(clock_mhz=1980, util=0.15, progress=4.0, power=200.0, temp_c=60.0),
                                 Probe(clock_mhz=1800, util=0.16, progress=4.0, power=176.0, temp_c=60.0),
                                 Probe(clock_mhz=1620, util=0.17, progress=4.0, power=150.0, temp_c=60.0))
    c.held_mhz = 345.0
    c._enter("hold", 0.0, Setpoint(sm_clock_min_mhz=345, sm_clock_max_mhz=345))
    predicted_util = m.predict(345)[0]
    for i in range(30):  # the same phase at 345 MHz is busier than the extrapolation said
        c.decide(sample(1.0 + 0.2 * i, util=51.0, clock=345.0, mem=4.0, dram=4.0, power=147.0))
    assert c.state == "hold" and c.last_change == "held clock measured"
    assert any(abs(p.clock_mhz - 345) < 1 for p in m.probes)  # the hold became a probe
    assert abs(m.predict(345)[0] - 0.51) < abs(predicted_util - 0.51)


def test_a_mix_held_at_full_clocks_with_its_budget_spent_comes_back_down_as_the_budget_recovers():
    c, m = controller_with_phase({"slowdown_budget": 0.03},
                                 Probe(clock_mhz=1980, util=0.7, progress=23.0, power=550.0, temp_c=60),
                                 Probe(clock_mhz=1800, util=0.72, progress=22.0, power=470.0, temp_c=60),
                                 Probe(clock_mhz=1620, util=0.74, progress=21.0, power=390.0, temp_c=60))
    c.composite, c.change_interval_s = True, 1.0
    c.elapsed, c.extra = 10.0, 0.5  # 5% spent, more than twice what a mix plans for
    c._hold(0.0, "identified")
    assert c.setpoint.is_default  # a serial mix with no budget left runs at full clocks
    t = 0.0
    while t < 100:
        t += 0.2
        u, prog, p = m.predict(c.held_mhz)
        c.decide(sample(t, util=100 * u, clock=c.held_mhz, mem=prog, dram=prog, power=p))
    assert c.state == "hold" and c.setpoint.sm_clock_max_mhz is not None
    assert c.setpoint.sm_clock_max_mhz < 1980


def test_a_budget_between_two_clock_steps_is_spent_by_alternating_them():
    # compute-bound serial work: 95% busy, kernel time all clock-bound (progress follows the clock)
    def probe(f):
        rate = 1.0 / (0.95 * 1695.0 / f + 0.05)
        return Probe(clock_mhz=f, util=0.95 * 1695.0 / f * rate, progress=33.0 * rate,
                     power=700.0 * (f / 1695.0) ** 2.5, temp_c=60.0)

    c, m = controller_with_phase({"slowdown_budget": 0.03, "budget_use": 1.0},
                                 probe(1695.0), probe(1545.0), probe(1395.0))
    assert m.kind == "serial"
    c._hold(0.0, "identified")
    clocks, t = [], 0.0
    while t < 119.8:
        t += 0.2
        f = c.held_mhz
        p = probe(f)
        c.decide(sample(t, util=100 * p.util, clock=f, mem=p.progress, dram=p.progress, power=p.power, temp=60.0))
        clocks.append(c.setpoint.sm_clock_max_mhz)
    late = clocks[len(clocks) // 2:]  # once the plan has settled
    used = sorted(set(late))
    assert len(used) == 2 and used[1] - used[0] == 15  # two neighbouring clock steps, alternated
    assert m.slowdown(used[1]) < 0.03 < m.slowdown(used[0])
    mean_slowdown = sum(m.slowdown(f) for f in clocks) / len(clocks)
    assert mean_slowdown == pytest.approx(0.03, abs=0.003)  # the budget, not the step below it


def test_a_warmed_phase_at_the_power_limit_is_priced_as_default_holds_it_under_the_limit():
    # compute-bound work at default runs at the power limit (700 W on this H100); leakage of a
    # warmer GPU cannot lift default's power over the limit: the firmware takes a clock step instead
    ref = Probe(clock_mhz=1755, util=0.95, progress=20.0, power=699.0, temp_c=50.0)
    c, m = controller_with_phase({"slowdown_budget": 0.03}, ref,
                                 Probe(clock_mhz=1605, util=0.96, progress=18.6, power=590.0, temp_c=50.0),
                                 Probe(clock_mhz=1455, util=0.97, progress=17.1, power=495.0, temp_c=50.0))
    assert c.counterfactual._default_under_cap(m, 690.0) == (690.0, 1.0)  # under the limit: as measured
    power, slower = c.counterfactual._default_under_cap(m, 699.0 + 8.0)  # 8 W of warm excess
    assert power <= 700.0 and power < 699.0  # a clock step down, under the limit
    assert slower == pytest.approx(m.wall_time(1740.0) / m.wall_time(1755.0))
    assert 1.0 < slower < 1.01


def test_at_the_thermal_limit_work_at_default_is_priced_by_the_phase_its_readings_match():
    # while a known phase is measured again at default settings (a refresh: no phase held), the
    # ledger still needs how fast default, throttled at the thermal limit, would do the work: the
    # phase the readings match says it (without it, the boost of a reference window on a GPU kept
    # cooler than default counted as no saving: docs/decisions/023)
    ref = Probe(clock_mhz=1755, util=0.97, progress=30.0, power=690.0, temp_c=80.0)
    c, m = controller_with_phase({"slowdown_budget": 0.03}, ref,
                                 Probe(clock_mhz=1500, util=0.97, progress=26.0, power=520.0, temp_c=80.0),
                                 Probe(clock_mhz=1245, util=0.97, progress=22.0, power=400.0, temp_c=80.0))
    at_default = sample(10.0, util=97.0, clock=1755.0, power=690.0, mem=30.0, dram=30.0)
    held = c.counterfactual.throttled_work_ratio(at_default, 600.0)
    assert held is not None and held < 1.0  # default at 600 W does less work per second than this boost
    c._start_reference(10.0, "refresh")
    assert c.current is None
    assert c.counterfactual.throttled_work_ratio(at_default, 600.0) == pytest.approx(held)
    # readings no known phase explains say nothing of it
    assert c.counterfactual.throttled_work_ratio(sample(10.2, util=10.0, clock=1755.0, power=150.0, mem=1.0,
                                                        dram=1.0), 600.0) is None


def test_a_first_probe_is_priced_by_its_phase_when_its_readings_fit_the_same_work():
    # one default-settings measurement only: the model cannot predict a probe's readings yet
    ref = Probe(clock_mhz=1980, util=0.97, progress=30.0, power=690.0, temp_c=60.0)
    c, m = controller_with_phase({"slowdown_budget": 0.03}, ref)
    c._enter("probe", 0.0, Setpoint(sm_clock_min_mhz=1530, sm_clock_max_mhz=1530))
    same_work = sample(1.0, util=97.0, clock=1530.0, power=520.0, mem=28.0, dram=28.0)
    priced = c.counterfactual.reference(same_work)
    assert priced.known and priced.power_w == ref.power and priced.progress == ref.progress
    assert priced.source[0] == "probe"  # the one-point model predicts 690 W here: it does not match
    # an input stall during the probe is not the probed work (far less busy): no price, no claim
    assert not c.counterfactual.reference(sample(1.1, util=12.0, clock=1530.0, power=150.0, mem=2.0, dram=2.0)).known
    # progress faster than at default is not the same work either
    assert not c.counterfactual.reference(sample(1.2, util=97.0, clock=1530.0, power=520.0, mem=40.0, dram=40.0)).known
    # through integer memory utilization (no GPM) a probe's slowdown does not show: the same seconds at
    # default power, less the most a clock this much lower can slow the work
    no_gpm = c.counterfactual.reference(sample(1.4, util=97.0, clock=1530.0, power=520.0, mem=28.0))
    assert no_gpm.known and no_gpm.power_w == ref.power
    assert no_gpm.work_ratio == pytest.approx(1.0 / (1.0 + 0.97 * (1980.0 / 1530.0 - 1.0)))
    # and outside a probe the controller prices only what a phase model explains
    c._enter("hold", 2.0, Setpoint(sm_clock_min_mhz=1530, sm_clock_max_mhz=1530))
    c.held_mhz = 1530.0
    assert not c.counterfactual.reference(same_work).known


def _warm_mix_controller(window_error):
    c, m = controller_with_phase({"slowdown_budget": 0.03},
                                 Probe(clock_mhz=1980, util=0.8, progress=23.0, power=550.0, temp_c=45.0),
                                 Probe(clock_mhz=1800, util=0.82, progress=22.0, power=470.0, temp_c=45.0),
                                 Probe(clock_mhz=1620, util=0.84, progress=21.0, power=390.0, temp_c=45.0))
    c.composite, c.change_interval_s = True, 1.0
    c._set_mix_windows([_window(m.ref, window_error)])
    c._hold(0.0, "identified")
    t = 0.0
    while t < 30 and c.state == "hold":
        t += 0.2
        u, prog, p = m.predict(c.held_mhz)
        c.decide(sample(t, util=100 * u, clock=c.held_mhz, mem=prog, dram=prog, power=p, temp=62.0))
    return c


def test_a_warmed_mix_is_measured_again_only_when_its_windows_are_precise_enough_to_show_it():
    # windows that agreed over their cycles within 0.5%: the 17 C of warming (leakage) would show
    precise = _warm_mix_controller(0.005)
    assert precise.state == "reference" and precise.last_change == "GPU warmer than at the mix's reference"
    # windows scattering by 5% (a fast mix through integer memory utilization): a new one would
    # replace the pool with noise larger than the leakage it corrects, so the mix stays held
    noisy = _warm_mix_controller(0.05)
    assert noisy.state == "hold"


def test_a_mix_window_too_short_for_whole_cycles_grows_until_it_holds_them():
    # 3.7 s bursts and 5 s of quiet, while the changes seen first suggested a 10.5 s window
    c = ModelController({"slowdown_budget": 0.03}, H100)
    c.start(sample(0.0), Setpoint())
    c.composite, c.change_interval_s = True, 2.1
    c._enter("reference", 0.0, Setpoint())

    def mix(t):
        burst = (t % 8.7) < 3.7
        return sample(t, util=85.0 if burst else 14.0, power=680.0 if burst else 200.0,
                      mem=42.0 if burst else 4.0, dram=42.0 if burst else 4.0)

    t = 0.0
    while c.state == "reference" and t < 60:
        c.decide(mix(t))
        t += 0.1
    window = c._mix_windows[0].probe
    true_progress = (3.7 * 42.0 + 5.0 * 4.0) / 8.7
    assert t > 10.5 + 2.0  # it measured longer than the first estimate
    assert window.progress == pytest.approx(true_progress, rel=0.02)
    assert window.power == pytest.approx((3.7 * 680.0 + 5.0 * 200.0) / 8.7, rel=0.02)


def _compute_phase_controller():
    # serial compute-bound work: progress falls with the clock, power steeply
    return controller_with_phase({"slowdown_budget": 0.03},
                                 Probe(clock_mhz=1980, util=0.97, progress=30.0, power=700.0, temp_c=60.0),
                                 Probe(clock_mhz=1800, util=0.97, progress=28.0, power=560.0, temp_c=60.0),
                                 Probe(clock_mhz=1620, util=0.97, progress=26.0, power=440.0, temp_c=60.0))


def _hold_at_the_thermal_limit(c, m, default_power, seconds):
    c._hold(0.0, "identified")
    t, states = 0.0, set()
    while t < seconds:
        t += 0.2
        f = float(c.setpoint.sm_clock_max_mhz or 1980)
        u, prog, p = m.predict(f)
        c.decide(sample(t, util=100 * u, clock=f, mem=prog, dram=prog, power=p, temp=84.0),
                 TickContext(thermal_default_power_w=default_power))
        states.add(c.state)
    return states


def test_at_the_thermal_limit_the_budget_is_charged_and_planned_against_throttled_default():
    c, m = _compute_phase_controller()
    assert m.kind == "serial"
    states = _hold_at_the_thermal_limit(c, m, 520.0, 200.0)
    # default would dissipate 520 W there: the firmware would run it at about 1680 MHz, not 1980
    f_td = c._throttled_clock(sample(0.0, clock=1500.0, power=m.power(1500.0)), 520.0)
    assert 1600 < f_td < 1800
    # no re-measurement while throttled (default under the guard's ceiling is no default), and the
    # clock is planned within the budget against the throttled clock, below it
    assert states == {"hold"} and c.last_change == "identified"
    assert c.held_mhz < f_td and m.slowdown(c.held_mhz) > 0.03  # more than the budget against 1980 ...
    assert m.wall_time(c.held_mhz) / m.wall_time(f_td) - 1.0 <= 0.03  # ... but within it against default
    spent = c.extra / (c.elapsed - c.extra)
    assert spent == pytest.approx(m.wall_time(c.held_mhz) / m.wall_time(f_td) - 1.0, abs=0.01)


def test_without_the_thermal_limit_a_held_phase_is_measured_again_and_its_reference_clock_is_default():
    c, m = _compute_phase_controller()
    assert "reference" in _hold_at_the_thermal_limit(c, m, None, 200.0)  # refresh_s is 120 s
    # a plan at the reference clock hands the clock back to the firmware instead of pinning it
    assert c._realise(m.ref.clock_mhz, m).is_default


def test_a_refresh_the_thermal_limit_interrupts_keeps_the_reference_the_phase_had():
    """A window measured under the guard's ceiling is no reference of default: taken as one, a hot
    room's variant had its budget charged against a clock 10% under default's and ran 3.8% slow."""
    c, m = _compute_phase_controller()
    ref_before = m.ref
    c._hold(0.0, "identified")
    c._start_reference(130.0, "refresh")
    assert c.state == "reference" and c.current is None
    t = 130.0
    for _ in range(3):  # the refresh runs at default clocks; the GPU reaches its limit
        t += 0.2
        c.decide(sample(t, util=97.0, clock=1700.0, mem=27.0, dram=27.0, power=560.0, temp=86.0),
                 TickContext(thermal_default_power_w=520.0))
    assert c.state == "hold" and c.current is m and c.last_change == "refresh abandoned: thermal limit"
    assert m.ref is ref_before


def test_power_alone_drifting_from_the_model_shifts_its_power_curve_instead_of_starting_a_new_phase():
    c, m = _compute_phase_controller()
    cold = PhaseModel(ref=m.ref, probes=list(m.probes))  # the power curve as first fitted
    c._hold(0.0, "identified")
    t = 0.0
    while t < 30.0:  # the GPU warmed: 8% more power at the same utilization and progress
        t += 0.2
        f = float(c.setpoint.sm_clock_max_mhz or 1980)
        u, prog, _ = cold.predict(f)
        c.decide(sample(t, util=100 * u, clock=f, mem=prog, dram=prog, power=1.08 * cold.power(f), temp=62.0))
    assert c.state == "hold" and c.last_change == "identified" and c.current is m
    f = float(c.setpoint.sm_clock_max_mhz or 1980)
    assert m.power(f) == pytest.approx(1.08 * cold.power(f), rel=0.02)


def _drift_power(c, cold, power_factor, temp, seconds=30.0):
    c._hold(0.0, "identified")
    t = 0.0
    while t < seconds:
        t += 0.2
        f = float(c.setpoint.sm_clock_max_mhz or 1980)
        u, prog, _ = cold.predict(f)
        c.decide(sample(t, util=100 * u, clock=f, mem=prog, dram=prog, power=power_factor * cold.power(f), temp=temp))


def test_a_power_drift_on_a_gpu_no_warmer_leaves_the_reference_as_read():
    # a reference read at default settings stays what it read unless the GPU warmed since: a drift
    # at the held clock is the curve's misfit there (a training step's reference, capped at 689 W,
    # was moved to 749 by one, and the ledger priced every later step 9% over what default drew)
    c, m = _compute_phase_controller()
    cold = PhaseModel(ref=m.ref, probes=list(m.probes))
    _drift_power(c, cold, 1.08, temp=60.0)  # as warm as at the reference
    f = float(c.setpoint.sm_clock_max_mhz)
    assert c.current is m and f < m.ref.clock_mhz
    assert m.ref.power == cold.ref.power and m.ref_power_read_w() == cold.ref.power
    assert [p.power for p in m.probes] != [p.power for p in cold.probes]  # the probes' curve moved
    # warmer by more than WARMER_C: leakage moves the reference too, but what it read is kept, and
    # default is priced under the power limit it was read under (700 W here), not at the shifted curve
    c, m = _compute_phase_controller()
    _drift_power(c, cold, 1.08, temp=66.0)
    assert m.ref.power > cold.ref.power and m.ref_power_read_w() == cold.ref.power
    power, slower = c.counterfactual._default_under_cap(m, m.ref.power)
    assert power <= 700.0 + 1e-6 and slower > 1.0


def _until_probe(c, reading) -> float:
    """Feed c the same phase's readings (reading(t)) until it probes, 10 s at most; the time reached."""
    t = 0.0
    while c.state != "probe" and t < 10:
        c.decide(reading(t))
        t += 0.2
    return t


def test_a_probe_ends_at_once_when_work_it_cannot_keep_up_with_arrives():
    # a quiet phase probed below default; a burst arrives and saturates the GPU under the probe's
    # ceiling: back to default settings on that reading, not at the window's end (a quiet phase's
    # probe at 345 MHz had run a burst there for 2.4 s, its requests 10 times late)
    c = ModelController({"slowdown_budget": 0.03}, H100)
    t = _until_probe(c, lambda t: sample(t, util=6.0, clock=1980.0, power=140.0, mem=1.0, dram=1.0))
    assert c.state == "probe" and ceiling(c.setpoint) < 1980
    probe = c.probe_target
    t += c._settle()  # inside the probe's measuring window
    c.decide(sample(t, util=6.0, clock=probe, power=120.0, mem=1.0, dram=1.0))
    # a change the clock keeps up with waits for the window's end
    sp = c.decide(sample(t + 0.2, util=40.0, clock=probe, power=250.0, mem=10.0, dram=10.0))
    assert c.state == "probe" and sp.sm_clock_max_mhz == probe
    sp = c.decide(sample(t + 0.4, util=100.0, clock=probe, power=500.0, mem=30.0, dram=30.0))
    assert c.state == "reference" and sp == Setpoint()
    assert c.last_change == "phase changed while probing"


def test_a_busier_reading_than_the_clock_can_explain_is_another_phase():
    # busy time grows at most as the clock falls: 6% busy at 1770 MHz is at most 31% at 345 MHz
    c, _ = controller_with_phase({"slowdown_budget": 0.03},
                                 Probe(clock_mhz=1770, util=0.06, progress=0.1, power=144.0))
    ref = c.current.ref
    assert not c._consistent(ref, Probe(clock_mhz=345, util=1.0, progress=17.0, power=160.0))
    assert c._consistent(ref, Probe(clock_mhz=345, util=0.3, progress=0.1, power=80.0))
    assert c._consistent(ref, Probe(clock_mhz=1620, util=0.1, progress=0.1, power=130.0))


def test_a_mix_whose_windows_disagree_is_held_at_its_reference_clock_not_the_cheapest():
    # the reference clock is a mean of the firmware's choices (1959 MHz), no supported clock: with every
    # clock below it forbidden, the planner had taken the cheapest of them (1605 MHz, requests 7% late)
    c = ModelController({"slowdown_budget": 0.03, "bound": "both"}, H100)
    c.start(sample(0.0), Setpoint())
    c.composite = True
    m = PhaseModel(ref=Probe(clock_mhz=1958.9, util=0.248, progress=8.37, power=256.0), mix=True,
                   latency_bound=True, boost_mhz=1980.0)
    m.add(Probe(clock_mhz=1778, util=0.424, progress=18.61, power=300.0))
    m.add(Probe(clock_mhz=1605, util=0.334, progress=8.0, power=200.0))
    c.models, c.current = [m], m
    assert m.fit_error() > 0.1
    assert c._allocate()[id(m)] == pytest.approx(m.ref.clock_mhz)
    assert c._realise(m.ref.clock_mhz, m) == Setpoint()


def _held_arriving_mix(saturated):
    c = ModelController({"slowdown_budget": 0.03, "bound": "both"}, H100)
    c.start(sample(0.0), Setpoint())
    c.composite = True
    m = PhaseModel(ref=Probe(clock_mhz=1980, util=0.3, progress=12.0, power=260.0), mix=True, latency_bound=True,
                   saturated_share=saturated)
    m.add(Probe(clock_mhz=1800, util=0.32, progress=12.0, power=230.0))
    m.add(Probe(clock_mhz=1620, util=0.34, progress=12.0, power=205.0))
    c.models, c.current, c._mix_model = [m], m, m
    c.state, c.held_mhz, c.setpoint = "hold", 1620.0, Setpoint(sm_clock_min_mhz=345, sm_clock_max_mhz=1620)
    c.state_start = c.last_t = 0.0
    return c


def test_a_held_mix_s_burst_guard_takes_the_first_saturated_reading_whatever_the_tick_s_rounding():
    # readings come a tick apart, and a tick's length is a difference of two clock readings: 1.4 - 1.2
    # is 0.19999999999999996 s, and a real clock's tick may come 2 ms early. Either had waited a
    # whole reading more at a clock the burst saturates, leaving twice the backlog (decision 034)
    for first, second in ((1.2, 1.4), (10.0, 10.198)):
        c = _held_arriving_mix(saturated=0.02)
        c.state_start = c.last_t = first - 0.2
        assert c.decide(sample(first, util=25.0, clock=1620.0)).sm_clock_max_mhz == 1620
        assert c.decide(sample(second, util=100.0, clock=1620.0)) == Setpoint() and c.burst_guard


def test_a_burst_that_saturates_a_held_mix_runs_at_default_until_it_is_over():
    c = _held_arriving_mix(saturated=0.02)
    assert c.decide(sample(0.2, util=25.0, clock=1620.0)).sm_clock_max_mhz == 1620
    # one saturated reading: the clock goes back to the firmware, and stays there through the burst
    assert c.decide(sample(0.4, util=100.0, clock=1620.0)) == Setpoint() and c.burst_guard
    assert c.decide(sample(0.6, util=80.0, clock=1980.0)) == Setpoint()
    # no busier than the mix is on average at default: the burst and its backlog are done
    assert c.decide(sample(0.8, util=20.0, clock=1980.0)).sm_clock_max_mhz == 1620 and not c.burst_guard
    # a busy mix whose default windows hold no whole cycles too: its saturation comes when requests
    # come, and they queue through each burst below default (decision 036)
    for spread, guarded in ((0.08, True), (0.005, False)):
        busy = _held_arriving_mix(saturated=0.6)
        busy._mix_windows = [MixWindow(probe=busy.current.ref, spread=spread, saturated=0.6, parts=())]
        assert busy.decide(sample(0.2, util=25.0, clock=1620.0)).sm_clock_max_mhz == 1620
        held = busy.decide(sample(0.4, util=100.0, clock=1620.0))
        # one that repeats in its own rhythm (training steps between stalls) saturates by itself:
        # a guard would hand every step back to the firmware, a write a step
        assert (held == Setpoint() and busy.burst_guard) if guarded else held.sm_clock_max_mhz == 1620, spread
    # not under a bound on end time alone, whose work has no requests to queue
    batch = _held_arriving_mix(saturated=0.02)
    batch.params = {**batch.params, "bound": "time"}
    batch.decide(sample(0.2, util=100.0, clock=1620.0))
    assert batch.decide(sample(0.4, util=100.0, clock=1620.0)).sm_clock_max_mhz == 1620


def test_a_mix_read_periodic_stays_so_through_one_borderline_window_but_not_through_bursts():
    # a training mix's windows read 0.0136-0.0187 over their own cycles; the one a refresh read
    # next, 0.0201, guarded it, and the guard handed every step back to the firmware: 19 reversals
    # a minute over a 16-minute run (decision 038)
    c = _held_arriving_mix(saturated=0.6)
    m = c.current

    def periodic_after(spread):
        c._mix_windows = [MixWindow(probe=m.ref, spread=spread, saturated=0.6, parts=())]
        return c._mix_periodic(m)

    assert periodic_after(0.0136) and periodic_after(0.0201)
    assert not periodic_after(0.08)  # a window over bursts: requests, not steps
    assert not periodic_after(0.03)  # and once read irregular, only whole cycles read it periodic again
    assert periodic_after(0.015)
    fresh = _held_arriving_mix(saturated=0.6)  # a mix first read between the two is irregular
    fresh._mix_windows = [MixWindow(probe=fresh.current.ref, spread=0.03, saturated=0.6, parts=())]
    assert not fresh._mix_periodic(fresh.current)


def test_a_mix_of_arriving_work_plans_its_requests_with_the_whole_latency_budget():
    # half the budget for a mix answers DRAM progress underweighting a serial mix's compute-heavy
    # parts in its end time; an arriving mix's requests are planned by kernel time per unit of work,
    # which that does not touch, and with half they ran 1.2% late against 3% on the suite
    # and the end time's budget is not halved for it either: the planner takes the smaller of the two,
    # and the halved one had bound its requests as well (generated pipeline work ran 1.2-1.5% late
    # against 3%, held two steps above the clock its requests' budget allowed)
    c = _held_arriving_mix(saturated=0.02)
    planned = 0.03 * c.params["budget_use"]
    assert c._budget_now(latency=True) == pytest.approx(planned)
    assert c._budget_now() == pytest.approx(planned)
    busy = _held_arriving_mix(saturated=0.6)
    assert busy._budget_now(latency=True) == pytest.approx(planned * busy.params["composite_budget_share"])
    assert busy._budget_now() == pytest.approx(planned * busy.params["composite_budget_share"])


def _controller_with_mix(m: PhaseModel, **params) -> ModelController:
    """A `balanced`-like controller (3%, both bounds, and params) in composite mode with m as its
    current mix."""
    c = ModelController({"slowdown_budget": 0.03, "bound": "both", **params}, H100)
    c.start(sample(0.0), Setpoint())
    c.composite = True
    c.models, c.current, c._mix_model = [m], m, m
    return c


def test_a_mix_takes_its_further_probes_only_while_the_requests_budget_lasts():
    # a busy training mix's second fixed probe, at 0.82 of its clock with the requests' budget spent,
    # was met by serving work whose prefills saturated the GPU there: the run's requests 8.5% late
    m = PhaseModel(ref=Probe(clock_mhz=1592, util=0.48, progress=13.5, power=385.0), mix=True, latency_bound=True,
                   saturated_share=0.43)
    m.add(Probe(clock_mhz=1455, util=0.64, progress=18.4, power=330.0))
    c = _controller_with_mix(m)
    c.lat_work_s, c.lat_extra_s = 10.0, 10.0  # spent: the estimate reads every request 100% late
    c._next_probe(100.0)
    assert c.state == "hold"
    c.lat_extra_s = 0.0  # none spent, and ten minutes of end time to pay for it: the second fixed probe
    c.elapsed = 600.0
    c._next_probe(130.0)
    assert c.state == "probe" and c.probe_target < 1455



def test_under_a_latency_bound_a_phase_saturated_at_default_is_held_there_unprobed():
    # arriving work that keeps the GPU saturated at default queues at any lower clock, and NVML shows
    # it as serial work: a 98%-busy burst at a job's start, probed at 0.9 and 0.82 of the clock, made
    # its requests 3.3 times late. Batch work that saturates the GPU runs under bound = "time"
    held = {}
    for bound in ("both", "time"):
        c = ModelController({"slowdown_budget": 0.03, "bound": bound}, H100)
        gpu = SyntheticGpu(cb=0.6, busy=1.0, dram=0.4)
        c.start(gpu.read(0), Setpoint())
        sps = drive(c, gpu, 30)
        held[bound] = (c.state, ceiling(sps[-1]), len(c.current.probes), min(ceiling(sp) for sp in sps))
    assert held["both"] == ("hold", 1980, 0, 1980)
    assert held["time"][0] == "hold" and held["time"][1] < 1980 and held["time"][2] >= 1


def test_a_quiet_phase_is_probed_below_the_clock_its_requests_meet():
    # the firmware idles the clock of a mostly idle phase (its mean clock 345 MHz); its requests run
    # at the boost. Probed at a fraction of the mean, it was probed at 345 MHz, and a burst arriving
    # then ran there until the probe saw it
    c = ModelController({"slowdown_budget": 0.03}, H100)
    _until_probe(c, lambda t: sample(t, util=0.0, clock=345.0, power=75.0, mem=0.0, dram=0.0))
    assert c.state == "probe" and c.current.boost_bound()
    assert c.probe_target == c.limits.snap_clock(c.probe_fracs[0] * 1980.0)


def test_a_probe_past_the_planned_headroom_spends_its_kernels_stretch_not_the_sentinel():
    # a decode phase 91% busy at default, probed at 1560 MHz, stayed 93% busy and its kernels 1.8%
    # slower: past the 90% busy share kept for queueing, stretch() forbids that clock (QUEUED), and
    # charging the sentinel read ten times the probe's work as latency spent: the budget of a
    # generated serving run was gone from its ninth second and every mix after it held at default
    m = PhaseModel(ref=Probe(clock_mhz=1898, util=0.906, progress=66.56, power=263.0), latency_bound=True,
                   boost_mhz=1980.0)
    m.add(Probe(clock_mhz=1725, util=0.918, progress=66.1, power=240.0))
    m.add(Probe(clock_mhz=1560, util=0.932, progress=67.28, power=220.0))
    assert m.kind == "arrival" and m.stretch(1560) >= QUEUED
    assert m.spent_stretch(1560) == pytest.approx(1898 / 1560 - 1.0)  # all kernel time scaling: cautious
    assert m.spent_stretch(1898) == 0.0
    c = ModelController({"slowdown_budget": 0.03, "bound": "both"}, H100)
    c._account_latency(2.0, m, 1560)
    assert c.lat_extra_s == pytest.approx(2.0 * 0.906 * (1898 / 1560 - 1.0))


def test_a_new_mix_is_planned_on_its_own_not_by_its_short_past_beside_mixes_no_longer_running():
    # a mix one second old beside one held for a minute had a sixtieth of the weight, and was planned
    # at a 39% stretch: the mixes before it are not running, and it will run until it changes
    c = _held_arriving_mix(saturated=0.02)
    old = PhaseModel(ref=Probe(clock_mhz=1980, util=0.3, progress=12.0, power=260.0), mix=True, latency_bound=True,
                     saturated_share=0.02)
    old.add(Probe(clock_mhz=1620, util=0.3, progress=12.0, power=205.0))  # memory-bound: no stretch at all
    old.seen_s = 60.0
    new = PhaseModel(ref=Probe(clock_mhz=1980, util=0.5, progress=20.0, power=300.0), mix=True, latency_bound=True,
                     saturated_share=0.02)
    new.add(Probe(clock_mhz=1800, util=0.55, progress=20.0, power=260.0))  # all its kernel time clock-bound
    new.seen_s = 1.0
    c.models, c.current, c._mix_model = [old, new], new, new
    f = c._allocate()[id(new)]
    assert new.stretch(f) <= 0.03 * c.params["budget_use"] + 1e-9


def test_a_quiet_mix_whose_stretch_cannot_be_read_is_probed_only_where_its_cautious_stretch_allows():
    # a mix's windows that caught only the quiet between bursts: too idle to read a stretch from, and a
    # probe, which runs several cycles, met the next burst (saturated at default) below its clock; the
    # backlog stayed for the burst's 7.5 s, its requests 47% late (gen:bursty:253428: 5.7% over the run)
    m = PhaseModel(ref=Probe(clock_mhz=754, util=0.015, progress=0.34, power=98.0), mix=True, latency_bound=True,
                   boost_mhz=1980.0)
    assert m.boost_bound()
    c = _controller_with_mix(m)
    c._next_probe(10.0)
    # probed once, at the clock its cautious stretch allows within the budget, not 0.91 of it. The
    # whole budget, not a mix's half: that stretch (all kernel time scaling from the boost) bounds its
    # end time as well as its requests (docs/decisions/028). 1980 / (1 + 0.03 x 0.95) = 1925 MHz,
    # the next supported clock up 1935
    assert c._budget_now(latency=True) == pytest.approx(0.03 * c.params["budget_use"])
    assert c._budget_now() == pytest.approx(0.03 * c.params["budget_use"])
    assert c.state == "probe" and c.probe_target == 1935
    m.add(Probe(clock_mhz=1950, util=0.016, progress=0.33, power=95.0))
    c._next_probe(40.0)
    assert c.state == "hold"
    # under a power-cap objective the same probe is a power limit, never a clock lock
    capped = _controller_with_mix(PhaseModel(ref=Probe(clock_mhz=754, util=0.015, progress=0.34, power=98.0),
                                             mix=True, latency_bound=True, boost_mhz=1980.0), objective="power_cap")
    capped._next_probe(10.0)
    assert capped.state == "probe" and capped.setpoint.sm_clock_max_mhz is None
    assert capped.setpoint.power_limit_w == pytest.approx(max(H100.power_limit_min_w, 98.0 / 1.0285))
    # a single phase as idle is still probed: its probe ends at its first saturated reading
    single = ModelController({"slowdown_budget": 0.03, "bound": "both"}, H100)
    single.start(sample(0.0), Setpoint())
    one = PhaseModel(ref=Probe(clock_mhz=754, util=0.015, progress=0.34, power=98.0), latency_bound=True,
                     boost_mhz=1980.0)
    single.models, single.current = [one], one
    single._next_probe(10.0)
    assert single.state == "probe"


def test_the_reference_clock_is_never_queued():
    # a rebased decode 90% busy at default whose probes put the busy share at its reference past the
    # headroom: QUEUED at the reference too, no plan could meet the weighted stretch, and every other
    # phase went to its reference (a max-savings run held a decode at 1603 MHz where 1320 was planned)
    m = PhaseModel(ref=Probe(clock_mhz=1980, util=0.907, progress=79.54, power=363.0), latency_bound=True)
    m.add(Probe(clock_mhz=1800, util=0.92, progress=79.55, power=330.0))
    m.add(Probe(clock_mhz=1620, util=0.94, progress=78.94, power=300.0))
    m.ref = Probe(clock_mhz=1980, util=0.902, progress=78.16, power=363.0)
    m.refit()
    assert m.kind == "arrival" and m.stretch(1980) == 0.0 and m.stretch(1620) >= QUEUED


def test_under_a_latency_bound_no_single_phase_is_held_where_it_saturates():
    # a decode 93% busy at default, taken for serial work once a prefill's readings joined its model,
    # was held at 795 MHz after it read 100% busy at 1020: its requests ran 4.7 times late
    m = PhaseModel(ref=Probe(clock_mhz=1980, util=0.930, progress=77.39, power=314.0), latency_bound=True)
    for p in [(1800, 0.95, 77.42), (1620, 0.97, 76.72), (1874, 0.933, 71.55), (1020, 1.0, 75.33)]:
        m.add(Probe(clock_mhz=p[0], util=p[1], progress=p[2], power=250.0))
    assert m.kind == "serial"
    assert m.stretch(1020) >= QUEUED and m.stretch(795) >= QUEUED
    # serial work whose busy share stays put as the clock falls keeps its clocks (closed-loop decode)
    flat = PhaseModel(ref=Probe(clock_mhz=1980, util=0.9, progress=45.37, power=249.0), latency_bound=True)
    for p in [(1800, 0.9, 45.38), (1620, 0.9, 45.47), (1335, 0.9, 43.79)]:
        flat.add(Probe(clock_mhz=p[0], util=p[1], progress=p[2], power=200.0))
    assert flat.kind == "serial" and flat.stretch(1335) < 0.1


def _copy_loop_probes(*clocks, knee=1500.0):
    """Probes of a saturated copy loop that runs as fast as memory allows down to `knee` MHz and
    slows as 1/f below it (a real H200's copy: docs/hardware.md). DRAM progress is its work rate."""
    out = []
    for f in clocks:
        stretch = max(1.0, knee / f)
        out.append(Probe(clock_mhz=f, util=0.99, progress=86.0 / stretch, power=100.0 + 0.16 * f))
    return out


def test_a_refining_probe_of_batch_work_steps_at_most_one_fixed_step_below_the_deepest():
    # two fixed probes on the flat part of a roofline fit a phase the clock does not touch; the
    # refining probe went to the fit's cheapest clock (870 MHz on a real H200, 405 in the simulator),
    # past the knee, and its stretch there spent the budget the knee needed
    ref, *probes = _copy_loop_probes(1980, 1800, 1620)
    c, m = controller_with_phase({"slowdown_budget": 0.03, "bound": "time"}, ref, *probes)
    c._next_probe(0.0)
    assert c.state == "probe"
    assert c.probe_target == c.limits.snap_clock(min(c.probe_fracs) * 1620)
    assert 1300 < c.probe_target < 1620


def test_probes_that_bend_are_followed_point_by_point_not_by_one_line():
    ref, *probes = _copy_loop_probes(1980, 1800, 1620, 1335)
    m = PhaseModel(ref=ref)
    for p in probes:
        m.add(p)
    assert m.fit_error() > 0.03 and m.knots is not None
    def stretch(f):
        return m.kernel_time(f) / m.kernel_time(1980.0)

    # exact at the probes, flat above the highest, and between probes no faster than either
    assert stretch(1620) == pytest.approx(1.0) and stretch(1800) == pytest.approx(1.0)
    assert stretch(2100) == pytest.approx(1.0)
    assert stretch(1335) == pytest.approx(1500 / 1335)
    assert 1.0 <= stretch(1500) <= stretch(1335)
    # below the deepest probe all kernel time scales with the clock from there (the cautious case)
    assert stretch(1000) == pytest.approx(1500 / 1000)
    assert m.slowdown(1620) == pytest.approx(0.0, abs=1e-9) and m.slowdown(1000) > m.slowdown(1335) > 0.1
    # arrays too, as the planner prices every clock at once
    assert np.allclose(m.kernel_time(np.array([1620.0, 1000.0])), [m.kernel_time(1620.0), m.kernel_time(1000.0)])
    # the line through the same points said the flat clocks cost time and the deep ones less
    line = PhaseModel(ref=ref)
    line.probes = list(probes)
    line.a, line.b = m.a, m.b
    assert (line.a + line.b / 1620) / (line.a + line.b / 1980) - 1 > 0.02


def test_probes_on_one_line_keep_the_line_and_a_mix_never_bends():
    # work that is a straight line in 1/f (trace-format.md's model) keeps a + b/f, whose
    # extrapolation below the deepest probe is exact there
    pts = [Probe(clock_mhz=f, util=0.9, progress=40.0 / (0.3 * 1980 / f + 0.7), power=300.0)
           for f in (1980, 1800, 1620)]
    m = PhaseModel(ref=pts[0])
    for p in pts[1:]:
        m.add(p)
    assert m.knots is None
    mix = PhaseModel(ref=_copy_loop_probes(1980)[0], mix=True)
    for p in _copy_loop_probes(1800, 1620, 1335):
        mix.add(p)
    assert mix.knots is None


def test_knee_knots_pool_noise_that_says_a_lower_clock_is_faster():
    from governor.controllers.phase_model import knee_knots

    xs, ks = knee_knots([1980, 1800, 1620, 1335], [1.00, 0.99, 1.01, 1.12])
    assert list(np.round(1 / xs)) == [1980, 1800, 1620, 1335]
    assert list(ks) == pytest.approx([0.995, 0.995, 1.01, 1.12])
    assert all(np.diff(ks) >= 0)


def test_a_mix_window_far_busier_than_its_clock_explains_is_other_work():
    # a training mix measured while its job was still quiet (28% busy at 1432 MHz) read 88% busy at
    # its first probe, 1170 MHz; kept, it was fitted as arriving work and held at 570 MHz, saturated,
    # and the run (gen:mixed:44595 under `batch`) ran 17% long
    ref = Probe(clock_mhz=1432, util=0.28, progress=9.0, power=300.0)
    m = PhaseModel(ref=ref, mix=True)
    c = _controller_with_mix(m, bound="time")
    assert not c._consistent(ref, Probe(clock_mhz=1170, util=0.88, progress=18.3, power=520.0))
    assert not c._consistent(ref, Probe(clock_mhz=1170, util=0.05, progress=1.0, power=120.0))  # went quiet
    # windows that caught more or fewer of its bursts, or its stretch at the lower clock, are the mix
    assert c._consistent(ref, Probe(clock_mhz=1170, util=0.45, progress=9.5, power=280.0))
    assert c._consistent(ref, Probe(clock_mhz=1170, util=0.2, progress=7.0, power=230.0))
    busy = Probe(clock_mhz=1736, util=0.78, progress=30.0, power=600.0)
    assert c._consistent(busy, Probe(clock_mhz=1425, util=0.97, progress=24.9, power=480.0))
    # under a latency bound a mix's windows are not judged so (its plan has the busy-share headroom)
    assert _controller_with_mix(m)._consistent(ref, Probe(clock_mhz=1170, util=0.88, progress=18.3, power=520.0))


def test_under_a_time_bound_a_mix_is_refined_one_fixed_step_below_its_deepest_window():
    # a training mix whose load moved between its two windows (progress 15.0 at 1636 MHz, 15.5 at
    # 1335) was fitted as arriving work, which costs nothing until it saturates: its next window went
    # halfway down, to 915 MHz, for 30 s, and `batch` ran gen:mixed:149813 11% long
    m = PhaseModel(ref=Probe(clock_mhz=1636, util=0.69, progress=15.0, power=520.0), mix=True)
    m.add(Probe(clock_mhz=1335, util=0.79, progress=15.5, power=400.0))
    assert m.kind == "arrival"
    c = _controller_with_mix(m, bound="time")
    c._next_probe(100.0)
    assert c.state == "probe"
    assert c.probe_target >= c.limits.snap_clock(min(c.probe_fracs) * 1335) > 0.5 * 1335


def test_a_busy_mix_window_with_more_progress_at_a_lower_clock_is_other_work():
    # a training mix's reference window caught a checkpoint (68% busy, where its steps keep it 90%
    # busy); its first probe, at 0.82 of the clock, read 18% more progress. Kept, the two windows were
    # fitted as arriving work and held at 1170 MHz: `batch` ran gen:training:229377 15% long
    ref = Probe(clock_mhz=1740, util=0.68, progress=24.0, power=520.0)
    busy = _controller_with_mix(PhaseModel(ref=ref, mix=True), bound="time")
    assert not busy._consistent(ref, Probe(clock_mhz=1425, util=0.92, progress=28.3, power=470.0))
    assert busy._consistent(ref, Probe(clock_mhz=1425, util=0.80, progress=23.0, power=430.0))  # slower: the clock
    # a bursty mix's windows vary by more than that with the bursts they catch: it is not judged so
    quiet_ref = Probe(clock_mhz=1740, util=0.3, progress=10.0, power=300.0)
    quiet = _controller_with_mix(PhaseModel(ref=quiet_ref, mix=True), bound="time")
    assert quiet._consistent(quiet_ref, Probe(clock_mhz=1425, util=0.4, progress=12.5, power=280.0))


def test_under_a_latency_bound_a_busy_mix_window_that_read_other_work_is_no_probe_of_it():
    # a training mix saturated in 83% of its default readings (1533 MHz, power-capped) probed at
    # 1395: a pipeline began during the window, whose kernel time per unit of work read 5% less than
    # the mix's. Kept, the mix went on to its next fixed window at 1260 MHz, which the pipeline's
    # requests met at 0.64 of the clock they run at by default: 16% late (h100 gen:mixed:520355)
    ref = Probe(clock_mhz=1533, util=0.851, progress=25.96, power=596.0)
    foreign = Probe(clock_mhz=1395, util=0.767, progress=24.64, power=402.0)
    busy = _controller_with_mix(PhaseModel(ref=ref, mix=True, latency_bound=True, saturated_share=0.83))
    assert not busy._consistent(ref, foreign)
    assert busy._consistent(ref, Probe(clock_mhz=1395, util=0.90, progress=25.0, power=540.0))  # its steps, slower
    # a quieter mix busy half its time (a serving mix) is not judged so under a latency bound: its
    # windows scatter by more than that with its prefills and decode alone
    quiet = _controller_with_mix(PhaseModel(ref=ref, mix=True, latency_bound=True, saturated_share=0.05))
    assert quiet._consistent(ref, foreign)


def test_under_both_bounds_a_mix_s_further_window_goes_no_deeper_than_end_time_s_budget_left_pays_for():
    # a mix's second fixed window lasts 20-30 s at 0.82 of its clock: on a 133 s job with 1.1% of end
    # time's budget left it ran to the job's end, 4.36% long (h100 gen:mixed:910188)
    def controller(elapsed_s, extra_s):
        m = PhaseModel(ref=Probe(clock_mhz=1530, util=0.8, progress=24.0, power=600.0), mix=True,
                       latency_bound=True, saturated_share=0.5)
        m.add(Probe(clock_mhz=1410, util=0.86, progress=22.5, power=520.0))  # its kernels follow the clock
        assert m.kind == "serial"
        c = _controller_with_mix(m)
        c._mix_window_s, c.elapsed, c.extra = 25.0, elapsed_s, extra_s
        c._next_probe(elapsed_s)
        return c

    fixed = controller(1000.0, 0.0)  # a long job with nothing spent: the fixed window, 0.82 of the clock
    assert fixed.state == "probe" and fixed.probe_target == 1260.0
    short = controller(106.0, 1.0)  # 106 s in, 1 s spent: a shallower window, within what is left
    assert short.state == "probe" and 1260.0 < short.probe_target < 1530.0
    spent = controller(106.0, 3.0)  # nothing left: held
    assert spent.state == "hold"


def test_under_both_bounds_a_mix_that_waits_on_the_clock_waits_for_end_time_budget_too():
    # both bounds bound end time as well: a training mix met anew after a checkpoint (its reference
    # window half checkpoint, half steps saturating the GPU) was probed for 30 s at 0.91 of its clock
    # with end time's budget already spent by its first mix's windows, and `balanced` ran a100
    # gen:training:44595 3.6% long against its 3%
    busy = PhaseModel(ref=Probe(clock_mhz=1395, util=0.79, progress=23.9, power=330.0), mix=True,
                      latency_bound=True, saturated_share=0.5)
    c = _controller_with_mix(busy)
    c.elapsed, c.extra = 190.0, 6.0  # 3.3% spent against 1.4% planned for a mix; no requests
    c._next_probe(190.0)
    assert c.state == "hold"
    c.extra = 0.0
    c._next_probe(220.0)
    assert c.state == "probe"
    # a quieter mix, whose windows cost little end time, goes on probing, and its charges stand
    quiet = PhaseModel(ref=Probe(clock_mhz=1650, util=0.3, progress=12.0, power=300.0), mix=True,
                       latency_bound=True, saturated_share=0.0)
    c = _controller_with_mix(quiet)
    c.elapsed, c.extra = 190.0, 6.0
    c._next_probe(190.0)
    assert c.state == "probe" and c.extra == 6.0


def test_under_a_time_bound_a_busy_mix_read_serial_waits_for_budget_before_its_next_window():
    # a training mix probed again once its first window had spent end time's budget: each window
    # lasts 20-30 s at up to 0.82 of its clock, and `batch` ran gen:training:991031 9% long
    m = PhaseModel(ref=Probe(clock_mhz=1671, util=0.87, progress=23.0, power=600.0), mix=True)
    m.add(Probe(clock_mhz=1365, util=0.94, progress=19.9, power=470.0))
    assert m.kind == "serial"
    c = _controller_with_mix(m, bound="time")
    c.elapsed, c.extra = 100.0, 10.0  # 11% spent against 1.4% planned
    c._next_probe(100.0)
    assert c.state == "hold"
    c.extra = 0.0
    c._next_probe(130.0)
    assert c.state == "probe"
    # a quiet mix, whose windows cost little end time, goes on with its fixed windows
    quiet = PhaseModel(ref=Probe(clock_mhz=1650, util=0.3, progress=12.0, power=300.0), mix=True)
    quiet.add(Probe(clock_mhz=1350, util=0.34, progress=11.0, power=250.0))
    assert quiet.kind == "serial" and not quiet.busy_at_reference()
    c = _controller_with_mix(quiet, bound="time")
    c.elapsed, c.extra = 100.0, 10.0
    c._next_probe(100.0)
    assert c.state == "probe"
    # (one read as arriving work refines below its windows only with budget left: decision 026)


def test_a_rebased_busy_mix_keeps_the_kind_its_probes_read_against_their_own_reference():
    # a training mix's probe read 7% less progress at 0.82 of the clock (serial); a fresh reference
    # window as slow as that probe made the pair read as arriving work, held at 825 MHz, and `batch`
    # ran gen:training:261972 on an A100 6% long
    m = PhaseModel(ref=Probe(clock_mhz=1356, util=0.69, progress=29.2, power=330.0), mix=True)
    m.add(Probe(clock_mhz=1110, util=0.76, progress=27.1, power=260.0))
    assert m.kind == "serial"
    ModelController._rebase(m, Probe(clock_mhz=1357, util=0.65, progress=27.4, power=330.0))
    m.refit()
    assert m.kind == "serial"
    # its slowdown is at least what its kernel time per unit of work says, with its host time fixed
    assert m.slowdown(1110) > 0.08
    m.add(Probe(clock_mhz=1230, util=0.7, progress=27.4, power=290.0))  # a probe against this reference
    assert m.kind_before_rebase is None


def test_a_busy_mix_window_whose_kernels_took_less_time_per_work_at_a_lower_clock_is_other_work():
    # a lower clock never shortens the same work's kernels, and the load between windows leaves
    # kernel time per unit of work (busy share over progress) alone: a window 52% busy at 1500 MHz
    # with 8% more progress than its reference's 53% at 1836 did other work (gen:mixed:371076)
    ref = Probe(clock_mhz=1836, util=0.526, progress=28.9, power=560.0)
    c = _controller_with_mix(PhaseModel(ref=ref, mix=True), bound="time")
    assert not c._consistent(ref, Probe(clock_mhz=1500, util=0.523, progress=31.2, power=470.0))
    assert c._consistent(ref, Probe(clock_mhz=1500, util=0.60, progress=30.0, power=470.0))  # kernels slower
    # under a latency bound a mix's windows are not judged so
    assert _controller_with_mix(PhaseModel(ref=ref, mix=True))._consistent(
        ref, Probe(clock_mhz=1500, util=0.523, progress=31.2, power=470.0))


def test_a_rebased_busy_mix_drops_the_probes_its_new_reference_says_were_other_work():
    # a known mix rebased onto a window whose load had risen read its old probe's clock as free (less
    # kernel time per unit of work at 1500 MHz than at the new reference's 1836) and was held at
    # 345 MHz from that one window: `batch` ran gen:mixed:371076 4% long
    old_ref = Probe(clock_mhz=1830, util=0.45, progress=28.0, power=540.0)
    probe = Probe(clock_mhz=1500, util=0.523, progress=31.2, power=470.0)
    new_ref = Probe(clock_mhz=1836, util=0.526, progress=28.9, power=560.0)
    m = PhaseModel(ref=old_ref, mix=True)
    m.add(probe)
    ModelController._rebase(m, new_ref)
    m.refit()
    assert m.probes == [] and m.kind_before_rebase is None
    assert m.slowdown(1500) > 0.05  # measured anew, and meanwhile read with all kernel time clock-bound
    # a probe that took more kernel time per unit of work than the new reference is kept
    m = PhaseModel(ref=old_ref, mix=True)
    m.add(Probe(clock_mhz=1500, util=0.60, progress=30.0, power=470.0))
    ModelController._rebase(m, new_ref)
    assert len(m.probes) == 1
    # under a latency bound the mix keeps its probes (its plan has the busy-share headroom)
    m = PhaseModel(ref=old_ref, mix=True, latency_bound=True)
    m.add(probe)
    ModelController._rebase(m, new_ref)
    assert len(m.probes) == 1


def test_a_busy_mix_held_as_arriving_work_is_read_serial_when_its_held_windows_fall_short():
    # a mix of training steps whose first probe read arriving work was held at 0.75 of its clock,
    # where four of its windows read 18-20% less progress than that reading predicts: `batch` ran
    # gen:mixed:520645 11% long. A held window is one more reading of the same question
    m = PhaseModel(ref=Probe(clock_mhz=1539, util=0.815, progress=23.08, power=600.0), mix=True)
    m.add(Probe(clock_mhz=1260, util=0.97, progress=24.54, power=470.0))
    assert m.kind == "arrival"
    c = _controller_with_mix(m, bound="time")
    c.state_start, c.elapsed, c.extra = 100.0, 120.0, 0.0
    kept = Probe(clock_mhz=1155, util=0.97, progress=22.8, power=430.0)
    assert not c._held_arrival_missed(m, kept, 106.0) and m.kind == "arrival" and len(m.probes) == 1
    short = Probe(clock_mhz=1155, util=0.81, progress=18.97, power=400.0)
    before = m.slowdown(1155)
    assert c._held_arrival_missed(m, short, 112.0)
    assert m.kind == "serial" and len(m.probes) == 2
    after = m.slowdown(1155)
    # the 12 s held so far are charged at what the mix now reads there, above what they were charged
    assert after > before + 0.05
    assert c.extra == pytest.approx(12.0 * (after / (1.0 + after) - before / (1.0 + before)))
    assert c._allocate()[id(m)] > 1155  # and re-planned above the clock that fell short
    # under a latency bound the held windows are not read so (its plan is by the requests' stretch)
    m2 = PhaseModel(ref=Probe(clock_mhz=1539, util=0.815, progress=23.08, power=600.0), mix=True, latency_bound=True)
    m2.add(Probe(clock_mhz=1260, util=0.97, progress=24.54, power=470.0))
    c2 = _controller_with_mix(m2)
    assert not c2._held_arrival_missed(m2, short, 112.0)


def test_a_quiet_mix_held_as_arriving_work_is_read_anew_when_a_held_window_saturates_short_of_it():
    # a serving mix 44% busy at default, its windows down to 525 MHz read as arriving work, was held at
    # 255 MHz, where its requests queued behind a saturated GPU for 120 s: `batch` ran a100
    # gen:serving:496270 14% long. A quiet mix's held windows are not checked as a busy mix's are (a
    # lull in its arrivals reads short as well), but a lull leaves the GPU idle, and this was saturated
    m = PhaseModel(ref=Probe(clock_mhz=1386, util=0.44, progress=27.01, power=150.0), mix=True)
    m.add(Probe(clock_mhz=1140, util=0.54, progress=31.01, power=120.0))
    m.add(Probe(clock_mhz=885, util=0.59, progress=28.83, power=95.0))
    assert m.kind == "arrival" and not m.busy_at_reference()
    c = _controller_with_mix(m, bound="time")
    c.state_start, c.elapsed, c.extra = 100.0, 120.0, 0.0
    backlog = Probe(clock_mhz=255, util=1.0, progress=14.0, power=60.0)
    lull = Probe(clock_mhz=255, util=0.3, progress=14.0, power=45.0)
    assert not c._held_arrival_missed(m, lull, 110.0) and len(m.probes) == 2
    assert not c._held_arrival_missed(m, backlog, 110.0, saturated=0.1) and len(m.probes) == 2
    assert c._held_arrival_missed(m, backlog, 110.0, saturated=0.9) and len(m.probes) == 3
    assert c.extra > 0.0 and c._allocate()[id(m)] > 255  # charged, and re-planned above it


def test_under_a_time_bound_a_quiet_mix_whose_window_fell_short_of_its_arrival_reading_is_serial():
    # a training mix whose reference window caught a checkpoint's end (47% busy) read arriving work
    # from its first probe; its next, at 0.43 of the clock, read 11% less progress, and it still read
    # arriving work (gen:training:185263 under `batch`, 10% long)
    m = PhaseModel(ref=Probe(clock_mhz=1694, util=0.467, progress=15.46, power=420.0), mix=True)
    m.add(Probe(clock_mhz=1395, util=0.572, progress=16.2, power=380.0))
    assert m.kind == "arrival" and not m.busy_at_reference()
    m.add(Probe(clock_mhz=735, util=0.801, progress=13.77, power=250.0))
    assert m.kind == "serial"
    # under a latency bound a mix is planned by its requests' stretch, not read so
    m = PhaseModel(ref=Probe(clock_mhz=1694, util=0.467, progress=15.46, power=420.0), mix=True, latency_bound=True)
    m.add(Probe(clock_mhz=1395, util=0.572, progress=16.2, power=380.0))
    m.add(Probe(clock_mhz=735, util=0.801, progress=13.77, power=250.0))
    assert m.kind == "arrival"


def test_under_a_time_bound_an_arriving_mix_refines_no_deeper_than_its_budget_pays_for_were_it_serial():
    # the same mix's refining window went halfway down, to 735 MHz, for 30 s, with end time's budget
    # already spent on two training mixes' first windows
    def probed(extra_s: float, elapsed_s: float) -> ModelController:
        m = PhaseModel(ref=Probe(clock_mhz=1694, util=0.467, progress=15.46, power=420.0), mix=True)
        m.add(Probe(clock_mhz=1395, util=0.572, progress=16.2, power=380.0))
        c = _controller_with_mix(m, bound="time")
        c._mix_window_s = 25.0
        c.elapsed, c.extra = elapsed_s, extra_s
        c._next_probe(elapsed_s)
        assert c.state == "probe"
        return c

    tight = probed(3.0, 186.0)  # 1.6% spent against 2.4% planned: one fixed step, no further
    one_step = tight.limits.snap_clock(min(tight.probe_fracs) * 1395)
    assert tight.probe_target == one_step
    plenty = probed(0.0, 3000.0)  # a long job with its budget untouched: deeper, where the serial
    assert plenty.probe_target < one_step  # reading of a 25 s window still fits
    m = plenty.current
    window_s = plenty._settle() + 25.0
    s = m.serial_slowdown(plenty.probe_target)
    assert window_s * s / (1 + s) <= 0.024 * (3000.0 + window_s) / 1.024 + 1e-9


def test_under_a_time_bound_a_quiet_serial_mix_slows_at_least_as_its_kernel_time_says():
    # a serving mix 30% busy at 1980 MHz whose load rose as its windows went down read more progress
    # at 810 and 660 MHz than at its reference: its windows' progress fit read the clock as free, and
    # it was held at 345 MHz, saturated there, and `batch` ran gen:serving:240287 11% long
    m = PhaseModel(ref=Probe(clock_mhz=1980, util=0.302, progress=22.25, power=330.0), mix=True)
    for p in [(1620, 0.313, 22.31), (810, 0.593, 26.36), (660, 0.917, 36.01), (345, 0.997, 22.18)]:
        m.add(Probe(clock_mhz=p[0], util=p[1], progress=p[2], power=200.0))
    assert m.kind == "serial" and not m.busy_at_reference()
    assert m.slowdown(345) > 0.5  # its kernels took 3.3 times as long per unit of work there
    assert m.slowdown(1620) < 0.1


def test_under_a_time_bound_an_arriving_mix_takes_no_refining_window_with_its_budget_spent():
    # a quiet mix's refining window went one step down, to 375 MHz from 740, with end time's budget
    # read as spent, and met a training job's steps there: they ran 16 s at a quarter of their clock
    # before the window ended (h100 gen:mixed:480411 under `batch`, 4.03% long)
    def next_window(extra_s: float) -> ModelController:
        m = PhaseModel(ref=Probe(clock_mhz=1694, util=0.467, progress=15.46, power=420.0), mix=True)
        m.add(Probe(clock_mhz=1395, util=0.572, progress=16.2, power=380.0))
        assert m.kind == "arrival"
        c = _controller_with_mix(m, bound="time")
        c._mix_window_s = 25.0
        c.elapsed, c.extra = 186.0, extra_s
        c._next_probe(186.0)
        return c

    spent = next_window(10.0)  # 5.7% of end time spent against 2.85% planned
    assert spent._budget_now() <= 0.0
    assert spent.state == "hold" and spent.held_mhz >= 1395  # no deeper than it was measured
    assert spent.setpoint.sm_clock_max_mhz is not None  # still held below default, where it was measured
    left = next_window(1.0)
    assert left.state == "probe" and left.probe_target < 1395
    # and through the whole hold: its re-plans, once per window, follow the budget as it comes back,
    # but not below the floor (a quiet mix held at 1515 MHz was re-planned to 495 and then 345 MHz,
    # on serial work: h100 gen:training:378584 under `batch`, 14% long)
    spent.elapsed, spent.extra = 10_000.0, 0.0  # the budget back in full
    assert spent._allocate()[id(spent.current)] < 1395  # the plan alone would go deeper now
    t = 200.0
    for _ in range(200):  # held windows: readings as at its window, at the held clock
        t += 0.2
        spent.decide(sample(t, util=57.2, clock=spent.held_mhz, power=380.0, dram=16.2))
        assert spent.state == "hold" and spent.held_mhz >= 1395, (t, spent.held_mhz)
    assert spent._allocate()[id(spent.current)] < 1395  # re-planned all along, the plan still deeper


def test_the_work_changing_ends_a_mix_s_probe_and_hold_but_not_a_reference_window():
    # a job's start or end (docs/decisions/027): what runs now is measured at default settings, with
    # the mix and the budget spent kept; a reference window already measures whatever runs
    m = PhaseModel(ref=Probe(clock_mhz=1694, util=0.467, progress=15.46, power=420.0), mix=True)
    m.add(Probe(clock_mhz=1395, util=0.572, progress=16.2, power=380.0))
    for state in ("probe", "hold"):
        c = _controller_with_mix(m, bound="time")
        c._next_probe(100.0) if state == "probe" else c._hold(100.0, "identified")
        assert c.state == state and c.setpoint.sm_clock_max_mhz is not None
        c.extra = 1.5
        c.work_changed(110.0)
        assert c.state == "reference" and c.setpoint == Setpoint() and c.state_start == 110.0
        assert c.models == [m] and c.composite and c.extra == 1.5
    c.work_changed(111.0)
    assert c.state == "reference" and c.state_start == 110.0  # the window under way goes on


def test_a_new_phase_model_never_takes_over_what_was_kept_for_a_dropped_one():
    # probe charges and cached curves were keyed by id(model); a dropped model's address is reused
    # by the next one made, which inherited its charges: `batch` on h100 gen:bursty:531872 saved
    # 14.82% or 15.70% depending on what its process had simulated before
    c = ModelController({"slowdown_budget": 0.03, "bound": "time"}, H100)
    keys = []
    for _ in range(20):  # made and dropped one after another, as CPython reuses their addresses
        m = PhaseModel(ref=Probe(clock_mhz=1980, util=0.5, progress=20.0, power=300.0), mix=True)
        keys.append(c._uid(m))
        assert c._uid(m) == keys[-1]  # stable for the model's life
        del m
    assert len(set(keys)) == len(keys)


def test_status_says_when_a_mix_is_planned_cautiously():
    # under `batch`, a mix whose windows cannot tell arriving work from serial is planned with all its
    # busy time scaling (docs/decisions/031); the operator sees why it is held near default
    m = PhaseModel(ref=Probe(clock_mhz=1824, util=0.43, progress=11.37, power=316.0, progress_sd=0.13), mix=True)
    m.add(Probe(clock_mhz=1500, util=0.46, progress=11.81, power=243.0, progress_sd=0.11))
    c = _controller_with_mix(m, bound="time")
    c._hold(100.0, "identified")
    assert c.status()["phase"]["cautious"] is True and c.status()["phase"]["kind"] == "serial"
    assert c.held_mhz >= 1824 / (1.0 + 0.03 / 0.43) - 2 * c._bin()  # no deeper than the cautious reading allows
    told = PhaseModel(ref=replace(m.ref, progress_sd=0.01), mix=True)
    told.add(Probe(clock_mhz=1500, util=0.46, progress=11.40, power=243.0, progress_sd=0.01))
    c = _controller_with_mix(told, bound="time")
    c._hold(100.0, "identified")
    assert c.status()["phase"]["cautious"] is False and c.held_mhz < 1500  # windows that tell: arriving work


def test_a_refresh_that_finds_the_same_mix_puts_the_next_one_twice_as_far_off():
    """Each refresh runs the work at default settings for the 20-30 s a window of whole cycles
    takes; one that finds the mix it left is evidence the work is steady (docs/decisions/037)."""
    steady = PhaseModel(ref=Probe(clock_mhz=1980, util=0.4, progress=10.0, power=300.0), mix=True)
    other = PhaseModel(ref=Probe(clock_mhz=1980, util=0.7, progress=14.0, power=380.0), mix=True)
    c = _controller_with_mix(steady)
    refresh_s = c.params["refresh_s"]
    intervals = []
    for _ in range(5):
        c._refreshed_mix = steady  # a refresh began with this mix held, and held it again after
        c._mix_refreshed(steady)
        intervals.append(c._mix_refresh_after_s(steady))
    longest = MIX_REFRESH_GROWTH_MAX * refresh_s
    assert intervals == [2 * refresh_s, 4 * refresh_s, 8 * refresh_s, longest, longest]
    c._mix_refreshed(steady)  # held again without a refresh between (a probe ended): no change
    assert c._mix_refresh_after_s(steady) == longest
    c._refreshed_mix = steady
    c._mix_refreshed(other)  # the refresh found other work: the next one comes at the usual time
    assert c._mix_refresh_after_s(other) == refresh_s and c._mix_refresh_after_s(steady) == refresh_s


def test_a_mix_that_comes_by_another_path_is_refreshed_by_its_own_interval():
    """A steady mix's long interval is its own: a mix held next because a job started (no refresh
    between) is refreshed after `refresh_s`; a refresh that finds another mix, or a held window
    that misses, starts the mix over (docs/decisions/039)."""
    steady = PhaseModel(ref=Probe(clock_mhz=1980, util=0.4, progress=10.0, power=300.0), mix=True)
    other = PhaseModel(ref=Probe(clock_mhz=1980, util=0.7, progress=14.0, power=380.0), mix=True)
    c = _controller_with_mix(steady)
    refresh_s = c.params["refresh_s"]
    for _ in range(2):
        c._refreshed_mix = steady
        c._mix_refreshed(steady)
    assert c._mix_refresh_after_s(steady) == 4 * refresh_s
    c.work_changed(50.0)  # a job started: the other mix is found and held, with no refresh between
    c.models, c.current, c._mix_model = [other], other, other
    c._hold(60.0, "identified")
    window = Probe(clock_mhz=c.held_mhz, util=0.7, progress=14.0, power=380.0)
    c._decide_hold_composite(other, window, 60.0 + refresh_s + 1.0)
    assert c.state == "reference" and c.last_change == "refresh"
    # that refresh finds the steady mix again: the work moved, and neither has shown itself steady
    c.composite, c.models, c.current, c._mix_model = True, [steady], steady, steady
    c._hold(200.0, "known phase")
    assert c._mix_refresh_after_s(steady) == c._mix_refresh_after_s(other) == refresh_s
    for _ in range(2):
        c._refreshed_mix = steady
        c._mix_refreshed(steady)
    c.window = [Probe(clock_mhz=c.held_mhz, util=0.9, progress=30.0, power=600.0)] * 400
    c._decide_hold_composite(steady, Probe(clock_mhz=c.held_mhz, util=0.9, progress=30.0, power=600.0), 280.0)
    assert c.last_change == "composite phase changed" and c._mix_refresh_after_s(steady) == refresh_s


def test_steady_serving_is_refreshed_less_and_less_often_on_the_simulator():
    """`llm-serving` played eight times over (20 minutes of one steady mix): refreshed every
    two minutes it spent a sixth of its held time at default settings."""
    trace = load_trace("llm-serving")
    trace = replace(trace, repeat=trace.repeat * 8)
    refreshes, last = [], {}

    def on_tick(worker, driver):
        c = worker.controller
        key = (c.state, c.last_change)
        if key != last.get("key") and c.state == "reference" and c.last_change == "refresh":
            refreshes.append(driver.gpu.t)
        last["key"] = key

    run = run_trace(load_spec("h100-sxm"), trace, load_policy("balanced"), on_tick=on_tick)
    ref = run_trace(load_spec("h100-sxm"), trace, DEFAULT_POLICY)
    gaps = np.diff(refreshes)
    assert 2 <= len(refreshes) <= 4 and len(gaps) >= 1
    assert all(later > 1.8 * earlier for earlier, later in zip(gaps[:-1], gaps[1:], strict=True)) and gaps[0] > 200.0
    assert run.keeps(ref, 0.035, "both")
