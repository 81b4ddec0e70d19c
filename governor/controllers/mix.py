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

CLEAN_SPREAD = 0.02  # sliding means that agree this well are taken for whole cycles


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
    best = longest = None
    span_p, span_r = float(np.ptp(p)), float(np.ptp(r))
    for m in range(min_ticks, n - min_positions + 2):
        if n - m + 1 < m:
            break  # a period is shown only by start positions spanning a whole stretch: two cycles
        if np.ptp(p[: n - m + 1]) < 0.6 * span_p and np.ptp(r[: n - m + 1]) < 0.6 * span_r:
            # the readings leaving the stretch as it slides do not show the mix's variation: the
            # stretch merely holds every change (one burst inside calm), which is no period
            continue
        mp = (cp[m:] - cp[:-m]) / m
        mr = (cr[m:] - cr[:-m]) / m
        ratio = mp / np.maximum(mr, 1e-9) if r.mean() > 0 else mp
        spread = float(np.std(ratio) / max(abs(float(np.mean(ratio))), 1e-9))
        longest = spread
        # prefer longer stretches when they agree as well (within a tenth of a percent)
        if best is None or spread < best[0] - 1e-3 or (spread <= best[0] + 1e-3 and m > best[1]):
            best = (spread, m, float(mp.mean()), float(mr.mean()))
    if best is None:
        return whole
    spread, m, mean_p, mean_r = best
    if spread > clean_spread:
        # no whole number of cycles in the window: its mean, as far off as its longest stretches disagree
        return MixMean(power=whole.power, progress=whole.progress, ticks=n, rel_spread=longest)
    return MixMean(power=mean_p, progress=mean_r, ticks=m, rel_spread=spread)
