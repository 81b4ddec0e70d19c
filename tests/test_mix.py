"""Means of a mix of phases over whole cycles (governor/controllers/mix.py)."""

import numpy as np
import pytest

from governor.controllers.mix import whole_cycles_mean

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
