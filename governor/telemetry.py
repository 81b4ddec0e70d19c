"""What a GPU reports, as NVML reports it: clock-event reasons, identity, one sample of every
sensor, and what a controller tells the ledger about a sample's work at default settings.

Every backend, controller, the envelope and the CLI speak these types, so that a controller that
works on the simulator sees exactly the fields a real GPU would give it through NVML.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import asdict, dataclass

REASON_GPU_IDLE = 0x1
REASON_USER_DEFINED_CLOCKS = 0x2
REASON_SW_POWER_CAP = 0x4
REASON_HW_SLOWDOWN = 0x8
REASON_SYNC_BOOST = 0x10
REASON_SW_THERMAL = 0x20
REASON_HW_THERMAL = 0x40
REASON_HW_POWER_BRAKE = 0x80
REASON_DISPLAY_CLOCK = 0x100
REASONS_ALL = 0x1FF
THERMAL_REASONS = REASON_SW_THERMAL | REASON_HW_THERMAL | REASON_HW_SLOWDOWN

REASON_NAMES = {
    REASON_GPU_IDLE: "idle",
    REASON_USER_DEFINED_CLOCKS: "locked-clocks",
    REASON_SW_POWER_CAP: "power-cap",
    REASON_HW_SLOWDOWN: "hw-slowdown",
    REASON_SYNC_BOOST: "sync-boost",
    REASON_SW_THERMAL: "sw-thermal",
    REASON_HW_THERMAL: "hw-thermal",
    REASON_HW_POWER_BRAKE: "power-brake",
    REASON_DISPLAY_CLOCK: "display-clock",
}


def reason_names(mask: int) -> list[str]:
    """Readable names of the clock-event reasons set in an NVML mask."""
    return [name for bit, name in REASON_NAMES.items() if mask & bit]


@dataclass(frozen=True)
class GpuInfo:
    """Identity of one GPU: stable across restarts (uuid), and how operators name it (index)."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str
    backend: str  # "nvml" or "sim"


@dataclass(frozen=True)
class Sample:
    """What one GPU reports at one instant: only fields that NVML can report.

    Optional fields are None where the GPU does not have the sensor (no GPM before Hopper, no
    instant power field on old drivers, no energy counter before Volta).
    """

    time_s: float  # monotonic time of the reading, seconds
    gpu_util_pct: float  # percent of the sample period with a kernel running
    mem_util_pct: float  # percent of the sample period device memory was read or written
    power_w: float  # nvmlDeviceGetPowerUsage: a 1 s average on Ampere+ (instant on A100)
    temp_c: float
    sm_clock_mhz: float
    mem_clock_mhz: float
    power_limit_w: float  # enforced power limit
    clock_event_reasons: int = 0
    power_instant_w: float | None = None
    energy_mj: int | None = None  # total energy counter since driver load
    sm_activity_pct: float | None = None  # GPM SM utilization (Hopper+)
    dram_bw_pct: float | None = None  # GPM DRAM bandwidth utilization (Hopper+)
    # mean power since an earlier reading, from the energy counter's difference: not an NVML field
    # but derived from one (CounterPower fills it in); None without a counter or while it is stale
    power_counter_w: float | None = None

    @property
    def progress_pct(self) -> float:
        """DRAM activity, the progress proxy shared by the model controller and the ledger: GPM's
        bandwidth where the GPU has it (finer), else NVML's memory utilization."""
        return self.dram_bw_pct if self.dram_bw_pct is not None else self.mem_util_pct

    @property
    def power_now_w(self) -> float:
        """The power of the interval the other readings describe: the energy counter's mean over it
        where there is one (exact, and over the same stretch as utilization and GPM), else the
        instant field where the driver has it, else the 1 s average."""
        if self.power_counter_w is not None:
            return self.power_counter_w
        return self.power_instant_w if self.power_instant_w is not None else self.power_w

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DefaultReference:
    """What a controller knows of a sample's work at default settings, for the ledger.

    power_w and progress are the matching phase's mean power and DRAM progress measured at default
    settings; rel_error is the relative standard error of their ratio. known=False means the
    controller cannot tell what this sample's work would have cost at default (a phase change it
    has not measured yet), so the ledger claims no saving for it.
    """

    power_w: float = 0.0
    progress: float = 0.0
    rel_error: float = 0.0
    known: bool = True
    work_ratio: float | None = None  # the phase model's work per second here relative to default, where
    #                                  the progress proxy is too coarse to show it (integer memory utilization)
    source: Hashable = None  # which measurement this is: samples priced by one share its error


UNKNOWN_REFERENCE = DefaultReference(known=False)
