"""Time sources for control loops: real, scaled (demos at X times real time), and virtual.

Loops and simulated GPUs read time only from a Clock, so the same daemon code runs an hour of
simulated time in seconds (virtual), in real time on real GPUs, or faster than real time in demos.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Monotonic seconds since the clock started."""

    def now(self) -> float:
        raise NotImplementedError

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Wait until time t; returns False early when stop is set."""
        raise NotImplementedError


class RealClock(Clock):
    def __init__(self, speed: float = 1.0):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        wait = (t - self.now()) / self.speed
        if stop is None:
            if wait > 0:
                time.sleep(wait)
            return True
        if wait > 0:
            return not stop.wait(wait)
        return not stop.is_set()


class VirtualClock(Clock):
    """Time moves only when a loop sleeps: one loop, as fast as the CPU allows."""

    def __init__(self) -> None:
        self._t = 0.0

    def now(self) -> float:
        return self._t

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return False
        self._t = max(self._t, t)
        return True
