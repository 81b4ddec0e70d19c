"""The simulated firmware at default settings: it holds the power limit on its 1 s average, as real
GPU Boost does, and every trace lasts its nominal seconds (trace-format.md defines a phase's seconds
under default settings)."""

import numpy as np
import pytest

from governor.sim.gpu import STEP_S, SimGpu
from governor.sim.spec import load_spec
from governor.sim.trace import builtin_traces, load_trace

GENERATED = [f"gen:{family}:{seed}" for family, seed in
             (("serving", 101), ("bursty", 202), ("training", 303), ("pipeline", 404), ("mixed", 505))]


def default_run(gpu: str, trace: str):
    spec, tr = load_spec(gpu), load_trace(trace)
    sim = SimGpu(spec, tr)
    power = []
    while not sim.workload.done:
        sim.step(STEP_S)
        power.append(sim.power)
    n = int(round(spec.power_avg_window_s / STEP_S))
    windows = np.convolve(np.array(power), np.ones(n) / n, mode="valid")
    return spec, tr, sim, windows


# the built-in suite on three GPUs; generated traces on the one whose limit they press hardest
CASES = [(gpu, trace) for gpu in ("h100-sxm", "a100-sxm4", "h200") for trace in builtin_traces()]
CASES += [("h100-sxm", trace) for trace in GENERATED]


@pytest.mark.parametrize(("gpu", "trace"), CASES)
def test_default_settings_hold_the_limit_on_every_second_and_keep_nominal_time(gpu, trace):
    spec, tr, sim, windows = default_run(gpu, trace)
    assert windows.max() <= spec.power_limit_default_w * 1.01, f"a 1 s average of {windows.max():.0f} W"
    assert sim.end_time_s == pytest.approx(tr.default_seconds, rel=0.01)


def test_a_lower_power_limit_is_held_too():
    spec, tr = load_spec("h100-sxm"), load_trace("training")
    sim = SimGpu(spec, tr)
    sim.set_power_limit(400.0)
    power = []
    while not sim.workload.done:
        sim.step(STEP_S)
        power.append(sim.power)
    windows = np.convolve(np.array(power), np.ones(40) / 40, mode="valid")
    assert windows.max() <= 400.0 * 1.01
    assert sim.end_time_s > tr.default_seconds * 1.05  # the lower limit costs time: it did bind
