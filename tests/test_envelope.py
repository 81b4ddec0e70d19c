from dataclasses import replace

import pytest

from governor.config import default_config
from governor.envelope import Envelope
from governor.settings import Capabilities, Limits, Setpoint
from governor.telemetry import Sample

LIM = Limits(sm_clocks_mhz=tuple(range(345, 1981, 15)), mem_clock_mhz=2619, power_limit_min_w=200,
             power_limit_max_w=700, power_limit_default_w=700, temp_slowdown_c=87, temp_shutdown_c=92)


def env(bounds=None, **cfg):
    return Envelope(LIM, replace(default_config().section("envelope"), **cfg), bounds or {})


def sample(temp=60.0, clock=1500.0):
    return Sample(time_s=0, gpu_util_pct=90, mem_util_pct=30, power_w=500, temp_c=temp, sm_clock_mhz=clock,
                  mem_clock_mhz=2619, power_limit_w=700)


def test_clamp_snaps_clocks_to_supported_on_the_safe_side_and_power_into_range():
    e = env()
    sp = e.clamp(Setpoint(sm_clock_min_mhz=350, sm_clock_max_mhz=1209, power_limit_w=5000))
    assert (sp.sm_clock_min_mhz, sp.sm_clock_max_mhz) == (360, 1200)
    assert sp.power_limit_w is None  # 5000 W clamps to the 700 W default: no explicit limit
    assert e.clamp(Setpoint(power_limit_w=10)).power_limit_w == 200
    assert e.clamp(Setpoint(sm_clock_min_mhz=1500, sm_clock_max_mhz=1005)).sm_clock_min_mhz == 1005


def test_policy_bounds_always_win_even_over_a_default_setpoint():
    e = env({"sm_clock_max_mhz": 1400, "power_limit_max_w": 450})
    sp = e.clamp(Setpoint())
    assert sp.sm_clock_max_mhz == 1395 and sp.power_limit_w == 450


def test_full_range_lock_is_no_lock():
    assert env().clamp(Setpoint(sm_clock_min_mhz=345, sm_clock_max_mhz=1980)).is_default


def test_missing_knobs_are_stripped():
    lim = Limits(sm_clocks_mhz=LIM.sm_clocks_mhz, mem_clock_mhz=2619, power_limit_min_w=200, power_limit_max_w=700,
                 power_limit_default_w=700, temp_slowdown_c=87, temp_shutdown_c=92,
                 capabilities=Capabilities(can_lock_clocks=False, is_mig=True))
    e = Envelope(lim, default_config().section("envelope"), {})
    assert e.clamp(Setpoint(sm_clock_max_mhz=1000, power_limit_w=300)) == Setpoint(power_limit_w=300)


def test_thermal_guard_overrides_the_controller_with_hysteresis():
    e = env(thermal_margin_c=5.0, thermal_hysteresis_c=3.0, thermal_step_mhz_per_s=450.0)
    d = e.check(sample(temp=83, clock=1800), Setpoint(), None, 0.0)  # engage at 87 - 5 = 82
    assert d.write and d.safety and d.setpoint.sm_clock_max_mhz == 1800
    d2 = e.check(sample(temp=84, clock=1800), Setpoint(sm_clock_max_mhz=1980), d.setpoint, 0.2)
    assert d2.setpoint.sm_clock_max_mhz == 1710  # steps down while hot, even against the controller
    d3 = e.check(sample(temp=80, clock=1710), Setpoint(), d2.setpoint, 0.4)
    assert e.guard_engaged and d3.setpoint.sm_clock_max_mhz == 1710  # within hysteresis: holds
    # cooled below the release point: the ceiling rises slowly (30 MHz/s), and lets go at the top
    d4 = e.check(sample(temp=78, clock=1710), Setpoint(), d3.setpoint, 1.4)
    assert e.guard_engaged and d4.setpoint.sm_clock_max_mhz == 1740
    t, d5 = 1.4, d4
    while e.guard_engaged and t < 20:
        t += 0.2
        d5 = e.check(sample(temp=78, clock=d5.setpoint.sm_clock_max_mhz or 1980), Setpoint(), d5.setpoint, t)
    assert not e.guard_engaged and d5.setpoint.is_default and t == pytest.approx(1.4 + (1980 - 1740) / 30, abs=0.3)


def test_thermal_guard_finds_the_clock_the_cooling_sustains_instead_of_a_sawtooth():
    e = env()
    sp, t, temp, ceilings = None, 0.0, 86.0, []
    for _ in range(3000):  # 10 minutes at 5 Hz of a toy GPU whose temperature follows its clock
        d = e.check(sample(temp=temp, clock=sp.sm_clock_max_mhz if sp and sp.sm_clock_max_mhz else 1980),
                    Setpoint(), sp, t)
        sp = d.setpoint
        clock = sp.sm_clock_max_mhz or 1980
        temp += 0.2 * ((40.0 + 0.025 * clock) - temp) / 20.0  # steady 85 C at 1800 MHz, 20 s time constant
        ceilings.append(clock)
        t += 0.2
    late = ceilings[-1500:]
    assert max(late) - min(late) <= 120  # settles near the sustainable clock, no swings back to the top
    assert 1650 <= sum(late) / len(late) <= 1800


def test_rate_limit_holds_changes_but_not_safety():
    e = env(min_write_interval_ms=1000, max_writes_per_minute=3)
    cur = Setpoint(sm_clock_max_mhz=1500)
    e.record_write(0.0)
    d = e.check(sample(), Setpoint(sm_clock_max_mhz=1200), cur, 0.5)
    assert not d.write and d.setpoint == cur and "rate limited" in d.notes
    assert e.check(sample(), Setpoint(sm_clock_max_mhz=1200), cur, 1.1).write
    e.record_write(1.1)
    e.record_write(2.2)
    assert not e.check(sample(), Setpoint(sm_clock_max_mhz=1000), cur, 3.5).write  # 3 writes this minute
    assert e.check(sample(temp=90), Setpoint(sm_clock_max_mhz=1000), cur, 3.6).write  # hot: safety passes


def test_no_write_for_an_untouched_gpu_asked_for_its_default():
    assert not env().check(sample(), Setpoint(), None, 0).write


def test_error_budget():
    e = env(error_budget=3, error_window_s=10)
    assert not e.record_error(0, "a")
    assert not e.record_error(1, "b")
    assert not e.record_error(20, "c")  # the first two fell out of the window
    assert not e.record_error(21, "d")
    assert e.record_error(22, "e")


def test_a_new_knob_is_one_more_entry_applied_read_back_and_restored(monkeypatch):
    """Apply, read-back and restore are loops over KNOBS: a memory-clock lock would be one entry."""
    from governor import actuation, knobs
    from governor.settings import DeviceSettings, Limits, Setpoint

    held = {"mem": None}
    mem = knobs.Knob(name="mem_lock", supported=lambda caps: True, desired=lambda sp, lim: 1593,
                     saved=lambda settings: None, read=lambda dev: held["mem"], observed=lambda s, dev: held["mem"],
                     write=lambda dev, v: held.__setitem__("mem", v), matches=lambda a, b: a == b,
                     action=lambda v: f"memory lock {v}", label="memory clock lock")
    monkeypatch.setattr(actuation, "KNOBS", (*knobs.KNOBS, mem))

    class Dev:
        lock, watts = None, 700.0

        def set_locked_clocks(self, lo, hi): self.lock = (lo, hi)  # noqa: E704
        def reset_locked_clocks(self): self.lock = None  # noqa: E704
        def set_power_limit_w(self, w): self.watts = w  # noqa: E704
        def get_locked_clocks(self): return self.lock  # noqa: E704
        def get_power_limit_w(self): return self.watts  # noqa: E704

    limits = Limits(sm_clocks_mhz=(345, 1200, 1980), mem_clock_mhz=2619, power_limit_min_w=200,
                    power_limit_max_w=700, power_limit_default_w=700, temp_slowdown_c=87, temp_shutdown_c=92)
    dev = Dev()
    results = actuation.apply_setpoint(dev, limits, Setpoint(sm_clock_max_mhz=1200), None)
    assert [r.knob for r in results] == ["clocks", "power_limit", "mem_lock"] and held["mem"] == 1593
    assert actuation.read_back(dev, limits, Setpoint(sm_clock_max_mhz=1200)) == []
    restored = actuation.restore_settings(dev, DeviceSettings(power_limit_w=700.0), limits)
    assert [r.knob for r in restored] == ["mem_lock", "power_limit", "clocks"] and held["mem"] is None
