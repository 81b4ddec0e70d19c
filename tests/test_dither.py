"""Alternating two neighbouring clock steps (governor/controllers/dither.py)."""

from governor.controllers.dither import Dither


def test_the_lower_clock_closes_each_cycle_for_its_share():
    d = Dither(period_s=60.0)
    d.set(0.0, (1635.0, 0.25))
    held = [d.clock(t * 0.5, 1650.0) for t in range(240)]  # two minutes
    assert held[:90] == [1650.0] * 90  # 45 s at the planned clock first
    assert held[90:120] == [1635.0] * 30  # then the last 15 s of the cycle lower
    assert held.count(1635.0) == 60


def test_a_new_share_waits_for_the_next_cycle_and_a_new_pair_restarts_it():
    d = Dither(period_s=60.0)
    d.set(0.0, (1635.0, 0.25))
    d.set(50.0, (1635.0, 0.5))  # a larger share mid-cycle: the switch point does not move now
    assert d.clock(40.0, 1650.0) == 1650.0 and d.share == 0.25
    d.set(61.0, (1635.0, 0.5))  # next cycle: taken
    assert d.share == 0.5 and d.start == 60.0 and d.clock(95.0, 1650.0) == 1635.0
    d.set(70.0, (1620.0, 0.3))  # another pair: a cycle of its own from now
    assert d.start == 70.0 and d.clock(71.0, 1635.0) == 1635.0
    d.set(80.0, None)
    assert d.clock(125.0, 1635.0) == 1635.0
