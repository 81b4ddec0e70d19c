"""One GPU loop's own counters: ticks, overruns, writes, errors, flapping, and tick durations."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class LoopStats:
    ticks: int = 0
    overruns: int = 0
    writes: int = 0
    errors: int = 0
    tick_started_wall: float | None = None  # set while a tick runs (hang detection)
    last_tick_end_wall: float | None = None
    durations_s: deque = field(default_factory=lambda: deque(maxlen=2000))
    reversals: int = 0  # setpoint direction changes (up after down or down after up): flapping shows here
    _last_level: float | None = None
    _last_direction: int = 0

    def count_direction(self, level: float) -> None:
        if self._last_level is not None and level != self._last_level:
            direction = 1 if level > self._last_level else -1
            if self._last_direction and direction != self._last_direction:
                self.reversals += 1
            self._last_direction = direction
        self._last_level = level

    def percentile_ms(self, q: float) -> float | None:
        if not self.durations_s:
            return None
        values = sorted(self.durations_s)
        return 1000.0 * values[min(len(values) - 1, int(q * len(values)))]
