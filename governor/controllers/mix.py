"""Means of a mix of phases over a whole number of its cycles.

A window of readings taken while short phases alternate catches the mix at some point of its cycle:
a 9 s window of a 5 s prefill/decode cycle holds two prefills or one, and its mean power per unit of
progress is off by as much as the phases differ. Over a whole number of cycles the mean does not
depend on where the window starts. So among the lengths m that fit the window several times over,
the one whose sliding means (every start position: the window must hold two stretches) agree best is taken
as a whole number of cycles, provided the readings that leave the stretch as it slides show the
window's variation (else the stretch merely holds one burst inside calm and agrees for that reason),
and the mean over all those positions is the mix's mean. Where no length makes them agree (a mix
with no period in the window), the whole window is used and the spread of its longest sliding means
says how far off it may be. No period has to be known or detected beforehand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phase_model import Probe

CLEAN_SPREAD = 0.02  # sliding means that agree this well are taken for whole cycles
BUSY_READING_UTIL = 0.5  # a reading this busy or more measures the kernels of the work it caught
BUSY_READINGS_MIN = 5  # fewer busy readings than this in a window measure nothing
BLOCK_CELLS = 16384  # sliding means computed at once (_sliding_means): bounds the memory of a long window


@dataclass(frozen=True)
class MixMean:
    power: float
    progress: float
    ticks: int  # length of the stretch the means are over
    rel_spread: float  # relative spread of power/progress between start positions (0: a clean cycle)


def whole_cycles_mean(power: np.ndarray, progress: np.ndarray, min_ticks: int = 4,
                      min_positions: int = 4, clean_spread: float = CLEAN_SPREAD) -> MixMean:
    """Mean power and progress of a mix over the stretch length whose sliding means agree best."""
    p = np.asarray(power, dtype=float)
    r = np.asarray(progress, dtype=float)
    n = len(p)
    whole = MixMean(power=float(p.mean()), progress=float(r.mean()), ticks=n, rel_spread=0.0) if n else \
        MixMean(0.0, 0.0, 0, 1.0)
    if n < min_ticks + min_positions:
        return whole
    cp = np.concatenate([[0.0], np.cumsum(p)])
    cr = np.concatenate([[0.0], np.cumsum(r)])
    # every candidate length at once: a window's end is the one heavy tick of a loop, and the 8 (or
    # 64) GPUs of one job reach it together, queueing for one interpreter lock (3.5 ms a window of
    # 200 readings, length by length; docs/benchmarks.md, "The daemon's own cost")
    ms = np.arange(min_ticks, min(n - min_positions + 2, (n + 1) // 2 + 1))
    if not ms.size:
        return whole
    positions = n - ms + 1  # start positions of each length; >= ms: they span a whole stretch
    # the readings leaving the stretch as it slides are p[:positions]: where they do not show the
    # mix's variation, the stretch merely holds every change (one burst inside calm), no period
    span_p, span_r = float(np.ptp(p)), float(np.ptp(r))
    left_p = np.maximum.accumulate(p) - np.minimum.accumulate(p)
    left_r = np.maximum.accumulate(r) - np.minimum.accumulate(r)
    shows = (left_p[positions - 1] >= 0.6 * span_p) | (left_r[positions - 1] >= 0.6 * span_r)
    if not shows.any():
        return whole
    ms, positions = ms[shows], positions[shows]
    spreads, mean_ps, mean_rs = _sliding_means(cp, cr, ms, positions, by_ratio=r.mean() > 0)
    longest = float(spreads[-1])
    best = None
    for k, spread in enumerate(spreads.tolist()):
        # prefer longer stretches when they agree as well (within a tenth of a percent)
        if best is None or spread <= best[0] + 1e-3:
            best = (spread, int(ms[k]), float(mean_ps[k]), float(mean_rs[k]))
    spread, m, mean_p, mean_r = best
    if spread > clean_spread:
        # no whole number of cycles in the window: its mean, as far off as its longest stretches disagree
        return MixMean(power=whole.power, progress=whole.progress, ticks=n, rel_spread=longest)
    return MixMean(power=mean_p, progress=mean_r, ticks=m, rel_spread=spread)


def busy_kernel_time(util: np.ndarray, progress: np.ndarray) -> float:
    """Busy share per unit of progress over a window's busy readings (`BUSY_READING_UTIL` or more),
    the kernel time per unit of work of what the mix does while at work; 0 with fewer than
    `BUSY_READINGS_MIN` of them or no progress there.

    The window's mean busy share over its mean progress mixes in its quiet readings, whose progress
    is mostly a quiet GPU's background traffic (an input stall at 3% busy reads 0.6% of DRAM
    bandwidth: five times a training step's busy time per unit of progress), so it moves with how
    much quiet each window caught, and the clock's effect on the kernels drowns in it. Two windows of
    a training mix read the same kernel time at 0.91 of the clock where their steps' readings showed
    9% more."""
    u = np.asarray(util, dtype=float)
    r = np.asarray(progress, dtype=float)
    busy = u >= BUSY_READING_UTIL
    if int(busy.sum()) < BUSY_READINGS_MIN or r[busy].sum() <= 0.0:
        return 0.0
    return float(u[busy].sum() / r[busy].sum())


def mean_progress_error(progress: np.ndarray, cycle_ticks: int, blocks: int = 4) -> float:
    """Relative standard error of a window's mean progress, from how its parts' means scatter: its
    stretches of cycle_ticks readings where the window holds whole cycles of that length (two or
    more), else `blocks` consecutive parts; 0 with too few readings to tell.

    A window holds a few cycles of its mix, and which phases they caught moves its mean: a training
    mix's 10-20 s windows hold two to four steps and stalls, one or two steps to a stall as the
    job's loader delivers, and their progress moved by 10-20% from window to window at one clock.
    Parts of whole cycles scatter only by what the cycles themselves do (a pipeline's regular
    forward passes: 0.3-1%); consecutive parts of a window without a period scatter by its phases
    as the window's mean does."""
    r = np.asarray(progress, dtype=float)
    n = len(r)
    mean = float(r.mean()) if n else 0.0
    if mean <= 0.0:
        return 0.0
    if 0 < cycle_ticks < n and n // cycle_ticks >= 2:
        k = n // cycle_ticks
        means = r[:k * cycle_ticks].reshape(k, cycle_ticks).mean(axis=1)
    else:
        means = np.array([part.mean() for part in np.array_split(r, blocks) if len(part)])
    if len(means) < 2:
        return 0.0
    return float(np.std(means, ddof=1) / np.sqrt(len(means)) / mean)


def _sliding_means(cp: np.ndarray, cr: np.ndarray, ms: np.ndarray, positions: np.ndarray,
                   by_ratio: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each stretch length ms[k]: the relative spread of power per unit of progress (of power
    alone when there is no progress) between its start positions, and its mean power and progress.

    Computed for many lengths at once: row k holds the means of length ms[k] at every start
    position, padded past its last one. Rows go in blocks of at most `BLOCK_CELLS` cells, so that a
    long window at a fast control rate (30 000 readings at 50 Hz) costs time, not memory."""
    spreads, mean_ps, mean_rs = [], [], []
    j = np.arange(int(positions.max()))
    rows = max(1, BLOCK_CELLS // len(j))
    for a in range(0, len(ms), rows):
        m, pos = ms[a:a + rows, None], positions[a:a + rows, None]
        valid = j[None, :] < pos
        start = np.where(valid, j[None, :], 0)
        end = start + m
        mp = (cp[end] - cp[start]) / m
        mr = (cr[end] - cr[start]) / m
        ratio = np.where(valid, mp / np.maximum(mr, 1e-9) if by_ratio else mp, 0.0)
        mean_ratio = ratio.sum(axis=1, keepdims=True) / pos
        dev = np.where(valid, ratio - mean_ratio, 0.0)
        spreads.append(np.sqrt((dev * dev).sum(axis=1) / pos[:, 0]) / np.maximum(np.abs(mean_ratio[:, 0]), 1e-9))
        mean_ps.append(np.where(valid, mp, 0.0).sum(axis=1) / pos[:, 0])
        mean_rs.append(np.where(valid, mr, 0.0).sum(axis=1) / pos[:, 0])
    return np.concatenate(spreads), np.concatenate(mean_ps), np.concatenate(mean_rs)


@dataclass(frozen=True)
class LineSums:
    """Sums for a least-squares line of y against x over readings, which add up across windows.

    A mix's default-settings readings give two such lines. Its power against its busy share: the
    readings spread from quiet stretches to bursts, so they show how power grows with the busy share,
    and that line prices any stretch of the mix by its own busy share (ModelPricing), whatever its
    make-up of bursts and quiet. And its busy share against its DRAM progress: how much of the busy
    time default settings spend per unit of work, and how much is busy with no work to show (a
    training mix's input stalls)."""

    n: int = 0
    sx: float = 0.0
    sxx: float = 0.0
    sy: float = 0.0
    sxy: float = 0.0
    x_lo: float = float("inf")  # the least and the most x read: where the line was measured
    x_hi: float = float("-inf")

    @staticmethod
    def of(x: np.ndarray, y: np.ndarray) -> LineSums:
        u, p = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if not len(u):
            return LineSums()
        return LineSums(n=len(u), sx=float(u.sum()), sxx=float(u @ u), sy=float(p.sum()), sxy=float(u @ p),
                        x_lo=float(u.min()), x_hi=float(u.max()))

    def __add__(self, other: LineSums) -> LineSums:
        return LineSums(self.n + other.n, self.sx + other.sx, self.sxx + other.sxx, self.sy + other.sy,
                        self.sxy + other.sxy, min(self.x_lo, other.x_lo), max(self.x_hi, other.x_hi))

    def line(self) -> tuple[float, float] | None:
        """(y at no x, y per unit of x); None with too few readings. Without spread in x the line is
        flat at the mean. How far the pool's stretches lie off it is measured on them
        (ModelPricing._pooled_line), not from these sums."""
        if self.n < 3:
            return None
        sxx = self.n * self.sxx - self.sx * self.sx
        slope = (self.n * self.sxy - self.sx * self.sy) / sxx if sxx > 1e-9 * self.n * self.n else 0.0
        slope = max(0.0, slope)  # more busy never draws less (nor more work less busy): a negative slope is noise
        if self.sx > 0:
            # nor does an idle GPU draw less than nothing (nor is a GPU with no work less than idle):
            # a line steeper than through zero at no x is the mix's make-up (prefills draw more per
            # unit of busy share than decodes), not what busy share costs, and priced decodes 10
            # points quieter than its readings at 160 W where default drew 250 (h100,
            # gen:serving:891853, a line from -239 W at idle)
            slope = min(slope, self.sy / self.sx)
        return (self.sy - slope * self.sx) / self.n, slope


@dataclass(frozen=True)
class MixWindow:
    """One default-settings window of a mix: its means over whole cycles, how far they may be off
    (rel_spread of whole_cycles_mean), the share of its readings with the GPU saturated, its
    readings' power against busy share, in `PARTS` consecutive stretches, and their busy share
    against DRAM progress."""

    probe: Probe
    spread: float
    saturated: float
    parts: tuple[LineSums, ...]  # power (y) against busy share (x)
    busy_by_progress: LineSums = LineSums()  # busy share (y) against DRAM progress (x), all its readings

    PARTS = 4

    @property
    def util_power(self) -> LineSums:
        return sum(self.parts, LineSums())

    @staticmethod
    def split(util: np.ndarray, power: np.ndarray) -> tuple[LineSums, ...]:
        """The window's readings in PARTS consecutive stretches (fewer for a short window)."""
        n = len(util)
        k = max(1, min(MixWindow.PARTS, n // 4))
        edges = np.linspace(0, n, k + 1).astype(int)
        return tuple(LineSums.of(util[a:b], power[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True))
