"""Specs of the simulated GPUs: one TOML file per GPU model, loaded into a frozen GpuSpec.

The numbers come from ../shared/calibration.md; parameters with no public table are fitted so that
every published row holds, and each spec file says which ones those are.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

BUILTIN = ("h100-sxm", "a100-sxm4", "h200", "v100-sxm2")


@dataclass(frozen=True)
class GpuSpec:
    key: str  # built-in id, e.g. "h100-sxm"
    name: str  # what NVML would call it
    sm_clocks_mhz: tuple[int, ...]
    mem_clock_mhz: int
    power_limit_min_w: float
    power_limit_default_w: float
    power_limit_max_w: float
    # power model: P = base + leak(V, T) + mem * dram + clk * f·V² + dyn * activity * f·V²
    base_w: float
    leak_w: float  # leakage at v_min and ref temperature
    leak_per_c: float  # relative leakage increase per kelvin above leak_ref_c
    leak_ref_c: float
    mem_w: float  # DRAM power at 100% bandwidth
    clk_w: float  # clock-tree power at f_max, v_max (paid whenever the clock runs)
    dyn_w: float  # SM switching power at f_max, v_max, intensity 1, busy 100%
    v_min: float
    v_max: float
    v_knee_mhz: float
    # thermal model: C dT/dt = P - (T - ambient) / R
    thermal_r_c_per_w: float
    thermal_c_j_per_c: float
    temp_slowdown_c: float
    temp_shutdown_c: float
    # sensors
    util_window_s: float
    power_avg_window_s: float
    power_sensor_instant: bool  # nvmlDeviceGetPowerUsage is instantaneous (GA100)
    energy_update_s: float
    power_noise_frac: float
    has_gpm: bool
    has_instant_field: bool
    # firmware
    clock_settle_s: float
    thermal_step_mhz_per_s: float

    @property
    def f_min(self) -> int:
        return self.sm_clocks_mhz[0]

    @property
    def f_max(self) -> int:
        return self.sm_clocks_mhz[-1]


def _clock_table(clocks: dict, source: str) -> tuple[int, ...]:
    if "supported_mhz" in clocks:
        table = sorted({int(c) for c in clocks["supported_mhz"]})
    else:
        lo, hi, step = int(clocks["sm_min_mhz"]), int(clocks["sm_max_mhz"]), float(clocks["sm_step_mhz"])
        table, f = [], float(lo)
        while f <= hi + 1e-6:
            table.append(int(round(f)))
            f += step
        if table[-1] != hi:
            table.append(hi)
    if len(table) < 2:
        raise ConfigError(source, "clocks", "needs at least two supported SM clocks")
    return tuple(table)


def spec_from_dict(data: dict, source: str, key: str) -> GpuSpec:
    try:
        clocks, power, volt = data["clocks"], data["power"], data["voltage"]
        thermal, sensors, fw = data["thermal"], data["sensors"], data.get("firmware", {})
        return GpuSpec(
            key=key,
            name=str(data["name"]),
            sm_clocks_mhz=_clock_table(clocks, source),
            mem_clock_mhz=int(clocks["mem_mhz"]),
            power_limit_min_w=float(power["limit_min_w"]),
            power_limit_default_w=float(power["limit_default_w"]),
            power_limit_max_w=float(power["limit_max_w"]),
            base_w=float(power["base_w"]),
            leak_w=float(power["leak_w"]),
            leak_per_c=float(power["leak_per_c"]),
            leak_ref_c=float(power.get("leak_ref_c", 30.0)),
            mem_w=float(power["mem_w"]),
            clk_w=float(power["clk_w"]),
            dyn_w=float(power["dyn_w"]),
            v_min=float(volt["v_min"]),
            v_max=float(volt["v_max"]),
            v_knee_mhz=float(volt["knee_mhz"]),
            thermal_r_c_per_w=float(thermal["r_c_per_w"]),
            thermal_c_j_per_c=float(thermal["c_j_per_c"]),
            temp_slowdown_c=float(thermal["slowdown_c"]),
            temp_shutdown_c=float(thermal["shutdown_c"]),
            util_window_s=float(sensors.get("util_window_s", 1 / 6)),
            power_avg_window_s=float(sensors.get("power_avg_window_s", 1.0)),
            power_sensor_instant=bool(sensors.get("power_instant", False)),
            energy_update_s=float(sensors.get("energy_update_s", 0.1)),
            power_noise_frac=float(sensors.get("power_noise_frac", 0.01)),
            has_gpm=bool(sensors.get("gpm", False)),
            has_instant_field=bool(sensors.get("instant_field", True)),
            clock_settle_s=float(fw.get("clock_settle_s", 0.025)),
            thermal_step_mhz_per_s=float(fw.get("thermal_step_mhz_per_s", 300.0)),
        )
    except KeyError as exc:
        raise ConfigError(source, str(exc.args[0]), "missing key in GPU spec") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, "", f"bad value in GPU spec: {exc}") from None


def load_spec(name_or_path: str) -> GpuSpec:
    """A built-in GPU by name (h100-sxm, a100-sxm4, h200, v100-sxm2) or a spec file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        with path.open("rb") as fh:
            return spec_from_dict(tomllib.load(fh), str(path), path.stem)
    if name_or_path not in BUILTIN:
        raise ConfigError("--sim", name_or_path,
                          f"unknown simulated GPU; choose one of {', '.join(BUILTIN)} or a spec .toml path")
    res = resources.files("governor.sim").joinpath("specs", f"{name_or_path}.toml")
    with res.open("rb") as fh:
        return spec_from_dict(tomllib.load(fh), f"builtin:{name_or_path}", name_or_path)
