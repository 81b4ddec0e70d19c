"""`ondemand`: the Linux cpufreq ondemand governor, applied to the SM clock (a peer for comparison).

As in drivers/cpufreq/cpufreq_ondemand.c (od_update): when the load over the last sampling period
is above up_threshold (80%), jump to the maximum frequency; otherwise choose a frequency
proportional to the load, freq = min + load * (max - min) / 100 (the formula since Linux 4.7).
Load here is NVML's GPU utilization, the share of time a kernel ran.
"""

from __future__ import annotations

from ...config_keys import Key
from ...controllers.base import NO_CONTEXT, Controller, TickContext
from ...settings import Setpoint
from ...telemetry import Sample


class OndemandController(Controller):
    name = "ondemand"
    PARAMS = {
        "up_threshold": Key(float, 80.0, lo=1.0, hi=100.0, doc="load (percent) above which the clock goes to max"),
    }

    def __init__(self, params, limits):
        super().__init__(params, limits)
        self.last = float(limits.sm_clock_max_mhz)

    def decide(self, sample: Sample, context: TickContext = NO_CONTEXT) -> Setpoint:
        lim = self.limits
        load = sample.gpu_util_pct
        if load > self.params["up_threshold"]:
            self.last = float(lim.sm_clock_max_mhz)
            return Setpoint()
        f = lim.sm_clock_min_mhz + load * (lim.sm_clock_max_mhz - lim.sm_clock_min_mhz) / 100.0
        self.last = f
        return Setpoint(sm_clock_min_mhz=lim.sm_clock_min_mhz, sm_clock_max_mhz=lim.snap_clock(f))

    def status(self) -> dict:
        return {"clock_mhz": round(self.last, 1)}
