"""The searched oracle against an independent sweep: every pair of clocks (on a coarse grid) for a
two-phase trace, run through the daemon's own loop (worker, envelope, actuation) instead of the
oracle's direct runner. The oracle must keep both bounds and save at least as much as the best pair
that keeps them, up to the loop's own cost of switching a tick late (0.3 point of default energy)."""

import itertools

import pytest

from governor.config import default_config
from governor.controllers.base import NO_CONTEXT, Controller
from governor.lab.simulate import DEFAULT_POLICY, oracle_runs, run_trace
from governor.policy import Policy
from governor.settings import Setpoint
from governor.sim.spec import load_spec

BUDGET = 0.03


class PhasePlan(Controller):
    """Holds a clock per phase name, told the phase by the simulator (as an oracle may be)."""

    name = "test-phase-plan"
    evaluation_only = True

    def __init__(self, plan, limits):
        super().__init__({}, limits)
        self.plan, self.phase = plan, None

    def observe_app(self, info):
        self.phase = info.get("phase")

    def decide(self, sample, context=NO_CONTEXT):
        return self.plan.get(self.phase, Setpoint())


def fast_loop():
    config = default_config()
    config.values["daemon"]["period_ms"] = 50
    config.values["envelope"]["min_write_interval_ms"] = 0
    config.values["envelope"]["max_writes_per_minute"] = 6000
    return config


@pytest.fixture
def two_phase_trace(make_trace):
    return make_trace(
        {"name": "prefill", "seconds": 2.0, "busy": 0.85, "clock_bound": 0.9, "intensity": 0.9, "dram": 0.3,
         "slack": "arrival", "request_s": 0.2},
        {"name": "decode", "seconds": 4.0, "busy": 0.6, "clock_bound": 0.15, "intensity": 0.1, "dram": 0.7,
         "slack": "arrival", "request_s": 0.05},
        repeat=3)


def test_oracle_is_at_least_the_best_pair_of_an_independent_sweep(two_phase_trace):
    spec = load_spec("a100-sxm4")
    ref = run_trace(spec, two_phase_trace, DEFAULT_POLICY)
    oracle = oracle_runs(spec, two_phase_trace, ref, BUDGET)["oracle"]
    assert oracle.keeps(ref, BUDGET, "both")
    grid = [None, *spec.sm_clocks_mhz[::6]]
    policy = Policy(name="sweep", controller="test-phase-plan", source="test")
    best = ref.energy_j
    for a, b in itertools.product(grid, grid):
        plan = {name: Setpoint() if f is None else Setpoint(sm_clock_min_mhz=spec.f_min, sm_clock_max_mhz=f)
                for name, f in (("prefill", a), ("decode", b))}
        run = run_trace(spec, two_phase_trace, policy, config=fast_loop(),
                        controller_factory=lambda limits, plan=plan: PhasePlan(plan, limits))
        if run.keeps(ref, BUDGET, "both"):
            best = min(best, run.energy_j)
    assert best < ref.energy_j  # the sweep found something: the comparison means something
    assert oracle.energy_j <= best + 0.003 * ref.energy_j
