"""One GPU loop's own counters: ticks, overruns, writes, errors, flapping, and tick durations."""

from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass, field

# bucket edges of the tick-duration histogram (govd_tick_duration_seconds): a tick is ~0.1-1 ms,
# a first write or a slow NVML call tens of milliseconds, a hung call seconds
TICK_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


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
    # the envelope or the loop stepped in: thermal, rate, readback, other_writer
    interventions: Counter = field(default_factory=Counter)
    tick_bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(TICK_BUCKETS_S) + 1))
    tick_sum_s: float = 0.0
    restore_failures: int = 0  # give-backs (pause, error, lost GPU, stop) that left the GPU changed

    def record_tick(self, seconds: float) -> None:
        self.durations_s.append(seconds)
        self.tick_bucket_counts[bisect.bisect_left(TICK_BUCKETS_S, seconds)] += 1
        self.tick_sum_s += seconds
        self.ticks += 1

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
