from governor.settings import DEFAULT_SETPOINT, Limits, Setpoint
from governor.telemetry import reason_names


def limits():
    return Limits(sm_clocks_mhz=(1410, 210, 225, 240), mem_clock_mhz=1593, power_limit_min_w=100,
                  power_limit_max_w=400, power_limit_default_w=400, temp_slowdown_c=88, temp_shutdown_c=92)


def test_limits_sorts_clocks_and_snaps_to_nearest_supported():
    lim = limits()
    assert lim.sm_clocks_mhz == (210, 225, 240, 1410)
    assert lim.snap_clock(100) == 210
    assert lim.snap_clock(231) == 225
    assert lim.snap_clock(233) == 240
    assert lim.snap_clock(232.5) == 225  # ties go to the lower, safer clock
    assert lim.snap_clock(5000) == 1410


def test_default_setpoint_is_default_and_locks_nothing():
    assert DEFAULT_SETPOINT.is_default and not DEFAULT_SETPOINT.locks_clocks
    assert Setpoint(sm_clock_max_mhz=1000).locks_clocks
    assert not Setpoint(power_limit_w=300).is_default


def test_reason_names_uses_new_mask_values():
    assert reason_names(0x4 | 0x20) == ["power-cap", "sw-thermal"]
    assert reason_names(0) == []
