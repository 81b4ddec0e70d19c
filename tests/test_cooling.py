"""The GPU's cooling, learned from its own readings (governor/cooling.py)."""

import pytest

from governor.cooling import CoolingModel


def warm_up(model, r=0.065, c=600.0, inlet=45.0, seconds=400.0, dt=0.2, power=lambda t: 650.0, start=None,
            t0=0.0):
    """A first-order GPU: C dT/dt = P - (T - inlet)/R, read as NVML does (whole degrees)."""
    temp = inlet + 70.0 * r if start is None else start
    t = 0.0
    while t < seconds:
        p = power(t)
        temp += dt * (p - (temp - inlet) / r) / c
        t += dt
        model.observe(t0 + t, float(round(temp)), p * dt)
    return temp


def idle_then_busy(t):
    return 70.0 if t < 60.0 else 650.0


def test_the_fit_recovers_the_thermal_resistance_and_the_inlet_from_a_warm_up():
    m = CoolingModel()
    warm_up(m, power=idle_then_busy)
    r, inlet = m.fit
    assert r == pytest.approx(0.065, rel=0.05)
    assert inlet == pytest.approx(45.0, abs=1.5)
    assert m.steady_power_w(85.0) == pytest.approx((85.0 - 45.0) / 0.065, rel=0.04)


def test_no_fit_is_trusted_before_the_gpu_has_moved_enough():
    m = CoolingModel()
    warm_up(m, seconds=400.0, power=lambda t: 100.0, start=45.0 + 100.0 * 0.065)  # idle and steady
    assert m.fit is None and m.steady_power_w(85.0) is None


def test_the_fit_follows_a_change_of_cooling():
    m = CoolingModel(half_life_s=120.0)
    temp = warm_up(m, r=0.065, power=idle_then_busy)
    # a fan slows: the same power now runs hotter; old intervals fade
    warm_up(m, r=0.09, seconds=1500.0, start=temp, power=lambda t: 650.0 if (t // 60) % 2 else 300.0, t0=400.0)
    assert m.fit[0] == pytest.approx(0.09, rel=0.1)


def test_advance_follows_the_learned_cooling_toward_its_steady_temperature():
    m = CoolingModel()
    assert m.advance(60.0, 500.0, 1.0) is None  # nothing learned yet
    warm_up(m, power=idle_then_busy)
    temp = 60.0
    for _ in range(3000):  # 300 s at 500 W: about eight time constants
        temp = m.advance(temp, 500.0, 0.1)
    assert temp == pytest.approx(45.0 + 500.0 * 0.065, abs=1.5)
