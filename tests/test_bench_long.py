"""tools/bench_long.py: a long trace is the same work played more often, and a run is counted over
its budget on what its policy bounds."""

import pytest
from tool_loader import load_tool

from governor.sim.trace import load_trace

bench_long = load_tool("bench_long")


def test_a_long_trace_plays_the_same_phases_more_often():
    short = load_trace("gen:bursty:17")
    long = bench_long.long_trace("gen:bursty:17", 3)
    assert long.phases == short.phases and long.repeat == 3 * short.repeat
    assert long.default_seconds == pytest.approx(3 * short.default_seconds)


def test_a_run_is_over_on_what_its_policy_bounds_and_the_table_names_it():
    rows = bench_long.measure("h100-sxm", "idle", 1, ("balanced", "performance"))
    assert [r["policy"] for r in rows] == ["balanced", "performance"]
    assert all(r["over"] is False for r in rows)  # the suite's idle trace is kept by both
    assert all(r["reversals_per_min"] >= 0.0 for r in rows)
    late = {**rows[0], "trace": "gen:bursty:5", "latency_slowdown": 0.26, "over": True, "reversals_per_min": 27.4}
    kept = {**rows[0], "trace": "gen:bursty:6", "latency_slowdown": 0.01}
    table = bench_long.markdown([late, kept], [5, 6], ["h100-sxm"], 3, drawn=False)
    assert "| bursty | balanced | 2 |" in table and "+26.00%" in table and "| 27.4 |" in table
    assert "| 1: h100-sxm gen:bursty:5 |" in table and "given with --seed-list" in table


def test_named_traces_are_their_own_rows_and_an_unknown_one_is_named_before_any_run(capsys):
    rows = bench_long.measure("h100-sxm", "idle", 2, ("balanced",))
    table = bench_long.markdown(rows, [], ["h100-sxm"], 2, drawn=False)
    assert "named traces" in table and "| idle | balanced | 1 |" in table
    with pytest.raises(SystemExit):
        bench_long.main(["--traces", "no-such-trace"])
    assert "no-such-trace" in capsys.readouterr().err
