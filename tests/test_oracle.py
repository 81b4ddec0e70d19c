"""Oracles: the Lagrangian plan is exact (checked against brute force), and the measured runs keep the budget."""

import itertools

import numpy as np
import pytest

from governor.lab.oracle_model import PhaseCurve, phase_curves, solve
from governor.lab.simulate import DEFAULT_POLICY, oracle_runs, run_trace, simulate
from governor.sim.spec import load_spec
from governor.sim.trace import load_trace


def brute_force(curves, budget):
    limit = (1 + budget) * sum(c.time[-1] for c in curves)
    best_e = float("inf")
    for idx in itertools.product(*(range(len(c.clocks)) for c in curves)):
        t = sum(c.time[i] for c, i in zip(curves, idx, strict=True))
        e = sum(c.energy[i] for c, i in zip(curves, idx, strict=True))
        if t <= limit * (1 + 1e-12):
            best_e = min(best_e, e)
    return best_e


@pytest.mark.parametrize("budget", [0.0, 0.03, 0.1, 0.3])
def test_solve_matches_brute_force_on_a_small_trace(budget, make_trace):
    trace = make_trace(
        {"name": "a", "seconds": 2.0, "busy": 0.9, "clock_bound": 0.9, "intensity": 0.9, "dram": 0.3},
        {"name": "b", "seconds": 3.0, "busy": 0.7, "clock_bound": 0.2, "intensity": 0.2, "dram": 0.6},
        {"name": "c", "seconds": 1.0, "busy": 0.5, "clock_bound": 0.5, "intensity": 0.5, "dram": 0.1,
         "slack": "arrival"})
    full = phase_curves(load_spec("a100-sxm4"), trace)
    # thin the clock tables so brute force stays small: every 8th clock plus the default
    curves = []
    for c in full:
        keep = sorted(set(range(0, len(c.clocks), 8)) | {len(c.clocks) - 1})
        curves.append(PhaseCurve(c.phase, c.plays, c.clocks[keep], [c.settings[i] for i in keep], c.energy[keep],
                                 c.time[keep]))
    idx = solve(curves, budget)
    energy = sum(c.energy[i] for c, i in zip(curves, idx, strict=True))
    assert energy == pytest.approx(brute_force(curves, budget), rel=1e-9)


def test_static_solution_uses_one_clock():
    trace = load_trace("training-stalls")
    curves = phase_curves(load_spec("h100-sxm"), trace)
    idx = solve(curves, 0.03, same_for_all=True)
    assert len({float(c.clocks[i]) for c, i in zip(curves, idx, strict=True)}) == 1


BURSTS = ({"name": "burst", "seconds": 5.0, "busy": 0.95, "clock_bound": 0.6, "intensity": 0.6, "dram": 0.4,
           "slack": "arrival", "request_s": 0.1},
          {"name": "quiet", "seconds": 10.0, "busy": 0.1, "clock_bound": 0.5, "intensity": 0.3, "dram": 0.2,
           "slack": "arrival", "request_s": 0.1})


@pytest.mark.parametrize("trace", ["decode", "training-stalls", "bursts"])
def test_oracles_keep_both_bounds_strictly_and_nest(trace, make_trace):
    spec = load_spec("h100-sxm")
    tr = make_trace(*BURSTS, repeat=4) if trace == "bursts" else load_trace(trace)
    ref = run_trace(spec, tr, DEFAULT_POLICY)
    runs = oracle_runs(spec, tr, ref, 0.03)
    for kind, r in runs.items():
        assert r.keeps(ref, 0.03, "both"), kind
        lat = r.latency_slowdowns(ref)
        assert lat is None or lat[0] <= 0.03, kind
        assert r.energy_j <= ref.energy_j, kind
    assert runs["oracle"].energy_j <= min(runs["oracle_static"].energy_j, runs["oracle_power"].energy_j)


def test_a_time_bound_lets_the_oracle_stretch_requests(make_trace):
    """On arriving work whose backlog drains in quiet phases, end time hides the latency; an oracle
    bounded on end time only saves more than one bounded on latency too, and stretches requests."""
    spec = load_spec("h100-sxm")
    tr = make_trace(*BURSTS, repeat=4)
    ref = run_trace(spec, tr, DEFAULT_POLICY)
    both = oracle_runs(spec, tr, ref, 0.03, "both")["oracle_static"]
    time_only = oracle_runs(spec, tr, ref, 0.03, "time")["oracle_static"]
    assert time_only.energy_j < both.energy_j
    assert time_only.latency_slowdowns(ref)[0] > 0.03
    assert time_only.slowdown(ref) <= 0.03


def test_simulate_json_has_oracles_and_capture():
    out = simulate("h100-sxm", "decode", ["balanced"])
    assert out["bound"] == "both"
    for kind in ("oracle", "oracle_static", "oracle_power"):
        assert set(out[kind]) == {"energy_j", "seconds", "saved", "slowdown", "latency_slowdown",
                                  "latency_p99_slowdown"}
        assert out[kind]["latency_slowdown"] is None  # decode is serial work: no requests
    balanced = out["runs"][1]
    assert balanced["capture"] == pytest.approx(balanced["saved"] / out["oracle"]["saved"], abs=1e-3)
    assert np.isfinite(balanced["capture"])
    assert balanced["budget"] == 0.03 and balanced["bound"] == "both"
    assert balanced["within_budget"] is (balanced["slowdown"] <= 0.03)
