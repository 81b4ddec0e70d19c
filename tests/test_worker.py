"""Closed-loop tests of one GPU's control loop on the simulator, faults included."""

import json

from governor.config import default_config
from governor.lab.simulate import DEFAULT_POLICY
from governor.sim.device import SimFaults
from governor.worker import GpuWorker


def run(worker, clock, seconds):
    t = clock.now()
    end = t + seconds
    while t < end:
        worker.tick()
        t += worker.period_s
        clock.sleep_until(t)


def driver_state(sim):
    return json.loads(sim.driver.path.read_text())


def test_static_policy_applies_saves_originals_and_hands_back(sim, clock, originals, config, static_policy):
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200, power_limit_w=500.0), config, originals, clock)
    run(w, clock, 2)
    assert driver_state(sim)["locked_clocks_mhz"] == [345, 1200]
    assert driver_state(sim)["power_limit_w"] == 500
    saved = json.loads(originals.path.read_text())["gpus"][sim.info.uuid]["settings"]
    assert saved == {"clocks_known": True, "locked_clocks_mhz": None, "power_limit_w": 700.0}
    assert sim.sample().sm_clock_mhz <= 1200
    assert w.stats.writes == 1 and w.state == "managed"
    w.hand_back()
    assert driver_state(sim)["locked_clocks_mhz"] is None and driver_state(sim)["power_limit_w"] == 700
    assert not originals.path.exists()


def test_originals_are_what_the_gpu_had_not_the_defaults(sim, clock, originals, config, static_policy):
    sim.set_locked_clocks(345, 1755)  # an admin's lock from before govd
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200), config, originals, clock)
    run(w, clock, 1)
    w.hand_back()
    assert driver_state(sim)["locked_clocks_mhz"] == [345, 1755]


def test_dry_run_decides_but_never_writes(sim, clock, originals, config, static_policy):
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200), config, originals, clock, dry_run=True)
    run(w, clock, 3)
    assert driver_state(sim)["locked_clocks_mhz"] is None
    assert not originals.path.exists()
    assert w.decisions and w.decisions[0]["dry_run"] and w.state == "dry-run"
    assert w.target.sm_clock_max_mhz == 1200


def test_default_policy_never_touches_the_gpu(sim, clock, originals, config):
    w = GpuWorker(sim, DEFAULT_POLICY, config, originals, clock)
    run(w, clock, 5)
    assert w.stats.writes == 0 and not originals.path.exists()


def test_errors_on_set_spend_the_budget_then_the_gpu_is_handed_back_and_degraded(sim, clock, originals, static_policy):
    config = default_config()
    config.values["envelope"]["min_write_interval_ms"] = 0
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200, power_limit_w=500.0), config, originals, clock)
    run(w, clock, 0.3)
    assert driver_state(sim)["locked_clocks_mhz"] == [345, 1200]
    sim.faults = SimFaults(fail_sets=10)  # two knobs a tick: five failing ticks, then the restore succeeds
    w.actuator.applied = None  # force rewrites, as after a lost write
    run(w, clock, 3)
    assert w.state == "degraded" and "error budget" in w.reason
    assert driver_state(sim)["locked_clocks_mhz"] is None and driver_state(sim)["power_limit_w"] == 700
    writes = w.stats.writes
    run(w, clock, 2)
    assert w.stats.writes == writes  # degraded: no more writes


def test_lost_gpu_is_degraded_without_crashing_and_stays_listed_for_restore(sim, clock, originals, config,
                                                                         static_policy):
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200), config, originals, clock)
    run(w, clock, 1)
    sim.faults = SimFaults(lost_at_s=clock.now() + 0.5)
    run(w, clock, 2)
    assert w.state == "degraded" and "fallen off the bus" in w.reason
    assert sim.info.uuid in json.loads(originals.path.read_text())["gpus"]


def test_driver_reload_keeps_energy_monotonic_and_reapplies(sim, clock, originals, config, static_policy):
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200), config, originals, clock)
    run(w, clock, 5)
    energy_before = w.ledger.meter.joules
    sim.faults = SimFaults(driver_reload_at_s=clock.now() + 1.0)
    run(w, clock, 5)
    assert w.ledger.meter.joules > energy_before + 5 * 300  # kept counting across the counter reset
    assert w.state == "managed"
    assert driver_state(sim)["locked_clocks_mhz"] == [345, 1200]  # re-applied after the reload


def test_another_program_writing_makes_govd_back_off_and_leave_its_settings(sim, clock, originals, config,
                                                                           static_policy):
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200), config, originals, clock)
    run(w, clock, 2)
    state = driver_state(sim)
    state["locked_clocks_mhz"] = [1410, 1410]  # as `nvidia-smi -lgc 1410` would
    sim.driver.write(state)
    run(w, clock, 2)
    assert w.state == "backed-off" and "another program" in w.reason
    assert driver_state(sim)["locked_clocks_mhz"] == [1410, 1410]
    w.hand_back()
    assert driver_state(sim)["locked_clocks_mhz"] == [1410, 1410]  # not clobbered on exit


def test_originals_saved_at_start_but_never_written_are_not_written_back(sim, clock, originals, config):
    """The daemon saves every managed GPU's originals at start-up; a GPU govd then never wrote to
    is not written at hand-back, and another program's change before govd's first write is its own."""
    originals.save_all([sim])
    w = GpuWorker(sim, DEFAULT_POLICY, config, originals, clock)
    run(w, clock, 2)
    assert w.stats.writes == 0 and w.state == "managed"
    state = driver_state(sim)
    state["power_limit_w"] = 450.0  # as `nvidia-smi -pl 450` would, before govd ever wrote
    sim.driver.write(state)
    run(w, clock, 1)
    assert w.state == "backed-off" and "power limit 450 W (expected 700 W)" in w.reason
    assert not originals.path.exists()  # the other program owns the settings: `govd --restore` leaves them
    w.hand_back()
    assert driver_state(sim)["power_limit_w"] == 450.0


def test_a_gpu_saved_at_start_and_never_written_is_forgotten_at_hand_back(sim, clock, originals, config):
    originals.save_all([sim])
    w = GpuWorker(sim, DEFAULT_POLICY, config, originals, clock)
    run(w, clock, 2)
    before = sim.driver.path.stat().st_mtime_ns
    assert w.hand_back() is None
    assert sim.driver.path.stat().st_mtime_ns == before and not originals.path.exists()


def test_a_driver_reload_before_the_first_write_is_not_taken_for_another_program(sim, clock, originals, config):
    sim.set_locked_clocks(345, 1755)  # an admin's lock from before govd, which the reload clears
    originals.save_all([sim])
    w = GpuWorker(sim, DEFAULT_POLICY, config, originals, clock)
    run(w, clock, 1)
    sim.faults = SimFaults(driver_reload_at_s=clock.now() + 0.5)
    run(w, clock, 2)
    assert w.state == "managed" and driver_state(sim)["locked_clocks_mhz"] is None
    assert originals.saved(sim.info.uuid) is None  # saved again at govd's first write, as the driver left it


def test_backoff_ends_and_govd_takes_the_gpu_again(sim, clock, originals, static_policy):
    config = default_config()
    config.values["envelope"]["external_backoff_s"] = 5.0
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200), config, originals, clock)
    run(w, clock, 1)
    sim.faults = SimFaults(external_lock_at_s=clock.now() + 0.5, external_lock_mhz=(1410, 1410))
    run(w, clock, 2)
    assert w.state == "backed-off"
    run(w, clock, 6)
    assert w.state == "managed" and driver_state(sim)["locked_clocks_mhz"] == [345, 1200]
    w.hand_back()
    assert driver_state(sim)["locked_clocks_mhz"] == [1410, 1410]  # the other program's setting is the original now


def test_readback_mismatch_counts_as_an_error(sim, clock, originals, config, static_policy):
    class Stubborn(type(sim)):
        def set_power_limit_w(self, watts):  # the call succeeds but the GPU keeps its limit
            pass

    stubborn = Stubborn(sim.spec, 1, clock, sim.state_dir, trace=None)
    w = GpuWorker(stubborn, static_policy(power_limit_w=400.0), config, originals, clock)
    run(w, clock, 1)
    assert w.stats.errors >= 1 and "read-back mismatch" in w.envelope.last_error


def test_pause_hands_back_and_resume_takes_over(sim, clock, originals, config, static_policy):
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200), config, originals, clock)
    run(w, clock, 1)
    w.pause()
    assert w.state == "paused" and driver_state(sim)["locked_clocks_mhz"] is None
    run(w, clock, 1)
    assert driver_state(sim)["locked_clocks_mhz"] is None
    w.resume()
    run(w, clock, 1)
    assert driver_state(sim)["locked_clocks_mhz"] == [345, 1200]


def test_thermal_guard_in_a_hot_room_keeps_the_gpu_below_slowdown(tmp_path, clock, originals, config, static_policy):
    from governor.sim.device import SimDevice
    from governor.sim.spec import load_spec
    from governor.sim.trace import load_trace

    dev = SimDevice(load_spec("h100-sxm"), 0, clock, tmp_path / "hot", trace=load_trace("hot-room"))
    w = GpuWorker(dev, static_policy(sm_clock_min_mhz=1980, sm_clock_max_mhz=1980), config, originals, clock)
    run(w, clock, 200)
    assert w.envelope.guard_engaged or w.stats.writes > 1
    assert dev.gpu.max_temp_c < load_spec("h100-sxm").temp_slowdown_c + 1.0


def test_switching_policy_at_run_time_is_bumpless(tmp_path, clock, originals, config, static_policy):
    from governor.policy import Policy
    from governor.sim.device import SimDevice
    from governor.sim.spec import load_spec
    from governor.sim.trace import load_trace

    dev = SimDevice(load_spec("h100-sxm"), 0, clock, tmp_path / "d", trace=load_trace("decode"))
    w = GpuWorker(dev, static_policy(sm_clock_max_mhz=1200), config, originals, clock)
    run(w, clock, 2)
    w.set_policy(Policy(name="pid", controller="pid", params={"mode": "util", "target": 90.0}, source="t"))
    w.tick()
    # the PID starts from the 1200 MHz ceiling govd held, not from the firmware's maximum
    assert abs(w.target.sm_clock_max_mhz - 1200) <= 30


def test_a_controller_needing_app_progress_is_refused_in_the_daemon(sim, clock, originals, config):
    import pytest

    from governor.errors import ConfigError
    from governor.policy import Policy

    with pytest.raises(ConfigError, match="needs what only the application knows"):
        GpuWorker(sim, Policy(name="z", controller="zeus-pl", source="t"), config, originals, clock)


def test_an_operators_lower_power_limit_is_a_ceiling_govd_keeps(sim, clock, originals, config, static_policy):
    """A GPU capped at 550 W before govd started must not run at 700 W while govd manages it."""
    sim.set_power_limit_w(550)
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200, power_limit_w=650.0), config, originals, clock)
    run(w, clock, 2)
    assert driver_state(sim)["power_limit_w"] == 550 and driver_state(sim)["locked_clocks_mhz"] == [345, 1200]
    assert w.status()["envelope"]["ceiling"] == {"power_limit_w": 550.0, "locked_clocks_mhz": None}
    w.hand_back()
    assert driver_state(sim)["power_limit_w"] == 550 and driver_state(sim)["locked_clocks_mhz"] is None


def test_the_default_policy_on_a_capped_gpu_writes_nothing(sim, clock, originals, config):
    sim.set_power_limit_w(550)
    sim.set_locked_clocks(1000, 1500)
    w = GpuWorker(sim, DEFAULT_POLICY, config, originals, clock)
    run(w, clock, 3)
    assert w.stats.writes == 0
    assert driver_state(sim)["power_limit_w"] == 550 and driver_state(sim)["locked_clocks_mhz"] == [1000, 1500]


def test_an_operators_clock_lock_caps_the_clock_govd_locks(sim, clock, originals, config, static_policy):
    sim.set_locked_clocks(1000, 1500)
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1800), config, originals, clock)
    run(w, clock, 2)
    lo, hi = driver_state(sim)["locked_clocks_mhz"]
    assert hi <= 1500 and lo <= hi
    w.hand_back()
    assert driver_state(sim)["locked_clocks_mhz"] == [1000, 1500]


def test_respect_existing_limits_false_lets_govd_raise_them(sim, clock, originals, static_policy):
    config = default_config()
    config.values["envelope"]["respect_existing_limits"] = False
    sim.set_power_limit_w(550)
    w = GpuWorker(sim, static_policy(power_limit_w=650.0), config, originals, clock)
    run(w, clock, 2)
    assert driver_state(sim)["power_limit_w"] == 650
    assert w.status()["envelope"]["ceiling_kept"] is False
    w.hand_back()
    assert driver_state(sim)["power_limit_w"] == 550


def another_program_writes(sim, **changes):
    state = driver_state(sim)
    state.update(changes)
    sim.driver.write(state)  # as nvidia-smi would: behind govd's back


def test_another_programs_power_limit_leaves_govds_lock_given_back(sim, clock, originals, static_policy):
    """Another program changed only the power limit of a GPU govd held locked: govd gives back its
    lock (the other program did not touch it), leaves the other program's power limit, and after
    the back-off takes the GPU again from that, so a stop leaves the GPU unlocked."""
    config = default_config()
    config.values["envelope"]["external_backoff_s"] = 2.0
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200, power_limit_w=500.0), config, originals, clock)
    run(w, clock, 2)
    assert driver_state(sim)["locked_clocks_mhz"] == [345, 1200]
    another_program_writes(sim, power_limit_w=600.0)
    run(w, clock, 0.5)
    assert w.state == "backed-off"
    assert driver_state(sim)["locked_clocks_mhz"] is None  # govd's lock given back
    assert driver_state(sim)["power_limit_w"] == 600  # the other program's left alone
    assert originals.saved(sim.info.uuid) is None  # nothing of govd's left: a --restore would change nothing
    run(w, clock, 3)
    assert w.state == "managed" and driver_state(sim)["locked_clocks_mhz"] == [345, 1200]
    w.hand_back()
    assert driver_state(sim)["locked_clocks_mhz"] is None and driver_state(sim)["power_limit_w"] == 600


def test_another_programs_lock_leaves_govds_power_limit_given_back(sim, clock, originals, config, static_policy):
    sim.set_power_limit_w(550)  # the operator's, from before govd
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200, power_limit_w=450.0), config, originals, clock)
    run(w, clock, 2)
    assert driver_state(sim)["power_limit_w"] == 450
    another_program_writes(sim, locked_clocks_mhz=[345, 900])
    run(w, clock, 0.5)
    assert w.state == "backed-off"
    assert driver_state(sim)["power_limit_w"] == 550  # the operator's limit is back, not lost
    assert driver_state(sim)["locked_clocks_mhz"] == [345, 900]


def test_a_failed_give_back_on_backoff_keeps_originals_but_not_the_other_programs_knob(sim, clock, originals,
                                                                                       config, static_policy):
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200, power_limit_w=500.0), config, originals, clock)
    run(w, clock, 2)
    sim.faults = SimFaults(fail_sets=10)
    another_program_writes(sim, power_limit_w=600.0)
    run(w, clock, 0.5)
    assert w.state == "backed-off"
    saved = originals.saved(sim.info.uuid)
    assert saved.power_limit_w == 600 and saved.locked_clocks_mhz is None
    sim.faults = SimFaults()
    w.hand_back()
    assert driver_state(sim)["locked_clocks_mhz"] is None and driver_state(sim)["power_limit_w"] == 600


def test_a_job_s_start_and_end_have_the_model_controller_measure_the_work_anew(tmp_path, clock, originals, config):
    # a new job on a GPU is new work: held at the clock the job before it was planned at, a quiet
    # mix's deep window met a training job's steps (h100 gen:mixed:480411, docs/decisions/027)
    from governor.policy import load_policy
    from governor.sim.device import SimDevice
    from governor.sim.spec import load_spec
    from governor.sim.trace import load_trace

    dev = SimDevice(load_spec("h100-sxm"), 0, clock, tmp_path / "d", trace=load_trace("decode"))
    w = GpuWorker(dev, load_policy("balanced"), config, originals, clock)
    run(w, clock, 30)
    c = w.controller
    assert c.state == "hold" and w.target.sm_clock_max_mhz is not None  # decode held below default
    models, extra = list(c.models), c.extra
    w.start_job("job-1", None)
    assert w.controller is c  # the same policy: the same controller, what it learned kept
    assert c.state == "reference" and c.setpoint.sm_clock_max_mhz is None
    assert c.models == models and c.extra == extra  # learned models and the budget spent stay
    w.tick()
    assert w.target is None or w.target.sm_clock_max_mhz is None  # default settings while it measures
    run(w, clock, 30)
    assert c.state == "hold"  # the same work again: known, held
    w.end_job(load_policy("balanced"))
    assert c.state == "reference"


def test_a_job_s_start_tells_a_controller_without_a_model_nothing_it_must_act_on(sim, clock, originals, config,
                                                                               static_policy):
    w = GpuWorker(sim, static_policy(sm_clock_max_mhz=1200), config, originals, clock)
    run(w, clock, 2)
    w.start_job("job-2", None)
    w.tick()
    assert abs(w.target.sm_clock_max_mhz - 1200) <= 30  # a static policy holds its clock through a job
