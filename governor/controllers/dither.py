"""Alternating two neighbouring clock steps to spend a budget that falls between them.

Supported clocks are 15 MHz apart, which near the top of the V/f curve is about a point of slowdown
per step, so the best single clock within a 3% budget may spend only 2%. Holding the next lower
clock for a share of each period reaches the straight line between the two operating points. The
lower clock closes each cycle, so the budget is earned before it is spent, and a new share waits for
the next cycle: moving the switch point inside the current one would send the clock down for a tick
whenever the share grows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Dither:
    period_s: float
    low: float | None = None  # the lower clock of the pair, None while not dithering
    share: float = 0.0  # of each period, at the lower clock
    start: float = 0.0  # when the current cycle began

    def set(self, now: float, pair: tuple[float, float] | None) -> None:
        """Dither with (lower clock, share), or stop with None."""
        if pair is None:
            self.low = None
        elif self.low != pair[0]:
            self.low, self.share, self.start = pair[0], pair[1], now  # a new pair: its cycle starts now
        else:
            cycles = int((now - self.start) // self.period_s)
            if cycles >= 1:
                self.share, self.start = pair[1], self.start + cycles * self.period_s

    def clock(self, now: float, planned: float) -> float:
        """The clock to hold now: the lower one in the last `share` of each cycle, else the planned."""
        if self.low is None:
            return planned
        into = (now - self.start) % self.period_s
        return self.low if into >= (1.0 - self.share) * self.period_s else planned
