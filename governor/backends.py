"""Opening GPUs: simulated ones for demos and tests, NVML ones for real GPUs, and either kind again
from an originals.json handle when `govd --restore` runs without the daemon."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .clock import Clock
from .device import Device
from .errors import DeviceError
from .nvml_backend import NvmlSystem

if TYPE_CHECKING:
    from .sim.trace import Trace


def open_sim_devices(gpus: list[str], clock: Clock, runtime_dir: Path, trace: Trace | None,
                     loop: bool = True) -> list[Device]:
    """One simulated GPU per name (h100-sxm, ...); indexes in the order given."""
    from .sim.device import SimDevice, sim_state_dir  # noqa: PLC0415 - an NVML host never loads the simulator
    from .sim.spec import load_spec  # noqa: PLC0415

    state_dir = sim_state_dir(runtime_dir)
    return [SimDevice(load_spec(name), i, clock, state_dir, trace=trace, loop=loop) for i, name in enumerate(gpus)]


def open_nvml_devices(nvml=None) -> tuple[NvmlSystem, list[Device]]:
    system = NvmlSystem(nvml)
    return system, list(system.devices())


class RestoreOpener:
    """Opens devices from originals.json handles; initialises NVML only if an NVML GPU is listed."""

    def __init__(self, nvml=None):
        self._nvml_module = nvml
        self._system: NvmlSystem | None = None

    def open(self, handle: dict) -> Device:
        backend = handle.get("backend")
        if backend == "sim":
            from .sim.device import SimDriverOnly  # noqa: PLC0415 - an NVML host never loads the simulator

            return SimDriverOnly(handle)
        if backend == "nvml":
            if self._system is None:
                self._system = NvmlSystem(self._nvml_module)
            return self._system.by_uuid(handle["uuid"])
        raise DeviceError(f"unknown backend {backend!r} in originals.json")

    def close(self) -> None:
        if self._system is not None:
            self._system.close()
