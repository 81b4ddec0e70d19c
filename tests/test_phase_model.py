"""Identification of a phase's time/power model, and the progress proxy's assumption."""

from dataclasses import replace

import pytest

from governor.clock import VirtualClock
from governor.controllers.phase_model import QUEUED, PhaseModel, Probe, fit_kernel, fit_power
from governor.sim.device import SimDevice
from governor.sim.spec import load_spec


def test_fit_kernel_recovers_a_plus_b_over_f():
    fs = [1980.0, 1680.0, 1380.0]
    a, b = fit_kernel(fs, [0.2 + 900.0 / f for f in fs])
    assert a == pytest.approx(0.2, abs=1e-9) and b == pytest.approx(900.0, rel=1e-9)


def test_fit_power_is_nonnegative_and_exact_on_its_own_form():
    fs = [1980.0, 1500.0, 1100.0, 800.0]
    p = [100 + 50 * (f / 1000) + 40 * (f / 1000) ** 3 for f in fs]
    c = fit_power(fs, p)
    assert all(c >= 0) and c == pytest.approx([100, 50, 40], rel=1e-6)


def synthetic_phase(kind, cb=0.8, busy=0.6, f_ref=1980.0):
    """Readings a GPU would give for a phase of this kind, at clock f (progress in work/s)."""

    def at(f):
        k = cb * f_ref / f + (1 - cb)  # kernel time per unit of work (default-seconds)
        if kind == "serial":
            host = (1 - busy) / busy
            t = k + host
        else:
            t = max(1 / busy, k)
        util = k / t
        return Probe(clock_mhz=f, util=util, progress=40.0 / t, power=80 + 300 * (f / 1980) ** 3)

    return at


@pytest.mark.parametrize("kind", ["serial", "arrival"])
def test_slack_kind_is_told_apart_and_slowdown_predicted(kind):
    at = synthetic_phase(kind)
    m = PhaseModel(ref=at(1980.0))
    for f in (1680.0, 1380.0):
        m.add(at(f))
    assert m.kind == kind
    for f in (1200.0, 1000.0):
        truth = (1 / at(f).progress) / (1 / at(1980.0).progress) - 1
        if kind == "arrival":
            truth = max(truth, 0.0)
            assert m.slowdown(f) >= truth - 1e-6  # arrival plans headroom, never less than the truth
        else:
            assert m.slowdown(f) == pytest.approx(truth, rel=1e-3)


def test_without_progress_proxy_the_model_is_cautious():
    m = PhaseModel(ref=Probe(clock_mhz=1980.0, util=0.5, progress=0.0, power=200.0))
    assert not m.has_proxy
    assert m.slowdown(990.0) == pytest.approx(0.5)  # all busy time assumed clock-bound and serial


def test_dram_progress_is_proportional_to_true_work_rate_on_the_simulator(tmp_path, make_trace):
    """The proxy's assumption: DRAM activity tracks work done, at any clock."""
    rates = []
    for i, f in enumerate((1980, 1200, 705)):
        clock = VirtualClock()
        trace = make_trace({"seconds": 60.0, "busy": 0.7, "clock_bound": 0.6, "intensity": 0.6, "dram": 0.4})
        dev = SimDevice(load_spec("h100-sxm"), i, clock, tmp_path / str(i), trace=trace)
        dev.set_locked_clocks(345, f)
        clock.sleep_until(5.0)
        w0 = dev.gpu.workload.work_done
        readings = []
        for k in range(1, 51):
            clock.sleep_until(5.0 + 0.2 * k)
            readings.append(dev.sample().dram_bw_pct)
        work_rate = (dev.gpu.workload.work_done - w0) / 10.0
        rates.append(sum(readings) / len(readings) / work_rate)
    assert max(rates) / min(rates) < 1.03


def test_without_a_progress_proxy_utilization_is_predicted_from_the_probes():
    # a nearly idle phase (no DRAM traffic to measure progress by): util 2% at 1410 MHz, 3% at 585
    from governor.controllers.phase_model import PhaseModel, Probe

    m = PhaseModel(ref=Probe(clock_mhz=1410, util=0.02, progress=0.0, power=86.0))
    m.add(Probe(clock_mhz=1155, util=0.022, progress=0.0, power=69.0))
    m.add(Probe(clock_mhz=585, util=0.03, progress=0.0, power=59.0))
    assert not m.has_proxy and m.kind == "serial"  # the slowdown stays cautious
    assert m.slowdown(585) >= 0.02 * (1410 / 585 - 1) * 0.9
    util, _, _ = m.predict(585)
    assert abs(util - 0.03) < 0.005  # but the utilization to expect is what the probes showed


def test_a_mix_whose_progress_falls_with_the_clock_is_serial_and_slows_as_its_readings_show():
    # windows of compute and input stalls: idle time per unit of work moves between them, so the
    # spreads alone said "arriving work" and a hold at 480 MHz ran 20% slow
    pts = [Probe(clock_mhz=1739, util=0.765, progress=27.32, power=577),
           Probe(clock_mhz=1605, util=0.793, progress=26.32, power=503),
           Probe(clock_mhz=1440, util=0.71, progress=24.72, power=400)]
    m = PhaseModel(ref=pts[0], mix=True)
    for p in pts[1:]:
        m.add(p)
    assert m.kind == "serial"
    assert m.slowdown(1440) == pytest.approx(27.32 / 24.72 - 1.0, abs=0.02)  # what the readings show


def test_a_bursty_mix_keeps_its_progress_near_the_reference_and_stays_arriving_work():
    # progress falls only at a deep probe, where the bursts saturate: the arrival model covers that
    pts = [Probe(clock_mhz=1971, util=0.343, progress=17.17, power=371),
           Probe(clock_mhz=1800, util=0.421, progress=17.17, power=319),
           Probe(clock_mhz=1620, util=0.442, progress=17.17, power=267),
           Probe(clock_mhz=795, util=0.637, progress=15.38, power=172)]
    m = PhaseModel(ref=pts[0], mix=True)
    for p in pts[1:]:
        m.add(p)
    assert m.kind == "arrival"
    assert m.slowdown(1500) == pytest.approx(0.0, abs=1e-9)


def test_under_a_latency_bound_a_mix_whose_windows_disagree_is_not_planned_below_its_reference():
    """Windows of a mix that no one kernel-time-against-clock curve passes through (the work
    changed between them: kernel time per unit of work up 47% for a 9% lower clock) are no basis for
    betting requests on a lower clock; consistent ones are."""
    ref = Probe(clock_mhz=1856, util=0.58, progress=31.93, power=284.0)
    wild = PhaseModel(ref=ref, probes=[Probe(clock_mhz=1669, util=0.55, progress=30.26, power=250.0),
                                       Probe(clock_mhz=1515, util=0.48, progress=16.0, power=220.0)],
                      mix=True, latency_bound=True)
    assert wild.fit_error() > 0.1 and wild.stretch(1515.0) >= 10.0 and wild.stretch(1856.0) == 0.0
    t = lambda f: 0.02 + 20.0 / f  # noqa: E731 - one curve through every window
    calm = PhaseModel(ref=Probe(clock_mhz=1856, util=0.58, progress=1 / t(1856), power=284.0),
                      probes=[Probe(clock_mhz=f, util=0.58, progress=1 / t(f), power=250.0) for f in (1669, 1515)],
                      mix=True, latency_bound=True)
    assert calm.fit_error() < 0.01 and 0.0 < calm.stretch(1515.0) < 1.0


def test_a_mix_whose_load_moved_between_windows_is_still_planned_by_its_kernels():
    """Arriving work does its work at the rate it arrives: between windows of a serving mix its
    load moves, and with it the wall time per unit of work, while the kernel time per unit of work
    (busy share over progress) follows the clock alone. The fit is judged on kernel time, so a load
    that fell by 30% and then rose by 25% is no reason to hold the mix at its reference, and the
    mix, seldom saturated at default, is planned as arriving work by its kernels' stretch."""
    k = lambda f: 0.004 + 20.0 / f  # noqa: E731 - kernel seconds per unit of work
    ref = Probe(clock_mhz=1856, util=0.5, progress=0.5 / k(1856), power=284.0)
    probes = [Probe(clock_mhz=f, util=0.5 * load * k(f) / k(1856), progress=0.5 * load / k(1856), power=250.0)
              for f, load in ((1669, 0.7), (1515, 1.25))]
    m = PhaseModel(ref=ref, probes=probes, mix=True, latency_bound=True)
    assert m.fit_error() < 0.01
    assert m.kind == "arrival"
    assert m.stretch(1515.0) == pytest.approx(k(1515) / k(1856) - 1.0, rel=1e-6)
    busy = PhaseModel(ref=ref, probes=probes, mix=True, latency_bound=True, saturated_share=0.6)
    assert busy.busy_mix() and not m.busy_mix()


def test_under_a_time_bound_a_busy_mix_short_of_its_arrival_progress_is_serial():
    # a training mix's first probe kept its reference's progress (the reference had caught a
    # checkpoint), its second read 12% less at 0.69 of the clock: arriving work would have kept it.
    # Read as arriving work still, it went on down to 780 MHz, and `batch` ran gen:training:643497 on
    # an A100 13% long
    pts = [Probe(clock_mhz=1307, util=0.67, progress=16.9, power=250.0),
           Probe(clock_mhz=1065, util=0.84, progress=17.3, power=200.0),
           Probe(clock_mhz=900, util=0.82, progress=14.9, power=170.0)]
    m = PhaseModel(ref=pts[0], mix=True)
    m.add(pts[1])
    assert m.kind == "arrival"  # one window that kept up: arriving work, as far as it shows
    m.add(pts[2])
    assert m.kind == "serial"
    # under a latency bound a quiet mix is planned by its requests' stretch instead (unchanged)
    lat = PhaseModel(ref=pts[0], mix=True, latency_bound=True)
    for p in pts[1:]:
        lat.add(p)
    assert lat.kind == "arrival"


def test_under_a_time_bound_a_mix_read_within_its_windows_noise_is_planned_cautiously():
    """A training mix's windows hold a few steps and stalls, and which they caught moves their
    progress: h100 gen:mixed:964017's reference and first window (0.82 of the clock) each read
    11-13% off over their parts, and 4% more progress at the lower clock was read as arriving work;
    the mix went on down to 465 MHz, and `batch` ran 8.9% long (docs/decisions/031). Such windows
    do not reject the serial reading: the mix is planned as serial work whose busy time all
    scales with the clock. Windows that agree over their parts tell."""
    ref = Probe(clock_mhz=1824, util=0.43, progress=11.37, power=316.0, progress_sd=0.13)
    noisy = Probe(clock_mhz=1500, util=0.46, progress=11.81, power=243.0, progress_sd=0.11)
    m = PhaseModel(ref=ref, probes=[noisy], mix=True)
    assert m.kind == "serial" and m.cautious
    assert m.slowdown(1200) >= 0.43 * (1824 / 1200 - 1) - 1e-9
    told = PhaseModel(ref=replace(ref, progress_sd=0.01),
                      probes=[replace(noisy, progress=11.40, progress_sd=0.01)], mix=True)
    assert told.kind == "arrival" and not told.cautious
    assert told.slowdown(1500) == pytest.approx(0.0, abs=1e-9)
    # a window with more progress than its reference beyond their noise: the load moved, which
    # the arrival reading would take for headroom (a100 gen:training:595284, 78% more at 0.82)
    before = Probe(clock_mhz=1391, util=0.36, progress=11.84, power=200.0, progress_sd=0.03)
    risen = Probe(clock_mhz=1140, util=0.74, progress=21.11, power=257.0, progress_sd=0.03)
    moved = PhaseModel(ref=before, probes=[risen], mix=True)
    assert moved.kind == "serial" and moved.cautious
    assert PhaseModel(ref=before, probes=[risen], mix=True, latency_bound=True).kind == "arrival"
    # windows without a noise estimate (a held window's plain mean) are no evidence either way
    plain = PhaseModel(ref=replace(ref, progress_sd=0.0), probes=[replace(noisy, progress_sd=0.0)], mix=True)
    assert plain.kind == "arrival" and not plain.cautious
    # under a latency bound a quiet mix is planned by its requests' stretch, as before
    lat = PhaseModel(ref=ref, probes=[noisy], mix=True, latency_bound=True)
    assert lat.kind == "arrival" and not lat.cautious


def test_a_mix_s_requests_stretch_is_at_least_what_its_busy_readings_show():
    """Two windows of a training mix under a latency bound (h100 gen:training:902087): their means
    read the same kernel time per unit of work at 1515 MHz as at 1658, and the mix was held at 1515
    as if its work did not slow, 3.6% long against 3%. Its steps' readings showed their kernels 9%
    slower there, which now bounds the clock; without busy readings the fit's stretch stands."""
    ref = Probe(clock_mhz=1658, util=0.69, progress=20.44, power=535.0, progress_sd=0.13, busy_kernel=0.92 / 28.0)
    probe = Probe(clock_mhz=1515, util=0.86, progress=25.58, power=544.0, progress_sd=0.09, busy_kernel=0.93 / 26.0)
    m = PhaseModel(ref=ref, probes=[probe], mix=True, latency_bound=True)
    assert m.kind == "arrival"
    assert m.stretch(1515) == pytest.approx((0.93 / 26.0) / (0.92 / 28.0) - 1.0, rel=1e-6)
    assert m.stretch(1515) <= 1658 / 1515 - 1.0
    blind = PhaseModel(ref=replace(ref, busy_kernel=0.0), probes=[replace(probe, busy_kernel=0.0)], mix=True,
                       latency_bound=True)
    assert blind.stretch(1515) < 0.01
    # busy readings that show the kernels faster at the lower clock (noise) add nothing
    faster = PhaseModel(ref=ref, probes=[replace(probe, busy_kernel=0.03)], mix=True, latency_bound=True)
    assert faster.stretch(1515) == pytest.approx(blind.stretch(1515))
    # under a time bound the plan is end time's, which the busy readings do not move
    timed = PhaseModel(ref=ref, probes=[probe], mix=True)
    timed_blind = PhaseModel(ref=replace(ref, busy_kernel=0.0), probes=[replace(probe, busy_kernel=0.0)], mix=True)
    assert timed.stretch(1515) == pytest.approx(timed_blind.stretch(1515))


def test_a_mix_whose_kernels_read_faster_at_a_lower_clock_is_no_plan_under_a_latency_bound():
    """A busy mix's windows at 1155 and 1035 MHz read less busy time per unit of work than its
    reference at 1262, which the same work never does at a lower clock: they caught other work (the
    job's load rose). Planned on them, its stretch read 0 everywhere, `max-savings` held it at 1050
    MHz, and the serving segment that came next ran its requests 135% late (a100
    gen:mixed:988819). Under a latency bound such a mix keeps its reference until measured anew."""
    ref = Probe(clock_mhz=1262, util=0.90, progress=32.23, power=300.0, progress_sd=0.11)
    risen = [Probe(clock_mhz=1155, util=0.90, progress=34.85, power=270.0, progress_sd=0.03),
             Probe(clock_mhz=1035, util=0.98, progress=37.0, power=250.0, progress_sd=0.03)]
    m = PhaseModel(ref=ref, probes=risen, mix=True, latency_bound=True, saturated_share=0.75)
    assert m.busy_mix()
    assert m.stretch(1155) >= QUEUED and m.stretch(1262) == 0.0
    # a busy mix's windows whose kernel time grew as the clock fell are planned by it
    slowed = [replace(risen[0], progress=29.0), replace(risen[1], util=0.95, progress=26.0)]
    assert PhaseModel(ref=ref, probes=slowed, mix=True, latency_bound=True, saturated_share=0.75).stretch(1155) < QUEUED
    # a quieter mix's windows scatter so by their prefills and decode alone: its fit stands
    quiet = PhaseModel(ref=ref, probes=risen, mix=True, latency_bound=True, saturated_share=0.1)
    assert not quiet.busy_mix() and quiet.stretch(1155) < QUEUED
