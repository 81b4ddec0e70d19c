"""The device abstraction: one GPU behind one backend (nvml or sim).

A backend implements small primitives (read a knob, write a knob, sample); the logic that uses
them (save, apply, verify, restore) is written once in actuation.py, so that the NVML backend and
the simulated GPU go through exactly the same safety code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .settings import DeviceSettings, Limits
from .telemetry import GpuInfo, Sample

# get_locked_clocks() answer when the backend cannot read the lock (NVML has no getter).
UNKNOWN_LOCK = "unknown"


class Device(ABC):
    """One GPU. All methods may raise governor.errors.DeviceError subclasses."""

    info: GpuInfo

    @abstractmethod
    def limits(self) -> Limits:
        """What may be set: supported clocks, power-limit range, thermal thresholds, capabilities."""

    @abstractmethod
    def sample(self) -> Sample:
        """Read every sensor once."""

    @abstractmethod
    def get_power_limit_w(self) -> float:
        """The power limit currently set (the management limit, not the enforced one)."""

    @abstractmethod
    def get_locked_clocks(self) -> tuple[int, int] | None | str:
        """(min, max) of a current SM clock lock, None when unlocked, UNKNOWN_LOCK if unreadable."""

    @abstractmethod
    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None: ...

    @abstractmethod
    def reset_locked_clocks(self) -> None: ...

    @abstractmethod
    def set_power_limit_w(self, watts: float) -> None: ...

    @abstractmethod
    def restore_handle(self) -> dict:
        """What `govd --restore` needs to reopen this GPU without the daemon (JSON-serialisable)."""

    def read_settings(self) -> DeviceSettings:
        lock = self.get_locked_clocks()
        if lock == UNKNOWN_LOCK:
            return DeviceSettings(power_limit_w=self.get_power_limit_w(), locked_clocks_mhz=None,
                                  clocks_known=False)
        return DeviceSettings(power_limit_w=self.get_power_limit_w(), locked_clocks_mhz=lock)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources."""
