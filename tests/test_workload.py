"""The fluid replay must follow trace-format.md's formulas exactly."""

import pytest

from governor.sim.workload import Workload


def run(wl, f, dt=0.01, limit=10_000):
    t, busy = 0.0, 0.0
    while not wl.done and t < limit:
        a = wl.advance(dt, f)
        busy += a.util * dt
        t += dt
    return t, busy


def test_serial_phase_time_follows_the_formula(make_trace):
    tr = make_trace({"seconds": 10.0, "busy": 0.6, "clock_bound": 0.8, "intensity": 1, "dram": 0.2})
    f_def, f = 1500.0, 1000.0
    t, busy = run(Workload(tr.played(), [f_def]), f)
    kernel = 10 * 0.6 * (0.8 * f_def / f + 0.2)
    assert busy == pytest.approx(kernel, rel=1e-3)
    assert t == pytest.approx(kernel + 10 * 0.4, abs=0.02)


def test_arrival_phase_costs_nothing_until_the_gpu_saturates(make_trace):
    tr = make_trace({"seconds": 10.0, "busy": 0.5, "clock_bound": 1.0, "intensity": 1, "dram": 0.2,
                     "slack": "arrival"})
    t, _ = run(Workload(tr.played(), [1500.0]), 1000.0)  # kernels 1.5x slower: busy 75%, still keeps up
    assert t == pytest.approx(10.0, abs=0.02)
    t, _ = run(Workload(tr.played(), [1500.0]), 500.0)  # 3x slower: 15 s of kernel time for 10 s of arrivals
    assert t == pytest.approx(15.0, abs=0.05)


def test_backlog_carries_into_the_next_phase_first(make_trace):
    tr = make_trace({"seconds": 4.0, "busy": 1.0, "clock_bound": 1.0, "intensity": 1, "dram": 0.2,
                     "slack": "arrival"},
                    {"seconds": 4.0, "busy": 0.25, "clock_bound": 0.0, "intensity": 1, "dram": 0.2,
                     "slack": "arrival"})
    wl = Workload(tr.played(), [1000.0, 1000.0])
    t, busy = run(wl, 500.0)
    # phase 0 needs 8 s of kernel time at half clock: 4 s backlog carried, done within phase 1's 4 s
    # (4 s backlog + 1 s of phase 1 work = 5 s of kernel time > 4 s, so the run ends at 9 s)
    assert t == pytest.approx(9.0, abs=0.05)
    assert busy == pytest.approx(9.0, abs=0.05)
    assert wl.work_done == pytest.approx(wl.total_work)


def test_repeat_plays_the_phase_list_again(make_trace):
    tr = make_trace({"seconds": 1.0, "busy": 1.0, "clock_bound": 1.0, "intensity": 1, "dram": 0}, repeat=3)
    t, _ = run(Workload(tr.played(), [1000.0] * 3), 1000.0)
    assert t == pytest.approx(3.0, abs=0.02)


def test_a_roofline_phase_keeps_its_time_above_the_knee_and_follows_the_clock_below(make_trace):
    tr = make_trace({"seconds": 10.0, "busy": 1.0, "clock_bound": 0.0, "intensity": 0.1, "dram": 0.9,
                     "knee_mhz": 1500})
    f_def = 1980.0
    t_def, _ = run(Workload(tr.played(), [f_def]), f_def)
    t_above, _ = run(Workload(tr.played(), [f_def]), 1600.0)
    t_below, _ = run(Workload(tr.played(), [f_def]), 1000.0)
    assert t_above == pytest.approx(t_def, abs=0.02)
    assert t_below == pytest.approx(t_def * 1.5, abs=0.02)
