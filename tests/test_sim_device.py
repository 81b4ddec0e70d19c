import json

import pytest

from governor.errors import DeviceError, GpuLostError
from governor.sim.device import SimDevice, SimDriverOnly, SimFaults
from governor.sim.spec import load_spec


def test_settings_live_in_the_driver_state_file_and_outlive_the_device(tmp_path, clock, gemm_phase, make_trace):
    dev = SimDevice(load_spec("h100-sxm"), 0, clock, tmp_path, trace=make_trace(gemm_phase))
    dev.set_locked_clocks(345, 1200)
    dev.set_power_limit_w(500)
    state = json.loads((tmp_path / "gpu0.json").read_text())
    assert state["locked_clocks_mhz"] == [345, 1200] and state["power_limit_w"] == 500
    again = SimDevice(load_spec("h100-sxm"), 0, clock, tmp_path, trace=make_trace(gemm_phase))
    assert again.get_locked_clocks() == (345, 1200) and again.get_power_limit_w() == 500
    offline = SimDriverOnly(dev.restore_handle())
    offline.reset_locked_clocks()
    offline.set_power_limit_w(700)
    assert dev.get_locked_clocks() is None and dev.get_power_limit_w() == 700


def test_locked_clock_settles_after_about_25_ms(sim, clock):
    clock.sleep_until(5.0)
    assert sim.sample().sm_clock_mhz > 1200
    sim.set_locked_clocks(345, 1200)
    clock.sleep_until(5.0 + 0.1)
    assert sim.sample().sm_clock_mhz == 1200


def test_an_inverted_lock_or_a_power_out_of_range_is_refused_online_and_offline(sim):
    offline = SimDriverOnly(sim.restore_handle())
    for dev in (sim, offline):
        with pytest.raises(DeviceError, match="invalid"):
            dev.set_locked_clocks(1500, 1000)
        with pytest.raises(DeviceError, match="out of range"):
            dev.set_power_limit_w(900)


def test_an_off_grid_lock_is_accepted_as_nvml_does(sim):
    """`nvidia-smi -lgc 1000,1500` is off the supported grid; the driver takes it (and runs at
    supported clocks within it), so a restore of such an original must succeed online too."""
    sim.set_locked_clocks(1000, 1500)
    assert sim.get_locked_clocks() == (1000, 1500)


def test_energy_counter_steps_every_100_ms_and_matches_power(sim, clock):
    clock.sleep_until(10.025)
    a = sim.sample()
    clock.sleep_until(10.075)
    assert sim.sample().energy_mj == a.energy_mj  # no update within a 100 ms period
    clock.sleep_until(10.125)
    assert sim.sample().energy_mj > a.energy_mj
    clock.sleep_until(20.025)
    c = sim.sample()
    mean_w = (c.energy_mj - a.energy_mj) / 1000 / 10.0
    assert mean_w == pytest.approx(c.power_w, rel=0.05)


def test_sensor_noise_is_seeded(tmp_path, gemm_phase, make_trace):
    from governor.clock import VirtualClock

    def readings(folder):
        clock = VirtualClock()
        dev = SimDevice(load_spec("h100-sxm"), 0, clock, folder, trace=make_trace(gemm_phase))
        out = []
        for i in range(1, 20):
            clock.sleep_until(i * 0.5)
            out.append(dev.sample().power_w)
        return out

    assert readings(tmp_path / "a") == readings(tmp_path / "b")


def test_gpm_only_where_the_gpu_has_it(tmp_path, clock, gemm_phase, make_trace):
    h100 = SimDevice(load_spec("h100-sxm"), 0, clock, tmp_path / "h", trace=make_trace(gemm_phase))
    a100 = SimDevice(load_spec("a100-sxm4"), 0, clock, tmp_path / "a", trace=make_trace(gemm_phase))
    clock.sleep_until(2)
    assert h100.sample().sm_activity_pct is not None
    assert a100.sample().sm_activity_pct is None


def test_faults_fail_sets_then_recover(sim):
    sim.faults = SimFaults(fail_sets=2)
    for _ in range(2):
        with pytest.raises(DeviceError, match="injected"):
            sim.set_power_limit_w(500)
    sim.set_power_limit_w(500)


def test_fault_lost_gpu(sim, clock):
    sim.faults = SimFaults(lost_at_s=3.0)
    clock.sleep_until(2.0)
    sim.sample()
    clock.sleep_until(3.5)
    with pytest.raises(GpuLostError):
        sim.sample()


def test_fault_driver_reload_resets_counter_and_settings(sim, clock):
    sim.set_power_limit_w(400)
    sim.faults = SimFaults(driver_reload_at_s=5.0)
    clock.sleep_until(4.9)
    before = sim.sample().energy_mj
    clock.sleep_until(5.5)
    after = sim.sample()
    assert after.energy_mj < before
    assert sim.get_power_limit_w() == 700


def test_fault_file_is_picked_up_at_run_time(sim, clock, tmp_path):
    (tmp_path / "sim" / "faults-gpu0.json").write_text(json.dumps({"fail_sets": 1}))
    with pytest.raises(DeviceError):
        sim.set_power_limit_w(500)
    (tmp_path / "sim" / "faults-gpu0.json").write_text(json.dumps({"bogus": 1}))
    with pytest.raises(DeviceError, match="unknown fault"):
        sim.sample()
