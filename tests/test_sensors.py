"""NVML-faithful, seeded sensors: the seed changes the readings, never the truth."""

import dataclasses

import numpy as np
import pytest

from governor.lab.simulate import run_trace
from governor.policy import Policy
from governor.sim.gpu import STEP_S, SimGpu
from governor.sim.sensors import memory_busy_share
from governor.sim.spec import load_spec
from governor.sim.trace import load_trace


def test_two_seeds_give_the_same_truth_and_different_readings_and_ledger_estimates():
    spec = load_spec("h100-sxm")
    trace = load_trace("llm-serving")
    # a fixed lock: the same settings at the same moments, so any difference is the sensors'
    lock = Policy(name="lock", controller="static", params={"sm_clock_max_mhz": 1500}, source="test")
    runs = [run_trace(spec, dataclasses.replace(trace, seed=seed), lock) for seed in (1, 2)]
    assert runs[0].energy_j == runs[1].energy_j and runs[0].seconds == runs[1].seconds
    estimates = [(r.ledger_saved_j, r.ledger_saved_lo_j, r.ledger_saved_hi_j) for r in runs]
    assert estimates[0] != estimates[1]  # the ledger reads the sensors, so its estimate moves with them
    readings = []
    for seed in (1, 2):
        gpu = SimGpu(spec, dataclasses.replace(trace, seed=seed))
        for _ in range(400):
            gpu.step(STEP_S)
        readings.append(gpu.read())
    assert readings[0].power_avg_w != readings[1].power_avg_w
    assert readings[0].energy_mj != readings[1].energy_mj


def test_utilization_is_an_integer_of_the_last_completed_period():
    spec = load_spec("h100-sxm")
    gpu = SimGpu(spec, load_trace("llm-serving"))
    period_steps = gpu.sensors.period_steps
    seen = []
    for _ in range(period_steps * 20):
        gpu.step(STEP_S)
        seen.append(gpu.read())
    assert all(isinstance(r.gpu_util_pct, int) and isinstance(r.mem_util_pct, int) for r in seen)
    assert all(isinstance(r.temp_c, int) for r in seen)
    # between period ends a reading does not move, however often it is read
    changes = [i for i in range(1, len(seen)) if seen[i].gpu_util_pct != seen[i - 1].gpu_util_pct]
    assert changes and all((i + 1) % period_steps == 0 for i in changes)


def test_memory_utilization_is_a_time_share_that_saturates():
    assert memory_busy_share(0.0) == 0.0
    assert memory_busy_share(0.45) == pytest.approx(0.5)
    assert memory_busy_share(0.95) == 1.0  # the heaviest decode keeps memory busy all the time


def test_energy_counter_is_unbiased_and_noisy_over_short_windows():
    spec = load_spec("h100-sxm")
    gpu = SimGpu(spec, load_trace("bursty-inference"))
    counter, truth = [], []
    while not gpu.workload.done:
        gpu.step(STEP_S)
        counter.append(gpu.read().energy_mj / 1000.0)
        truth.append(gpu.energy_since_reload_j)
    counter, truth = np.array(counter), np.array(truth)
    assert counter[-1] == pytest.approx(truth[-1], rel=0.01)  # unbiased over the run
    updates = np.flatnonzero(np.diff(counter)) + 1  # the steps at which the counter moved
    measured, true = np.diff(counter[updates]), np.diff(truth[updates])
    errors = measured / np.maximum(true, 1e-9) - 1.0
    assert np.std(errors) > 0.05  # over one update a burst the sampler missed is missing from it


def test_gpm_readings_carry_noise_under_a_steady_load():
    spec = load_spec("h100-sxm")
    gpu = SimGpu(spec, load_trace("gemm"))
    values = set()
    for _ in range(400):
        gpu.step(STEP_S)
        values.add(gpu.read().sm_activity_pct)
    assert len(values) > 10
