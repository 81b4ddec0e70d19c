"""tools/mix_scatter.py's arithmetic: the measurement behind the serving finding of issue 19's eighth part."""


import numpy as np
import pytest
from tool_loader import load_tool

mix_scatter = load_tool("mix_scatter")


def readings(ratio_of):
    """(time s, busy %, DRAM %) at 5 Hz for 120 s, busy = DRAM x ratio_of(t)."""
    t = np.arange(0.0, 120.0, 0.2)
    dram = np.full_like(t, 40.0)
    return np.column_stack([t, dram * np.array([ratio_of(x) for x in t]), dram])


def test_window_ratios_follow_a_make_up_that_moves_between_windows():
    a = readings(lambda t: 1.5 if t < 60.0 else 1.8)
    r = mix_scatter.window_ratios(a, 30.0)
    assert r == pytest.approx([1.5, 1.5, 1.8, 1.8])


def test_paired_slices_compare_interleaved_slices_within_a_window():
    # slices of 1 s alternate; the second of each pair reads 10% more busy per unit of DRAM progress
    # (a probe's clock, were the slices a probe and default): the paired difference shows it ...
    a = readings(lambda t: 1.5 if int(t) % 2 == 0 else 1.65)
    d = mix_scatter.paired_differences(a, 30.0, 1.0)
    assert len(d) == 4 and d == pytest.approx([1.5 / 1.65 - 1.0] * 4)
    # ... and a make-up that moves only between windows leaves it at zero
    steady = mix_scatter.paired_differences(readings(lambda t: 1.5 if t < 60.0 else 1.8), 30.0, 1.0)
    assert steady == pytest.approx([0.0] * 4)
    assert mix_scatter.rms(np.array([0.03, -0.04])) == pytest.approx((0.5 * (0.03**2 + 0.04**2)) ** 0.5)
