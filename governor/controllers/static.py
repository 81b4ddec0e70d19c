"""`static`: a fixed SM clock range and/or power limit, as an administrator would set by hand.

This is what `nvidia-smi -lgc MIN,MAX` and `nvidia-smi -pl W` do, but through the envelope, with
originals saved and restored.
"""

from __future__ import annotations

from ..config_keys import Key
from ..settings import Setpoint
from ..telemetry import Sample
from .base import NO_CONTEXT, Controller, TickContext


class StaticController(Controller):
    name = "static"
    PARAMS = {
        "sm_clock_min_mhz": Key(int, None, lo=0, hi=10000, optional=True,
                                doc="lowest SM clock to lock; absent: the GPU's minimum"),
        "sm_clock_max_mhz": Key(int, None, lo=0, hi=10000, optional=True,
                                doc="highest SM clock to lock; absent: no clock lock"),
        "power_limit_w": Key(float, None, lo=1, hi=5000, optional=True,
                             doc="power limit in watts; absent: the GPU's default"),
        "power_limit_frac": Key(float, None, lo=0.05, hi=1.0, optional=True,
                                doc="power limit as a fraction of the GPU's maximum (instead of watts)"),
    }

    def __init__(self, params, limits):
        super().__init__(params, limits)
        p = self.params
        lo, hi = p["sm_clock_min_mhz"], p["sm_clock_max_mhz"]
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"sm_clock_min_mhz {lo} > sm_clock_max_mhz {hi}")
        watts = p["power_limit_w"]
        if watts is None and p["power_limit_frac"] is not None:
            watts = p["power_limit_frac"] * limits.power_limit_max_w
        if hi is not None and lo is None:
            lo = limits.sm_clock_min_mhz
        if lo is not None and hi is None:
            hi = limits.sm_clock_max_mhz
        self.setpoint = Setpoint(sm_clock_min_mhz=lo, sm_clock_max_mhz=hi, power_limit_w=watts)

    def decide(self, sample: Sample, context: TickContext = NO_CONTEXT) -> Setpoint:
        return self.setpoint

    def status(self) -> dict:
        return {"mode": "fixed", "setpoint": self.setpoint.to_dict()}
