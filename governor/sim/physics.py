"""The simulated GPU's physics: voltage/frequency curve, power, and steady states.

Power follows the form calibration.md suggests (Guerreiro HPCA'18):
    P = base + leak(V, T) + mem·dram + (clk + dyn·activity)·(f/f_max)·(V/V_max)²
with V held at a floor below a knee clock and rising linearly above it, so power is nearly linear in
f at low clocks and steeply super-linear near f_max. Leakage grows with voltage and temperature.
These functions are ground truth: the simulator and the evaluation use them, controllers never do.
"""

from __future__ import annotations

from .spec import GpuSpec


def voltage(spec: GpuSpec, f_mhz: float) -> float:
    if f_mhz <= spec.v_knee_mhz:
        return spec.v_min
    slope = (spec.v_max - spec.v_min) / (spec.f_max - spec.v_knee_mhz)
    return spec.v_min + slope * (f_mhz - spec.v_knee_mhz)


def power_w(spec: GpuSpec, f_mhz: float, activity: float, dram: float, temp_c: float) -> float:
    """Board power at clock f with SM activity (busy × intensity) and DRAM utilization (0..1)."""
    v = voltage(spec, f_mhz)
    leak = spec.leak_w * (v / spec.v_min) * (1.0 + spec.leak_per_c * (temp_c - spec.leak_ref_c))
    scale = (f_mhz / spec.f_max) * (v / spec.v_max) ** 2
    return spec.base_w + max(0.0, leak) + spec.mem_w * dram + (spec.clk_w + spec.dyn_w * activity) * scale


def steady_temp_c(spec: GpuSpec, power: float, ambient_c: float) -> float:
    return ambient_c + power * spec.thermal_r_c_per_w


def max_clock_under_cap(spec: GpuSpec, cap_w: float, activity: float, dram: float, temp_c: float,
                        ceiling_mhz: float) -> int:
    """Highest supported clock <= ceiling whose power stays within cap_w (the floor clock if none)."""
    clocks = spec.sm_clocks_mhz
    lo, hi = 0, len(clocks) - 1
    while hi > 0 and clocks[hi] > ceiling_mhz:
        hi -= 1
    if power_w(spec, clocks[hi], activity, dram, temp_c) <= cap_w:
        return clocks[hi]
    # power is monotonic in f: binary search the last clock under the cap
    if power_w(spec, clocks[0], activity, dram, temp_c) > cap_w:
        return clocks[0]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_w(spec, clocks[mid], activity, dram, temp_c) <= cap_w:
            lo = mid
        else:
            hi = mid
    return clocks[lo]


def default_clock_mhz(spec: GpuSpec, busy: float, intensity: float, dram: float, ambient_c: float) -> int:
    """f_def: the clock firmware boost settles at for a phase under default settings.

    Found as a fixed point: the clock under the default cap at the temperature that clock's power
    produces. Used to convert a phase's default-settings kernel time into work.
    """
    temp = ambient_c + 40.0
    f = spec.f_max
    for _ in range(20):
        f_new = max_clock_under_cap(spec, spec.power_limit_default_w, busy * intensity, busy * dram, temp,
                                    spec.f_max)
        temp = min(steady_temp_c(spec, power_w(spec, f_new, busy * intensity, busy * dram, temp), ambient_c),
                   spec.temp_slowdown_c)
        if f_new == f:
            break
        f = f_new
    return f
