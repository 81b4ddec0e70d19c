"""A fake `pynvml` module that answers like recorded A100 and H100 GPUs.

Values follow public `nvidia-smi -q` dumps (calibration.md). Errors are raised the way pynvml
raises them: an NVMLError whose `.value` is the NVML return code. `fail` maps a function name to
the error code it should raise, so NotSupported and NoPermission answers can be tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    def __init__(self, value):
        self.value = value
        super().__init__(f"NVML error {value}")


def _clocks(lo, hi, step):
    return list(range(hi, lo - 1, -step))  # NVML lists clocks in descending order


@dataclass
class FakeGpu:
    name: str
    uuid: str
    bus_id: str
    sm_clocks: list
    mem_clock: int
    pl_min_mw: int
    pl_max_mw: int
    pl_default_mw: int
    slowdown_c: int
    shutdown_c: int
    gpm: bool
    mig: bool = False
    pl_mw: int = 0
    locked: tuple | None = None
    util: tuple = (87, 41)
    power_mw: int = 312_000
    instant_mw: int = 318_500
    energy_mj: int = 123_456_789
    temp_c: int = 61
    sm_clock: int = 1410
    reasons: int = 0x4
    fail: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def __post_init__(self):
        self.pl_mw = self.pl_mw or self.pl_default_mw


def a100() -> FakeGpu:
    return FakeGpu(name="NVIDIA A100-SXM4-80GB", uuid="GPU-a100a100-0000-1111-2222-333344445555",
                   bus_id="00000000:07:00.0", sm_clocks=_clocks(210, 1410, 15), mem_clock=1593,
                   pl_min_mw=100_000, pl_max_mw=400_000, pl_default_mw=400_000, slowdown_c=89, shutdown_c=92,
                   gpm=False, sm_clock=1410)


def h100() -> FakeGpu:
    return FakeGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-h100h100-0000-1111-2222-333344445555",
                   bus_id="00000000:18:00.0", sm_clocks=_clocks(345, 1980, 15), mem_clock=2619,
                   pl_min_mw=200_000, pl_max_mw=700_000, pl_default_mw=700_000, slowdown_c=87, shutdown_c=92,
                   gpm=True, sm_clock=1575, power_mw=695_000, instant_mw=702_000)


class FakeNvml:
    """Module-like object: pass it as NvmlSystem(nvml=FakeNvml([...]))."""

    NVMLError = NVMLError
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_GPM_METRICS_GET_VERSION = 1
    NVML_GPM_METRIC_SM_UTIL = 2
    NVML_GPM_METRIC_DRAM_BW_UTIL = 10

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None):
        self.gpus = gpus
        self.init_error = init_error
        self.initialised = False
        for name, value in globals().items():
            if name.startswith("NVML_ERROR_") or name == "NVML_SUCCESS":
                setattr(self, name, value)

    # ----- plumbing ----------------------------------------------------------------------------
    def _gpu(self, handle) -> FakeGpu:
        return self.gpus[handle]

    def _check(self, handle, fn):
        gpu = self._gpu(handle)
        gpu.calls.append(fn)
        code = gpu.fail.get(fn)
        if code is not None:
            raise NVMLError(code)
        return gpu

    def nvmlInit(self):
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self):
        self.initialised = False

    def nvmlSystemGetDriverVersion(self):
        return "550.54.15"

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        if not 0 <= i < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for i, g in enumerate(self.gpus):
            if g.uuid == uuid:
                return i
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetIndex(self, h):
        return h

    # ----- identity ----------------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, h):
        return self._check(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, h):
        return self._check(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=self._check(h, "nvmlDeviceGetPciInfo").bus_id.encode())

    def nvmlDeviceGetMigMode(self, h):
        g = self._check(h, "nvmlDeviceGetMigMode")
        return (1, 1) if g.mig else (0, 0)

    # ----- limits ------------------------------------------------------------------------------
    def nvmlDeviceGetSupportedMemoryClocks(self, h):
        return [self._check(h, "nvmlDeviceGetSupportedMemoryClocks").mem_clock]

    def nvmlDeviceGetSupportedGraphicsClocks(self, h, mem):
        g = self._check(h, "nvmlDeviceGetSupportedGraphicsClocks")
        if mem != g.mem_clock:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return list(g.sm_clocks)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        g = self._check(h, "nvmlDeviceGetPowerManagementLimitConstraints")
        return (g.pl_min_mw, g.pl_max_mw)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        return self._check(h, "nvmlDeviceGetPowerManagementDefaultLimit").pl_default_mw

    def nvmlDeviceGetTemperatureThreshold(self, h, which):
        g = self._check(h, "nvmlDeviceGetTemperatureThreshold")
        return g.slowdown_c if which == self.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN else g.shutdown_c

    def nvmlGpmQueryDeviceSupport(self, h):
        g = self._check(h, "nvmlGpmQueryDeviceSupport")
        if not g.gpm:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(isSupportedDevice=1)

    # ----- sensors -----------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, h):
        g = self._check(h, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=g.util[0], memory=g.util[1])

    def nvmlDeviceGetPowerUsage(self, h):
        return self._check(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetFieldValues(self, h, fields):
        g = self._check(h, "nvmlDeviceGetFieldValues")
        return [SimpleNamespace(fieldId=f, nvmlReturn=0, value=SimpleNamespace(uiVal=g.instant_mw)) for f in fields]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self._check(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetTemperature(self, h, sensor):
        return self._check(h, "nvmlDeviceGetTemperature").temp_c

    def nvmlDeviceGetClockInfo(self, h, which):
        g = self._check(h, "nvmlDeviceGetClockInfo")
        return g.sm_clock if which == self.NVML_CLOCK_SM else g.mem_clock

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return self._check(h, "nvmlDeviceGetPowerManagementLimit").pl_mw

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._check(h, "nvmlDeviceGetCurrentClocksEventReasons").reasons

    # GPM: samples are counters; metrics are the difference between two of them
    def nvmlGpmSampleAlloc(self):
        return SimpleNamespace(taken=None)

    def nvmlGpmSampleGet(self, h, sample):
        self._check(h, "nvmlGpmSampleGet")
        sample.taken = h
        return sample

    def nvmlGpmSampleFree(self, sample):
        return None

    def c_nvmlGpmMetricsGet_t(self):
        return SimpleNamespace(version=0, numMetrics=0, sample1=None, sample2=None,
                               metrics=[SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(4)])

    def nvmlGpmMetricsGet(self, req):
        for m in req.metrics[: req.numMetrics]:
            m.value = 72.5 if m.metricId == self.NVML_GPM_METRIC_SM_UTIL else 38.0
        return req

    # ----- writes ------------------------------------------------------------------------------
    def nvmlDeviceSetGpuLockedClocks(self, h, lo, hi):
        g = self._check(h, "nvmlDeviceSetGpuLockedClocks")
        if g.mig:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        g.locked = (lo, hi)

    def nvmlDeviceResetGpuLockedClocks(self, h):
        self._check(h, "nvmlDeviceResetGpuLockedClocks").locked = None

    def nvmlDeviceSetPowerManagementLimit(self, h, mw):
        g = self._check(h, "nvmlDeviceSetPowerManagementLimit")
        if not g.pl_min_mw <= mw <= g.pl_max_mw:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        g.pl_mw = mw
