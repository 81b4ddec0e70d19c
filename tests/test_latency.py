"""Request latency of arriving work, as ../shared/trace-format.md defines it."""

import numpy as np
import pytest

from governor.lab.latency import RequestLatencies, latency_slowdowns, weighted_quantile
from governor.lab.simulate import DEFAULT_POLICY, policy_bound, run_trace, simulate
from governor.policy import Policy, load_policy
from governor.sim.spec import load_spec
from governor.sim.workload import Workload


def run(wl, f, dt=0.01, limit=10_000):
    t = 0.0
    while not wl.done and t < limit:
        wl.advance(dt, f)
        t += dt
    return t


def decode(seconds=20.0, busy=0.9, clock_bound=1.0, request_s=0.1, slack="arrival"):
    return {"name": "decode", "seconds": seconds, "busy": busy, "clock_bound": clock_bound, "intensity": 0.1,
            "dram": 0.5, "slack": slack, "request_s": request_s}


def test_requests_arrive_evenly_and_take_their_kernel_time_at_default(make_trace):
    tr = make_trace(decode(seconds=10.0, busy=0.5, request_s=0.1))
    wl = Workload(tr.played(), [1000.0])
    run(wl, 1000.0)
    r = wl.requests
    assert len(r.arrival_s) == 50  # 10 s x 50% busy / 0.1 s
    assert np.diff(r.arrival_s) == pytest.approx([0.2] * 49)
    assert np.array(r.done_s) - np.array(r.arrival_s) == pytest.approx([0.1] * 50)


def test_fifo_backlog_delays_later_requests(make_trace):
    tr = make_trace(decode(seconds=4.0, busy=1.0, request_s=0.5),
                    {**decode(seconds=4.0, busy=0.25, request_s=0.5), "name": "quiet"})
    wl = Workload(tr.played(), [1000.0, 1000.0])
    run(wl, 500.0)  # kernels take twice as long: the burst's 8 requests need 8 s
    lat = np.array(wl.requests.done_s) - np.array(wl.requests.arrival_s)
    assert list(np.array(wl.requests.done_s)) == sorted(wl.requests.done_s)  # served in arrival order
    assert lat[:8] == pytest.approx([1.0 + 0.5 * k for k in range(8)], abs=1e-6)  # each waits for the ones before


def test_end_time_hides_what_requests_feel(make_trace):
    """A steady decode at 90% busy at a 10% lower clock: the run ends on time, every request is ~10% slower."""
    spec = load_spec("h100-sxm")
    tr = make_trace(decode(seconds=30.0, busy=0.8, clock_bound=1.0))
    ref = run_trace(spec, tr, DEFAULT_POLICY)
    slow = run_trace(spec, tr, Policy(name="lock", controller="static", params={"sm_clock_max_mhz": 1620},
                                      source="test"))  # about 0.9 of the default clock under this load
    assert slow.slowdown(ref) == pytest.approx(0.0, abs=0.002)
    mean, p99 = slow.latency_slowdowns(ref)
    assert 0.05 < mean < 0.25
    assert p99 >= mean
    assert not slow.keeps(ref, 0.03, "both")
    assert slow.keeps(ref, 0.03, "time")


def test_a_backlog_drained_in_a_quiet_phase_shows_in_latency_only(make_trace):
    spec = load_spec("h100-sxm")
    tr = make_trace(decode(seconds=5.0, busy=1.0, clock_bound=0.9, request_s=0.1),
                    {**decode(seconds=20.0, busy=0.05), "name": "quiet"})
    ref = run_trace(spec, tr, DEFAULT_POLICY)
    slow = run_trace(spec, tr, Policy(name="lock", controller="static", params={"sm_clock_max_mhz": 1200},
                                      source="test"))
    assert slow.slowdown(ref) == pytest.approx(0.0, abs=0.002)
    mean, p99 = slow.latency_slowdowns(ref)
    assert mean > 3.0  # requests waited seconds behind the backlog where they took 0.1 s
    assert p99 > mean


def test_serial_work_has_no_latency():
    out = simulate("h100-sxm", "training-stalls", ["balanced"], oracles=False)
    for r in out["runs"]:
        assert r["latency_slowdown"] is None and r["latency_p99_slowdown"] is None


def test_slowdowns_weight_by_work():
    ref = RequestLatencies(latency_s=np.array([1.0, 1.0]), work_s=np.array([3.0, 1.0]))
    run = RequestLatencies(latency_s=np.array([1.0, 2.0]), work_s=np.array([3.0, 1.0]))
    mean, p99 = latency_slowdowns(run, ref)
    assert mean == pytest.approx(0.25)
    assert p99 == pytest.approx(1.0)
    assert weighted_quantile(np.array([5.0, 1.0, 3.0]), np.array([1.0, 1.0, 2.0]), 0.5) == 3.0
    assert latency_slowdowns(None, None) is None


def test_batch_policy_bounds_end_time_only(make_trace):
    batch, balanced = load_policy("batch"), load_policy("balanced")
    assert policy_bound(batch) == "time" and batch.params["slowdown_budget"] == 0.03
    assert policy_bound(balanced) == "both"
    # arriving work at 80% busy: batch plans the GPU up to keeping up, balanced keeps queueing headroom
    spec = load_spec("h100-sxm")
    tr = make_trace(decode(seconds=120.0, busy=0.8, clock_bound=0.7))
    ref = run_trace(spec, tr, DEFAULT_POLICY)
    runs = {p.name: run_trace(spec, tr, p) for p in (batch, balanced)}
    assert runs["batch"].energy_j < runs["balanced"].energy_j
    assert runs["batch"].keeps(ref, 0.03 + 0.005, "time")
    assert runs["batch"].latency_slowdowns(ref)[0] > runs["balanced"].latency_slowdowns(ref)[0]
