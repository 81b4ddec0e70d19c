"""tools/state_shares.py: its arithmetic, and one real run it accounts in full."""


import pytest
from tool_loader import load_tool

state_shares = load_tool("state_shares")


def test_each_interval_counts_to_the_state_of_the_tick_that_ends_it():
    s = state_shares.Shares()
    s.add("reference", 0.0, 0.0, 345.0)  # the first tick only starts the count
    s.add("reference", 1.0, 500.0, 1980.0)
    s.add("probe", 2.0, 900.0, 1620.0)
    s.add("hold below default", 4.0, 1500.0, 1500.0)
    rows = {state: (t, e, f) for state, t, e, f in s.rows()}
    assert rows["reference"] == pytest.approx((0.25, 500 / 1500, 1980.0))
    assert rows["probe"] == pytest.approx((0.25, 400 / 1500, 1620.0))
    assert rows["hold below default"] == pytest.approx((0.5, 600 / 1500, 1500.0))


def test_a_run_is_accounted_in_full():
    shares, spent, budget = state_shares.measure("h100-sxm", "training-stalls", "batch")
    rows = shares.rows()
    assert sum(t for _, t, _, _ in rows) == pytest.approx(1.0)
    assert sum(e for _, _, e, _ in rows) == pytest.approx(1.0)
    states = {r[0].split("/")[0].split(" ")[0] for r in rows}
    assert {"reference", "probe", "hold"} <= states
    assert budget == pytest.approx(0.03) and spent >= 0.0
