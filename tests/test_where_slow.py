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


def test_a_request_counts_as_behind_a_backlog_only_where_default_had_one_too_and_the_run_more():
    contrib = np.array([0.01, 0.02, 0.03, 0.04])
    run_queued = np.array([0.030, 0.030, 0.002, 0.012])
    default_queued = np.array([0.020, 0.000, 0.000, 0.010])  # 1: default idle, 2: no backlog, 3: within 5 ms
    split = where_slow.split_latency(contrib, run_queued, default_queued, ["probe", "hold", "hold", "hold"])
    assert split.behind_backlog == {"probe": pytest.approx(0.01)}
    assert split.rest == {"hold": pytest.approx(0.09)}


def test_a_run_s_request_latency_is_accounted_in_full():
    bins, split, run, ref = where_slow.measure("h100-sxm", "gen:bursty:910188", "balanced", 20.0)
    assert sum(b.latency_share for b in bins) == pytest.approx(run.latency_slowdowns(ref)[0], abs=1e-9)
    assert split.backlog_total + split.rest_total == pytest.approx(run.latency_slowdowns(ref)[0], abs=1e-9)
    assert sum(b.requests for b in bins) == len(ref.latencies.latency_s)
    assert {b.state for b in bins} >= {"reference", "probe", "hold"}


def test_a_serial_run_s_lag_at_its_end_is_its_extra_time():
    bins, split, run, ref = where_slow.measure("h100-sxm", "gen:mixed:910188", "batch", 10.0)
    assert bins[-1].lag_s == pytest.approx(run.seconds - ref.seconds, abs=1.0)
    assert all(b.latency_share == 0.0 for b in bins)  # a trace without arriving work
    assert split.backlog_total == split.rest_total == 0.0
