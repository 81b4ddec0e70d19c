"""Synthetic sample sequences for controller unit tests."""

from governor.settings import Limits
from governor.telemetry import Sample

H100 = Limits(sm_clocks_mhz=tuple(range(345, 1981, 15)), mem_clock_mhz=2619, power_limit_min_w=200,
              power_limit_max_w=700, power_limit_default_w=700, temp_slowdown_c=87, temp_shutdown_c=92)


def sample(t, util=50.0, clock=1980.0, temp=60.0, power=400.0, mem=30.0, energy=None, sm_act=None, dram=None):
    return Sample(time_s=t, gpu_util_pct=util, mem_util_pct=mem, power_w=power, temp_c=temp, sm_clock_mhz=clock,
                  mem_clock_mhz=2619, power_limit_w=700, energy_mj=energy, sm_activity_pct=sm_act, dram_bw_pct=dram)


def ceiling(sp, limits=H100):
    return sp.sm_clock_max_mhz if sp.sm_clock_max_mhz is not None else limits.sm_clock_max_mhz
