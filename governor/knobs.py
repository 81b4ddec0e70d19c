"""The writable settings of a GPU as data: each knob a get/set pair with what a setpoint asks of it,
where saved settings keep it, and how closely a reading must match (tuned's plugin idea).

Everything that writes, reads back, restores or watches for another writer loops over KNOBS
(actuation.py, actuator.py), so a new setting (a memory-clock lock, another vendor's power cap)
is one more entry here, not one more branch in six files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .device import UNKNOWN_LOCK, Device
from .settings import Capabilities, DeviceSettings, Limits, Setpoint
from .telemetry import Sample


@dataclass(frozen=True)
class Knob:
    name: str  # as reports and logs name it ("clocks", "power_limit")
    supported: Callable[[Capabilities], bool]
    desired: Callable[[Setpoint, Limits], Any]  # the value the GPU should hold for a setpoint
    saved: Callable[[DeviceSettings], Any]  # the value saved settings hold (UNKNOWN_LOCK where not read)
    read: Callable[[Device], Any]  # the value the GPU holds now (UNKNOWN_LOCK where unreadable)
    observed: Callable[[Sample, Device], Any]  # the value a tick sees, reading the device only if it must
    write: Callable[[Device, Any], None]
    matches: Callable[[Any, Any], bool]  # a reading (have) against what should be (want)
    action: Callable[[Any], str]  # what writing a value does, in words
    label: str = ""  # the setting in words ("power limit")
    show: Callable[[Any], str] = str  # a value in words, with its unit

    reset_value: Any = None  # what a restore writes where the saved value is unknown (the driver's own)

    def readable(self, value: Any) -> bool:
        return value != UNKNOWN_LOCK

    def to_restore(self, settings: DeviceSettings) -> Any:
        value = self.saved(settings)
        return value if self.readable(value) else self.reset_value


def _write_lock(device: Device, lock: tuple[int, int] | None) -> None:
    if lock:
        device.set_locked_clocks(lock[0], lock[1])
    else:
        device.reset_locked_clocks()


SM_LOCK = Knob(
    name="clocks",
    supported=lambda caps: caps.can_lock_clocks,
    desired=lambda sp, limits: sp.lock(limits),
    saved=lambda settings: settings.locked_clocks_mhz if settings.clocks_known else UNKNOWN_LOCK,
    read=lambda device: device.get_locked_clocks(),
    observed=lambda sample, device: device.get_locked_clocks(),
    write=_write_lock,
    matches=lambda have, want: have == want,
    action=lambda lock: f"lock {lock[0]}-{lock[1]} MHz" if lock else "reset clock lock",
    label="clock lock",
)

POWER_LIMIT = Knob(
    name="power_limit",
    supported=lambda caps: caps.can_set_power_limit,
    desired=lambda sp, limits: sp.power(limits),
    saved=lambda settings: settings.power_limit_w,
    read=lambda device: device.get_power_limit_w(),
    observed=lambda sample, device: sample.power_limit_w,
    write=lambda device, watts: device.set_power_limit_w(watts),
    matches=lambda have, want: abs(have - want) <= 0.5,
    action=lambda watts: f"power limit {watts:g} W",
    label="power limit",
    show=lambda watts: f"{watts:g} W",
)

KNOBS: tuple[Knob, ...] = (SM_LOCK, POWER_LIMIT)  # in apply order; restore runs in reverse
KNOB_BY_NAME = {k.name: k for k in KNOBS}


def settings_with(settings: DeviceSettings, values: dict[str, Any]) -> DeviceSettings:
    """Saved settings with some knobs' values replaced ({knob name: value})."""
    power = values.get(POWER_LIMIT.name, settings.power_limit_w)
    if SM_LOCK.name in values:
        lock = values[SM_LOCK.name]
        known = lock != UNKNOWN_LOCK
        return DeviceSettings(power_limit_w=power, locked_clocks_mhz=lock if known else None, clocks_known=known)
    return DeviceSettings(power_limit_w=power, locked_clocks_mhz=settings.locked_clocks_mhz,
                          clocks_known=settings.clocks_known)
