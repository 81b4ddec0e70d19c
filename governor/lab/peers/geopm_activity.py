"""`geopm-activity`: GEOPM's gpu_activity agent (a peer for comparison).

From GEOPM's documentation of the gpu_activity agent: each control interval it requests
    f = f_e + (f_max - f_e) * (GPU_CORE_ACTIVITY / GPU_UTILIZATION)
where GPU_CORE_ACTIVITY is the SM activity (on NVIDIA, DCGM's SM_ACTIVE; here NVML GPM's SM
utilization) and GPU_UTILIZATION is the share of time a kernel ran, so memory-bound kernels (low SM
activity while busy) get lower clocks. f_e is the GPU's energy-efficient frequency, found by an
offline sweep (GEOPM ships it per system as GPU_CORE_FREQUENCY_EFFICIENT; here the `fe_mhz` param).
The phi knob biases the range: phi 0.5 is neutral; below 0.5 raises f_e toward f_max, above 0.5
lowers f_max toward f_e. When the GPU is idle the agent requests f_e. Without SM activity (GPUs
without GPM) the ratio is taken as 1, so the agent runs at f_max while busy.
"""

from __future__ import annotations

from ...config_keys import Key
from ...controllers.base import NO_CONTEXT, Controller, TickContext
from ...settings import Setpoint
from ...telemetry import Sample


class GeopmActivityController(Controller):
    name = "geopm-activity"
    PARAMS = {
        "fe_mhz": Key(int, None, lo=0, hi=10000, optional=True,
                      doc="energy-efficient SM clock from an offline sweep; absent: 60% of f_max"),
        "phi": Key(float, 0.5, lo=0.0, hi=1.0, doc="0 performance-biased, 0.5 neutral, 1 energy-biased"),
    }

    def __init__(self, params, limits):
        super().__init__(params, limits)
        f_max = float(limits.sm_clock_max_mhz)
        fe = float(self.params["fe_mhz"] or 0.6 * f_max)
        fe = min(f_max, max(float(limits.sm_clock_min_mhz), fe))
        phi = self.params["phi"]
        if phi < 0.5:
            fe = fe + (f_max - fe) * (0.5 - phi) * 2.0
        elif phi > 0.5:
            f_max = f_max - (f_max - fe) * (phi - 0.5) * 2.0
        self.fe, self.f_top = fe, f_max
        self.last = f_max

    def decide(self, sample: Sample, context: TickContext = NO_CONTEXT) -> Setpoint:
        util = sample.gpu_util_pct
        if util <= 0:
            ratio = 0.0
        elif sample.sm_activity_pct is None:
            ratio = 1.0
        else:
            ratio = min(1.0, sample.sm_activity_pct / util)
        f = self.fe + (self.f_top - self.fe) * ratio
        self.last = f
        snapped = self.limits.snap_clock(f)
        if snapped >= self.limits.sm_clock_max_mhz:
            return Setpoint()
        return Setpoint(sm_clock_min_mhz=self.limits.sm_clock_min_mhz, sm_clock_max_mhz=snapped)

    def status(self) -> dict:
        return {"fe_mhz": round(self.fe), "clock_mhz": round(self.last, 1)}
