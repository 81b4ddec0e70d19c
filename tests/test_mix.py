"""Means of a mix of phases over whole cycles (governor/controllers/mix.py)."""

import numpy as np
import pytest

from governor.controllers.mix import busy_kernel_time, mean_progress_error, whole_cycles_mean

# one cycle of a prefill/decode mix, ticks of 0.2 s: 1 s prefill (high power, low DRAM), 4 s decode
CYCLE_P = [700.0] * 5 + [290.0] * 20
CYCLE_R = [27.0] * 5 + [48.0] * 20


@pytest.mark.parametrize("offset", [0, 3, 7, 12, 20])
def test_a_window_of_two_cycles_gives_the_cycle_mean_wherever_it_starts(offset):
    p = (CYCLE_P * 4)[offset:offset + 55]
    r = (CYCLE_R * 4)[offset:offset + 55]
    m = whole_cycles_mean(np.array(p), np.array(r))
    assert m.ticks % 25 == 0
    assert m.power / m.progress == pytest.approx(np.mean(CYCLE_P) / np.mean(CYCLE_R), rel=1e-9)
    assert m.rel_spread < 1e-9


def test_one_burst_inside_calm_is_not_taken_for_a_period():
    p = np.array([150.0] * 15 + [690.0] * 15 + [150.0] * 17)
    r = np.array([4.0] * 15 + [42.0] * 15 + [4.0] * 17)
    m = whole_cycles_mean(p, r)
    assert m.ticks == len(p)  # the whole window, not a stretch that just holds the burst
    assert m.power == pytest.approx(p.mean()) and m.rel_spread > 0.02


def test_steady_noisy_readings_give_their_mean():
    rng = np.random.default_rng(3)
    p = rng.normal(300, 40, 60)
    r = rng.normal(40, 6, 60)
    m = whole_cycles_mean(p, r)
    assert m.power == pytest.approx(300, abs=3 * 40 / np.sqrt(30))
    assert m.progress == pytest.approx(40, abs=3 * 6 / np.sqrt(30))


def test_a_window_s_progress_error_is_what_its_whole_cycles_show():
    """A pipeline's forward passes repeat exactly: stretches of whole cycles agree, whatever the
    window's phases. A training job's loader delivers one or two steps to a stall: the window's
    parts scatter by that, and so would its mean from one window to the next."""
    regular = np.array(CYCLE_R * 6, dtype=float)
    m = whole_cycles_mean(np.array(CYCLE_P * 6), regular)
    assert m.ticks % 25 == 0
    assert mean_progress_error(regular, m.ticks) < 1e-9
    step, stall = [31.0] * 7, [3.5] * 17  # 1.4 s of step, 3.4 s of stall at 0.2 s a reading
    irregular = np.array(step + stall + step + step + stall)  # 11 s: one step to a stall, then two
    m = whole_cycles_mean(np.full(len(irregular), 300.0) + irregular, irregular)
    assert m.ticks == len(irregular)  # no whole cycles in it
    assert mean_progress_error(irregular, m.ticks) > 0.1
    assert mean_progress_error(np.array([]), 0) == 0.0


def test_a_window_s_busy_readings_measure_its_kernels_whatever_quiet_it_caught():
    """Two windows of a training mix, at 1650 and 1515 MHz: steps at 92-93% busy whose kernels take
    9% longer at the lower clock, and input stalls whose quiet readings carry background traffic
    (3% busy at 0.6% of DRAM bandwidth). The windows' means read the same kernel time per unit of
    work; their busy readings read the steps' 9%."""
    steps_hi, steps_lo = [(0.92, 28.0)] * 60, [(0.93, 26.0)] * 90
    hi = steps_hi + [(0.03, 0.6)] * 40 + [(0.19, 0.9)] * 35
    lo = [(0.19, 0.9)] * 10 + steps_lo
    means = [np.mean([u for u, _ in w]) / np.mean([r for _, r in w]) for w in (hi, lo)]
    assert abs(means[1] / means[0] - 1) < 0.01  # the means barely move
    kernels = [busy_kernel_time(np.array([u for u, _ in w]), np.array([r for _, r in w])) for w in (hi, lo)]
    assert kernels[1] / kernels[0] - 1 == pytest.approx((0.93 / 26) / (0.92 / 28) - 1)
    # a window that was nearly all quiet measures nothing
    assert busy_kernel_time(np.array([0.03] * 50 + [0.9] * 4), np.array([0.6] * 50 + [20.0] * 4)) == 0.0
