"""Trace replay, exactly as ../shared/trace-format.md defines it.

Work is measured in seconds of kernel time at default settings. At SM clock f a unit of a phase's
work takes s(f) = clock_bound·f_def/f + (1 − clock_bound) seconds of kernel time (a phase with the
optional knee_mhz: Phase.kernel_stretch).
- serial phases: each unit of work also needs (1 − busy)/busy seconds of host time, which does not
  scale with the clock, so slower kernels lengthen the phase (a fluid: work flows continuously);
- arrival phases: work arrives as requests of request_s seconds of kernel time at default settings,
  evenly spaced over the phase's seconds (the first at the phase's start). The GPU serves them in
  arrival order; what it has not finished when the phase ends carries over as a backlog, served
  before any later work. Each request's arrival and completion time is kept, so that evaluation can
  measure request latency (never the controller: it sees only what NVML shows).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .trace import Phase

_EPS = 1e-12


@dataclass
class StepActivity:
    """What the GPU did during one step: fractions of the step, 0..1."""

    util: float = 0.0  # kernel running
    activity: float = 0.0  # kernel time weighted by switching intensity
    dram: float = 0.0  # DRAM bandwidth utilization


@dataclass
class Requests:
    """Every request of the arrival phases, in arrival order (the order they are served in)."""

    arrival_s: list[float] = field(default_factory=list)
    work_s: list[float] = field(default_factory=list)  # kernel time at default settings
    done_s: list[float] = field(default_factory=list)  # completion time; nan until done


class Workload:
    """loop=True plays the phase list forever (the daemon's --sim); requests are then not recorded,
    so that memory stays bounded."""

    def __init__(self, phases: list[Phase], f_def: list[float], loop: bool = False):
        if len(phases) != len(f_def):
            raise ValueError("one default clock per phase")
        self.phases = phases
        self.f_def = f_def
        self.loop = loop
        self.total_work = sum(p.seconds * p.busy for p in phases)
        self.work_done = 0.0
        self.passes = 0  # completed plays of the whole phase list
        self.idx = 0
        self.elapsed_in_phase = 0.0
        self.serial_left = self._serial_work(0)
        self.backlog: deque[list] = deque()  # [phase index, work left, request number or -1]
        self.done = False
        self.now_s = 0.0
        self.work_per_clock = [0.0] * len(phases)  # per play: sum of work done / clock, for calibration
        self.next_request = 0  # of the current arrival phase
        self.requests = Requests()

    def _serial_work(self, idx: int) -> float:
        p = self.phases[idx]
        return p.seconds * p.busy if p.slack == "serial" else 0.0

    def current_phase(self) -> Phase | None:
        if self.done:
            return None
        if self.idx >= len(self.phases):
            return self.phases[self.backlog[0][0]] if self.backlog else None
        return self.phases[self.idx]

    def _slow(self, idx: int, f: float) -> float:
        return self.phases[idx].kernel_stretch(f, self.f_def[idx])

    def _request_plan(self, p: Phase) -> tuple[int, float]:
        """(requests in one play of arrival phase p, seconds between them)."""
        n = max(1, round(p.seconds * p.busy / p.request_s))
        return n, p.seconds / n

    def _next_phase(self) -> None:
        self.idx += 1
        self.elapsed_in_phase = 0.0
        self.next_request = 0
        if self.idx >= len(self.phases):
            self.idx = len(self.phases)  # past the end: only the backlog is left
            return
        self.serial_left = self._serial_work(self.idx)

    def _restart(self) -> None:
        self.passes += 1
        self.idx = 0
        self.elapsed_in_phase = 0.0
        self.next_request = 0
        self.serial_left = self._serial_work(0)

    def _arrive(self, p: Phase, n: int) -> None:
        work = p.seconds * p.busy / n
        number = -1
        if not self.loop:
            number = len(self.requests.arrival_s)
            self.requests.arrival_s.append(self.now_s)
            self.requests.work_s.append(work)
            self.requests.done_s.append(math.nan)
        self.backlog.append([self.idx, work, number])
        self.next_request += 1

    def _account(self, out: StepActivity, idx: int, kernel_s: float, s: float, f: float) -> None:
        p = self.phases[idx]
        self.work_per_clock[idx] += kernel_s / s / f
        out.util += kernel_s
        out.activity += kernel_s * p.intensity
        out.dram += kernel_s * p.dram / s

    def _drain_backlog(self, budget: float, f: float, out: StepActivity) -> float:
        """Serve the backlog at full speed for up to budget seconds from now_s; return time used
        (now_s is not moved: the caller does that)."""
        used = 0.0
        while self.backlog and budget - used > _EPS:
            idx, work, number = self.backlog[0]
            s = self._slow(idx, f)
            need = work * s
            take = min(need, budget - used)
            done = take / s
            self._account(out, idx, take, s, f)
            self.work_done += done
            used += take
            if take >= need - _EPS:
                self.backlog.popleft()
                if number >= 0:
                    self.requests.done_s[number] = self.now_s + used
            else:
                self.backlog[0][1] = work - done
        return used

    def advance(self, dt: float, f: float) -> StepActivity:
        """Run dt seconds at SM clock f; returns the step's activity as fractions of dt."""
        out = StepActivity()
        t = 0.0
        while dt - t > _EPS and not self.done:
            if self.idx >= len(self.phases):
                if self.backlog:
                    used = self._drain_backlog(dt - t, f, out)
                    t += used
                    self.now_s += used
                    continue
                if self.loop:
                    self._restart()
                    continue
                self.done = True
                break
            p = self.phases[self.idx]
            if p.slack == "arrival":
                n, interval = self._request_plan(p)
                if self.next_request < n and self.elapsed_in_phase >= self.next_request * interval - _EPS:
                    self._arrive(p, n)
                    continue
                chunk = min(dt - t, p.seconds - self.elapsed_in_phase)
                if self.next_request < n:
                    chunk = min(chunk, self.next_request * interval - self.elapsed_in_phase)
                self._drain_backlog(chunk, f, out)
                t += chunk
                self.now_s += chunk
                self.elapsed_in_phase += chunk
                if p.seconds - self.elapsed_in_phase <= _EPS:
                    self._next_phase()
            else:
                if self.backlog:
                    used = self._drain_backlog(dt - t, f, out)
                    t += used
                    self.now_s += used
                    continue
                s = self._slow(self.idx, f)
                per_work = s + (1.0 - p.busy) / p.busy
                work = min(self.serial_left, (dt - t) / per_work)
                self._account(out, self.idx, work * s, s, f)
                self.work_done += work
                self.serial_left -= work
                t += work * per_work
                self.now_s += work * per_work
                if self.serial_left <= _EPS * max(1.0, p.seconds):
                    self.serial_left = 0.0
                    self._next_phase()
        inv = 1.0 / dt
        out.util *= inv
        out.activity *= inv
        out.dram *= inv
        return out
