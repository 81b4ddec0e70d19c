"""tools/where_slow.py: its arithmetic, and real runs it accounts in full."""


import numpy as np
import pytest
from tool_loader import load_tool

where_slow = load_tool("where_slow")


def test_lag_is_the_time_default_took_to_do_the_same_work_subtracted():
    default_time = np.array([0.0, 10.0, 20.0])
    default_work = np.array([0.0, 5.0, 10.0])
    assert where_slow.lag_s(12.0, 5.0, default_time, default_work) == pytest.approx(2.0)
    assert where_slow.lag_s(15.0, 7.5, default_time, default_work) == pytest.approx(0.0)


def test_latency_shares_add_up_to_the_work_weighted_mean_slowdown():
    arrivals = np.array([1.0, 2.0, 11.0, 25.0])
    ratio = np.array([1.0, 1.5, 1.1, 0.9])
    work = np.array([1.0, 1.0, 2.0, 1.0])
    shares = where_slow.latency_shares(arrivals, ratio, work, np.array([0.0, 10.0, 20.0, 30.0]))
    assert shares == pytest.approx([0.5 / 5, 0.2 / 5, -0.1 / 5])
    assert shares.sum() == pytest.approx(float(np.average(ratio, weights=work)) - 1.0)


def test_a_run_s_request_latency_is_accounted_in_full():
    bins, run, ref = where_slow.measure("h100-sxm", "gen:bursty:910188", "balanced", 20.0)
    assert sum(b.latency_share for b in bins) == pytest.approx(run.latency_slowdowns(ref)[0], abs=1e-9)
    assert sum(b.requests for b in bins) == len(ref.latencies.latency_s)
    assert {b.state for b in bins} >= {"reference", "probe", "hold"}


def test_a_serial_run_s_lag_at_its_end_is_its_extra_time():
    bins, run, ref = where_slow.measure("h100-sxm", "gen:mixed:910188", "batch", 10.0)
    assert bins[-1].lag_s == pytest.approx(run.seconds - ref.seconds, abs=1.0)
    assert all(b.latency_share == 0.0 for b in bins)  # a trace without arriving work
