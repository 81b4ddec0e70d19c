"""`zeus-pl`: Zeus's GlobalPowerLimitOptimizer (a peer for comparison).

As described in the Zeus docs and NSDI'23 paper: starting at the maximum power limit and stepping
down by 25 W, run `warmup_s` to let the new limit take effect, then profile for `profile_s`,
measuring energy (NVML's energy counter) and time per unit of work; once every limit down to the
minimum is profiled, pick the one minimizing  eta * E + (1 - eta) * MaxPower * T  (eta = 0.5) and
hold it. Zeus reads progress from the training loop (steps done); so does this controller: it
needs application progress (`observe_app`), which `govctl simulate` supplies from the
workload. It cannot run in the daemon on a GPU whose application does not report progress.
"""

from __future__ import annotations

from ...config_keys import Key
from ...controllers.base import NO_CONTEXT, Controller, TickContext
from ...settings import Setpoint
from ...telemetry import Sample


class ZeusPowerLimitController(Controller):
    name = "zeus-pl"
    evaluation_only = True
    PARAMS = {
        "eta": Key(float, 0.5, lo=0.0, hi=1.0, doc="weight of energy against time in the cost"),
        "step_w": Key(float, 25.0, lo=1.0, hi=500.0, doc="power-limit step while profiling"),
        "warmup_s": Key(float, 2.0, lo=0.0, hi=600.0, doc="time at a new limit before measuring"),
        "profile_s": Key(float, 5.0, lo=0.2, hi=3600.0, doc="measuring time at each limit"),
    }

    def __init__(self, params, limits):
        super().__init__(params, limits)
        top, low, step = limits.power_limit_max_w, limits.power_limit_min_w, self.params["step_w"]
        self.candidates = []
        pl = top
        while pl >= low - 1e-9:
            self.candidates.append(pl)
            pl -= step
        self.index = 0
        self.phase = "warmup"
        self.phase_start: float | None = None
        self.window_start: tuple[float, int, float] | None = None  # time, energy mJ, progress
        self.progress = 0.0
        self.costs: dict[float, float] = {}
        self.chosen: float | None = None

    def observe_app(self, info: dict) -> None:
        """Application progress (Zeus: training steps done; here the simulator's work done, any
        monotonic unit of work), which offline evaluation supplies each tick."""
        self.progress = info["work_done_s"]

    def _limit(self, watts: float) -> Setpoint:
        return Setpoint() if watts >= self.limits.power_limit_default_w else Setpoint(power_limit_w=watts)

    def decide(self, sample: Sample, context: TickContext = NO_CONTEXT) -> Setpoint:
        if self.chosen is not None:
            return self._limit(self.chosen)
        now = sample.time_s
        if self.phase_start is None:
            self.phase_start = now
        current = self.candidates[self.index]
        if self.phase == "warmup" and now - self.phase_start >= self.params["warmup_s"]:
            self.phase, self.phase_start = "profile", now
            self.window_start = (now, sample.energy_mj or 0, self.progress)
        elif self.phase == "profile" and now - self.phase_start >= self.params["profile_s"]:
            t0, e0, w0 = self.window_start
            work = self.progress - w0
            if work > 0 and sample.energy_mj is not None:
                energy_per_work = (sample.energy_mj - e0) / 1000.0 / work
                time_per_work = (now - t0) / work
                eta = self.params["eta"]
                self.costs[current] = eta * energy_per_work + (1 - eta) * self.limits.power_limit_max_w * time_per_work
            self.index += 1
            if self.index >= len(self.candidates):
                self.chosen = min(self.costs, key=self.costs.get) if self.costs else self.limits.power_limit_max_w
                return self._limit(self.chosen)
            self.phase, self.phase_start = "warmup", now
        return self._limit(self.candidates[self.index])

    def status(self) -> dict:
        return {"state": "optimal" if self.chosen is not None else f"{self.phase} {self.candidates[self.index]:g} W",
                "chosen_w": self.chosen, "profiled": len(self.costs)}
