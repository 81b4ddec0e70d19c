"""tools/bench_job_events.py: each segment of a mixed trace reaches the loop as a job."""

from tool_loader import load_tool

bench_job_events = load_tool("bench_job_events")


def test_every_segment_after_the_first_is_announced_as_a_job_and_only_when_asked():
    from governor.sim.generate import mixed_segment_starts

    announced = bench_job_events.run_one("h100-sxm", 480411, "batch", True)
    plain = bench_job_events.run_one("h100-sxm", 480411, "batch", False)
    assert announced["jobs"] == len(mixed_segment_starts(480411)) - 1 and plain["jobs"] == 0
    assert announced["saved"] != plain["saved"]  # the events reached the controller
    assert announced["bound"] == "time" and announced["budget"] == 0.03


def test_a_run_is_over_its_bound_by_what_its_policy_bounds():
    row = {"budget": 0.03, "bound": "time", "slowdown": 0.02, "latency": (0.50, 0.80)}  # (mean, p99)
    assert not bench_job_events.over(row)  # a time bound leaves request latency alone
    assert bench_job_events.over({**row, "bound": "both"})
    assert bench_job_events.over({**row, "slowdown": 0.036})
    assert not bench_job_events.over({**row, "slowdown": 0.034, "latency": None, "bound": "both"})
