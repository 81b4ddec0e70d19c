#!/usr/bin/env python3
"""How far a mix's kernel time per unit of DRAM progress moves between windows at default settings.

The model controller reads the stretch of arriving work from its busy share over its DRAM progress
(kernel time per unit of work) at the reference and at a probe's clock. On a mix whose parts differ
(prefills and decodes, bursts and quiet) that ratio moves with the mix's make-up from one window to
the next, at the same clock. This prints, for the firmware-default run of each trace (the sensors'
readings, as NVML shows them): the ratio over consecutive windows, how far it moves between
neighbours (rms), and how far it differs between two interleaved sets of slices (a probe paired
with default settings slice by slice would compare those). A 3% budget allows a stretch of about
3% where a mix's kernels all scale with the clock: a scatter larger than that cannot be read from.

    python tools/mix_scatter.py h100-sxm gen:serving:900097,gen:bursty:900097 --window 15,30
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.lab.simulate import DEFAULT_POLICY, run_trace  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import load_trace  # noqa: E402

SLICE_SKIP_S = 0.6  # the start of each slice is dropped: a clock switch settles and NVML's averages lag


def default_readings(gpu: str, trace: str) -> np.ndarray:
    """(time s, busy share %, DRAM progress %) per tick of the firmware-default run."""
    rows = []

    def on_tick(_worker, device) -> None:
        r = device.gpu.read()
        rows.append((device.gpu.t, r.gpu_util_pct, r.dram_bw_pct if r.dram_bw_pct is not None else r.mem_util_pct))

    run_trace(load_spec(gpu), load_trace(trace), DEFAULT_POLICY, on_tick=on_tick)
    return np.array(rows, dtype=float)


def window_starts(t: np.ndarray, window_s: float) -> np.ndarray:
    """The starts of the whole windows the readings cover (each reading closes one tick)."""
    tick = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    return np.arange(0.0, t[-1] + tick - window_s + 1e-9, window_s)


def window_ratios(a: np.ndarray, window_s: float) -> np.ndarray:
    """Busy share over DRAM progress (sums) over consecutive windows."""
    t = a[:, 0]
    out = []
    for start in window_starts(t, window_s):
        m = (t >= start) & (t < start + window_s)
        if a[m, 2].sum() > 0:
            out.append(a[m, 1].sum() / a[m, 2].sum())
    return np.array(out)


def paired_differences(a: np.ndarray, window_s: float, slice_s: float) -> np.ndarray:
    """Within each window, the ratio over slices A against slices B (alternating every slice_s), less one."""
    t = a[:, 0]
    kept = (t % slice_s) >= min(SLICE_SKIP_S, 0.5 * slice_s)
    first = ((t // slice_s) % 2) == 0
    out = []
    for start in window_starts(t, window_s):
        m = (t >= start) & (t < start + window_s) & kept
        sa, sb = m & first, m & ~first
        if a[sa, 2].sum() > 0 and a[sb, 2].sum() > 0:
            out.append((a[sa, 1].sum() / a[sa, 2].sum()) / (a[sb, 1].sum() / a[sb, 2].sum()) - 1.0)
    return np.array(out)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gpu")
    p.add_argument("traces", help="comma-separated")
    p.add_argument("--window", default="15,30", help="window lengths, s (comma-separated)")
    p.add_argument("--slice", default="1,2", help="interleaved slice lengths, s (comma-separated)")
    args = p.parse_args()
    windows = [float(x) for x in args.window.split(",")]
    slices = [float(x) for x in args.slice.split(",")]
    print("| GPU | trace | window | ratio (min .. max) | rms move between neighbours | "
          + " | ".join(f"rms paired, {s:g} s slices" for s in slices) + " |")
    print("|---|---|---|---|---|" + "---|" * len(slices))
    for trace in args.traces.split(","):
        a = default_readings(args.gpu, trace)
        for w in windows:
            r = window_ratios(a, w)
            moves = r[1:] / r[:-1] - 1.0 if len(r) > 1 else np.array([])
            paired = [rms(paired_differences(a, w, s)) for s in slices]
            print(f"| {args.gpu} | {trace} | {w:g} s | {r.min():.3f} .. {r.max():.3f} | {rms(moves):.1%} | "
                  + " | ".join(f"{x:.1%}" for x in paired) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
