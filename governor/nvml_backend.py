"""The NVML backend: real NVIDIA GPUs through nvidia-ml-py (module `pynvml`).

The module is injected (`NvmlSystem(nvml=...)`) so the same code is tested against a fake that
answers like recorded A100 and H100 GPUs, NotSupported and NoPermission answers included.

Semantics that shape this code (calibration.md, NVML docs):
- nvmlDeviceGetPowerUsage is a 1 s average on Ampere+ except GA100; the instant value comes from
  the field NVML_FI_DEV_POWER_INSTANT where the driver has it.
- NVML has no getter for locked clocks, so a lock found at start is unknown: restore resets the
  lock, which is the state after every driver load. Within a session govd knows what it set.
- Locked clocks need Volta+, root or CAP_SYS_ADMIN, and are not available on MIG partitions.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from .device import UNKNOWN_LOCK, Device
from .errors import (
    DeviceError,
    DeviceTimeoutError,
    GpuLostError,
    NoDriverError,
    NoPermissionError,
    NotSupportedError,
)
from .settings import Capabilities, Limits
from .telemetry import GpuInfo, Sample

_init_lock = threading.Lock()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSystem:
    """NVML initialised once per process; hands out one NvmlDevice per GPU."""

    def __init__(self, nvml: Any = None):
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as exc:
                raise NoDriverError(f"the nvidia-ml-py package is not installed: {exc}") from None
        self.nvml = nvml
        with _init_lock:
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as exc:
                raise NoDriverError(str(exc)) from None
            except OSError as exc:  # libnvidia-ml.so missing on some pynvml versions
                raise NoDriverError(str(exc)) from None

    def count(self) -> int:
        return int(call(self.nvml, "nvmlDeviceGetCount", None, "count GPUs"))

    def devices(self) -> list[NvmlDevice]:
        return [NvmlDevice(self.nvml, i) for i in range(self.count())]

    def by_uuid(self, uuid: str) -> NvmlDevice:
        handle = call(self.nvml, "nvmlDeviceGetHandleByUUID", None, f"find GPU {uuid}", uuid)
        index = int(call(self.nvml, "nvmlDeviceGetIndex", None, f"index of GPU {uuid}", handle))
        return NvmlDevice(self.nvml, index, handle=handle)

    def driver_version(self) -> str:
        return _text(call(self.nvml, "nvmlSystemGetDriverVersion", None, "driver version"))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # shutting down: nothing useful to do with an error
            self.nvml.nvmlShutdown()


def call(nvml: Any, fn: str, device: NvmlDevice | None, what: str, *args):
    """Call an NVML function and map its error to a message an operator can act on."""
    try:
        return getattr(nvml, fn)(*args)
    except nvml.NVMLError as exc:
        code = getattr(exc, "value", None)
        if code == nvml.NVML_ERROR_NOT_SUPPORTED:
            why = "MIG partitions cannot lock clocks" if device is not None and device.is_mig else ""
            raise NotSupportedError(what, why) from None
        if code == nvml.NVML_ERROR_NO_PERMISSION:
            raise NoPermissionError(what) from None
        if code == nvml.NVML_ERROR_GPU_IS_LOST:
            raise GpuLostError(what) from None
        if code in (nvml.NVML_ERROR_DRIVER_NOT_LOADED, nvml.NVML_ERROR_LIBRARY_NOT_FOUND):
            raise NoDriverError(what) from None
        if code == nvml.NVML_ERROR_TIMEOUT:
            raise DeviceTimeoutError(f"{what}: NVML timed out") from None
        raise DeviceError(f"{what}: NVML error: {exc}") from None


class NvmlDevice(Device):
    def __init__(self, nvml: Any, index: int, handle: Any = None):
        self.nvml = nvml
        self.is_mig = False
        self.handle = handle if handle is not None else call(
            nvml, "nvmlDeviceGetHandleByIndex", None, f"GPU {index}", index)
        h = self.handle
        pci = call(nvml, "nvmlDeviceGetPciInfo", self, f"GPU {index} PCI info", h)
        self.info = GpuInfo(
            index=index,
            uuid=_text(call(nvml, "nvmlDeviceGetUUID", self, f"GPU {index} UUID", h)),
            name=_text(call(nvml, "nvmlDeviceGetName", self, f"GPU {index} name", h)),
            pci_bus_id=_text(getattr(pci, "busId", "")),
            backend="nvml",
        )
        self.is_mig = self._probe(lambda: call(nvml, "nvmlDeviceGetMigMode", self, "MIG mode", h)[0] == 1, False)
        self._gpm_prev = None
        self._limits: Limits | None = None

    def _what(self, action: str) -> str:
        return f"GPU {self.info.index} ({self.info.uuid}): {action}" if hasattr(self, "info") else action

    def _call(self, fn: str, action: str, *args):
        return call(self.nvml, fn, self, self._what(action), self.handle, *args)

    @staticmethod
    def _probe(fn, fallback):
        try:
            return fn()
        except NotSupportedError:
            return fallback
        except DeviceError:
            return fallback

    # ----- limits ------------------------------------------------------------------------------
    def limits(self) -> Limits:
        if self._limits is not None:
            return self._limits
        n = self.nvml
        mem = int(self._call("nvmlDeviceGetClockInfo", "memory clock", n.NVML_CLOCK_MEM))
        try:
            clocks = self._call("nvmlDeviceGetSupportedGraphicsClocks", "supported SM clocks", mem)
        except DeviceError:
            # the current memory clock may be an idle one that has no table; use the highest
            mem = int(max(self._call("nvmlDeviceGetSupportedMemoryClocks", "supported memory clocks")))
            clocks = self._call("nvmlDeviceGetSupportedGraphicsClocks", "supported SM clocks", mem)
        lo_mw, hi_mw = self._probe(lambda: self._call("nvmlDeviceGetPowerManagementLimitConstraints",
                                                      "power limit range"), (None, None))
        default_mw = self._probe(lambda: self._call("nvmlDeviceGetPowerManagementDefaultLimit",
                                                    "default power limit"), None)
        slowdown = self._probe(lambda: self._call("nvmlDeviceGetTemperatureThreshold", "slowdown temperature",
                                                  n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN), 85)
        shutdown = self._probe(lambda: self._call("nvmlDeviceGetTemperatureThreshold", "shutdown temperature",
                                                  n.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN), 95)
        has_energy = self._probe(lambda: self._call("nvmlDeviceGetTotalEnergyConsumption", "energy") is not None,
                                 False)
        has_instant = self._instant_power_mw() is not None
        gpm = self._probe(lambda: bool(self._call("nvmlGpmQueryDeviceSupport", "GPM support").isSupportedDevice),
                          False)
        can_pl = lo_mw is not None and default_mw is not None
        current_mw = self._probe(lambda: self._call("nvmlDeviceGetPowerManagementLimit", "power limit"), None)
        default_w = (default_mw or current_mw or 0) / 1000.0
        self._limits = Limits(
            sm_clocks_mhz=tuple(sorted(int(c) for c in clocks)),
            mem_clock_mhz=mem,
            power_limit_min_w=(lo_mw or default_mw or current_mw or 0) / 1000.0,
            power_limit_max_w=(hi_mw or default_mw or current_mw or 0) / 1000.0,
            power_limit_default_w=default_w,
            temp_slowdown_c=float(slowdown),
            temp_shutdown_c=float(shutdown),
            capabilities=Capabilities(can_lock_clocks=not self.is_mig, can_set_power_limit=can_pl,
                                      has_energy_counter=has_energy, has_instant_power=has_instant,
                                      has_gpm=gpm, is_mig=self.is_mig),
        )
        return self._limits

    # ----- sensors -----------------------------------------------------------------------------
    def _instant_power_mw(self) -> float | None:
        n = self.nvml
        field = getattr(n, "NVML_FI_DEV_POWER_INSTANT", None)
        if field is None:
            return None
        try:
            values = self._call("nvmlDeviceGetFieldValues", "instant power", [field])
        except DeviceError:
            return None
        v = values[0]
        if getattr(v, "nvmlReturn", 0) != 0:
            return None
        return float(v.value.uiVal)

    def _gpm(self) -> tuple[float | None, float | None]:
        """SM activity and DRAM bandwidth utilization over the time since the previous sample."""
        n = self.nvml
        try:
            sample = self._call_plain("nvmlGpmSampleAlloc")
            n.nvmlGpmSampleGet(self.handle, sample)
        except (n.NVMLError, DeviceError):
            return None, None
        prev, self._gpm_prev = self._gpm_prev, sample
        if prev is None:
            return None, None
        try:
            req = n.c_nvmlGpmMetricsGet_t()
            req.version = n.NVML_GPM_METRICS_GET_VERSION
            req.numMetrics = 2
            req.sample1, req.sample2 = prev, sample
            req.metrics[0].metricId = n.NVML_GPM_METRIC_SM_UTIL
            req.metrics[1].metricId = n.NVML_GPM_METRIC_DRAM_BW_UTIL
            n.nvmlGpmMetricsGet(req)
            sm = req.metrics[0].value if req.metrics[0].nvmlReturn == 0 else None
            dram = req.metrics[1].value if req.metrics[1].nvmlReturn == 0 else None
            return sm, dram
        except n.NVMLError:
            return None, None
        finally:
            with contextlib.suppress(n.NVMLError):
                n.nvmlGpmSampleFree(prev)

    def _call_plain(self, fn: str, *args):
        return call(self.nvml, fn, self, self._what(fn), *args)

    def sample(self) -> Sample:
        n = self.nvml
        caps = self.limits().capabilities
        util = self._call("nvmlDeviceGetUtilizationRates", "utilization")
        power_mw = self._call("nvmlDeviceGetPowerUsage", "power")
        instant = self._instant_power_mw() if caps.has_instant_power else None
        energy = self._call("nvmlDeviceGetTotalEnergyConsumption", "energy") if caps.has_energy_counter else None
        reasons = self._probe(lambda: self._call("nvmlDeviceGetCurrentClocksEventReasons", "clock event reasons"),
                              None)
        if reasons is None:
            reasons = self._probe(lambda: self._call("nvmlDeviceGetCurrentClocksThrottleReasons",
                                                     "throttle reasons"), 0)
        sm_act, dram_bw = self._gpm() if caps.has_gpm else (None, None)
        return Sample(
            time_s=time.monotonic(),
            gpu_util_pct=float(util.gpu),
            mem_util_pct=float(util.memory),
            power_w=power_mw / 1000.0,
            temp_c=float(self._call("nvmlDeviceGetTemperature", "temperature", n.NVML_TEMPERATURE_GPU)),
            sm_clock_mhz=float(self._call("nvmlDeviceGetClockInfo", "SM clock", n.NVML_CLOCK_SM)),
            mem_clock_mhz=float(self._call("nvmlDeviceGetClockInfo", "memory clock", n.NVML_CLOCK_MEM)),
            power_limit_w=self._call("nvmlDeviceGetPowerManagementLimit", "power limit") / 1000.0,
            clock_event_reasons=int(reasons) & 0x1FF,
            power_instant_w=instant / 1000.0 if instant is not None else None,
            energy_mj=int(energy) if energy is not None else None,
            sm_activity_pct=sm_act,
            dram_bw_pct=dram_bw,
        )

    # ----- knobs -------------------------------------------------------------------------------
    def get_power_limit_w(self) -> float:
        return self._call("nvmlDeviceGetPowerManagementLimit", "read power limit") / 1000.0

    def get_locked_clocks(self) -> str:
        return UNKNOWN_LOCK

    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None:
        if self.is_mig:
            raise NotSupportedError(self._what("lock SM clocks"), "MIG partitions cannot lock clocks")
        self._call("nvmlDeviceSetGpuLockedClocks", f"lock SM clocks {min_mhz}-{max_mhz} MHz", int(min_mhz),
                   int(max_mhz))

    def reset_locked_clocks(self) -> None:
        if self.is_mig:
            return
        self._call("nvmlDeviceResetGpuLockedClocks", "reset SM clock lock")

    def set_power_limit_w(self, watts: float) -> None:
        self._call("nvmlDeviceSetPowerManagementLimit", f"set power limit {watts:g} W", int(round(watts * 1000)))

    def restore_handle(self) -> dict:
        return {"backend": "nvml", "uuid": self.info.uuid, "index": self.info.index,
                "pci_bus_id": self.info.pci_bus_id}
