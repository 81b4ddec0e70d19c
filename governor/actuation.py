"""Writing to a GPU, written once for every backend: apply a setpoint knob by knob, read it back,
and put saved settings back.

Each knob is a get/set pair. Knobs are applied in a fixed order (clock lock, then power limit) and
restored in the reverse order, every knob in its own try, so that one failing knob never keeps the
others from going back (GEOPM #4010).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .device import UNKNOWN_LOCK, Device
from .errors import DeviceError
from .vocabulary import DeviceSettings, Limits, Setpoint


@dataclass(frozen=True)
class KnobResult:
    knob: str  # "clocks" or "power_limit"
    action: str  # what was done, e.g. "lock 345-1410 MHz", "reset", "300 W"
    ok: bool
    error: str | None = None

    def to_dict(self) -> dict:
        return {"knob": self.knob, "action": self.action, "ok": self.ok, "error": self.error}


def desired_lock(setpoint: Setpoint, limits: Limits) -> tuple[int, int] | None:
    if not setpoint.locks_clocks:
        return None
    lo = setpoint.sm_clock_min_mhz if setpoint.sm_clock_min_mhz is not None else limits.sm_clock_min_mhz
    hi = setpoint.sm_clock_max_mhz if setpoint.sm_clock_max_mhz is not None else limits.sm_clock_max_mhz
    return (lo, hi)


def desired_power(setpoint: Setpoint, limits: Limits) -> float:
    return setpoint.power_limit_w if setpoint.power_limit_w is not None else limits.power_limit_default_w


def _write_lock(device: Device, lock: tuple[int, int] | None) -> KnobResult:
    action = f"lock {lock[0]}-{lock[1]} MHz" if lock else "reset clock lock"
    try:
        if lock:
            device.set_locked_clocks(lock[0], lock[1])
        else:
            device.reset_locked_clocks()
        return KnobResult("clocks", action, True)
    except DeviceError as exc:
        return KnobResult("clocks", action, False, str(exc))


def _write_power(device: Device, watts: float) -> KnobResult:
    action = f"power limit {watts:g} W"
    try:
        device.set_power_limit_w(watts)
        return KnobResult("power_limit", action, True)
    except DeviceError as exc:
        return KnobResult("power_limit", action, False, str(exc))


def apply_setpoint(device: Device, limits: Limits, target: Setpoint, current: Setpoint | None) -> list[KnobResult]:
    """Write the knobs of target that differ from current (None: write both)."""
    caps = limits.capabilities
    results = []
    lock = desired_lock(target, limits)
    if caps.can_lock_clocks and (current is None or desired_lock(current, limits) != lock):
        results.append(_write_lock(device, lock))
    watts = desired_power(target, limits)
    if caps.can_set_power_limit and (current is None or desired_power(current, limits) != watts):
        results.append(_write_power(device, watts))
    return results


def read_back(device: Device, limits: Limits, target: Setpoint) -> list[str]:
    """Mismatches between what was asked and what the GPU now holds ([] when all is as set)."""
    problems = []
    caps = limits.capabilities
    if caps.can_set_power_limit:
        have = device.get_power_limit_w()
        want = desired_power(target, limits)
        if abs(have - want) > 0.5:
            problems.append(f"power limit reads {have:g} W, set {want:g} W")
    if caps.can_lock_clocks:
        lock = device.get_locked_clocks()
        want_lock = desired_lock(target, limits)
        if lock != UNKNOWN_LOCK and lock != want_lock:
            problems.append(f"clock lock reads {lock}, set {want_lock}")
    return problems


def restore_settings(device: Device, settings: DeviceSettings, limits: Limits | None = None,
                     knobs: set[str] | None = None) -> list[KnobResult]:
    """Put saved settings back: power limit first, then clocks (reverse of apply), each on its own.

    A knob the GPU does not have (limits say so) was never written, so there is nothing to restore.
    knobs limits the restore to those named ("power_limit", "clocks"); None: all.
    """
    caps = limits.capabilities if limits is not None else None
    results = []
    if (caps is None or caps.can_set_power_limit) and (knobs is None or "power_limit" in knobs):
        results.append(_write_power(device, settings.power_limit_w))
    if (caps is None or caps.can_lock_clocks) and (knobs is None or "clocks" in knobs):
        results.append(_write_lock(device, settings.locked_clocks_mhz if settings.clocks_known else None))
    return results


def describe_settings(settings: DeviceSettings) -> str:
    """A GPU's writable settings in words, for logs and errors."""
    if not settings.clocks_known:
        clocks = "clock lock unreadable"
    elif settings.locked_clocks_mhz:
        clocks = f"clocks locked {settings.locked_clocks_mhz[0]}-{settings.locked_clocks_mhz[1]} MHz"
    else:
        clocks = "clocks unlocked"
    return f"power limit {settings.power_limit_w:g} W, {clocks}"


@dataclass(frozen=True)
class GiveBack:
    """What putting one GPU back to its saved settings did, and what the GPU holds afterwards.

    ok only when every knob was written and reads back as saved: a write that NVML accepted but
    that did not take is no restore."""

    saved: DeviceSettings
    knobs: list[KnobResult] = field(default_factory=list)
    now: DeviceSettings | None = None  # read after the attempt; None when unreadable
    mismatches: list[str] = field(default_factory=list)
    read_error: str | None = None

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.knobs) and not self.mismatches

    def problem(self) -> str:
        """Why it is not back, and what it holds now (empty when ok)."""
        if self.ok:
            return ""
        why = [f"{k.action}: {k.error}" for k in self.knobs if not k.ok] + self.mismatches
        now = describe_settings(self.now) if self.now is not None else f"unreadable ({self.read_error})"
        return f"{'; '.join(why)}; it now has {now} (saved: {describe_settings(self.saved)})"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "knobs": [k.to_dict() for k in self.knobs], "saved": self.saved.to_dict(),
                "now": self.now.to_dict() if self.now is not None else None, "problem": self.problem() or None}


def give_back(device: Device, saved: DeviceSettings, limits: Limits | None = None,
              knobs: set[str] | None = None) -> GiveBack:
    """The one restore routine of every exit path (stop, error, pause, back-off, `govd --restore`):
    write the saved settings (only the knobs named, if any), then read the GPU to say whether
    they took and what it holds."""
    written = restore_settings(device, saved, limits, knobs)
    caps = limits.capabilities if limits is not None else None
    try:
        now = device.read_settings()
    except DeviceError as exc:
        return GiveBack(saved, written, None, [], str(exc))
    failed = {k.knob for k in written if not k.ok}  # already reported as failed writes
    if knobs is not None:
        failed |= {"power_limit", "clocks"} - knobs  # not restored here: not checked either
    mismatches = []
    check_power = (caps is None or caps.can_set_power_limit) and "power_limit" not in failed
    if check_power and abs(now.power_limit_w - saved.power_limit_w) > 0.5:
        mismatches.append(f"power limit reads {now.power_limit_w:g} W, saved {saved.power_limit_w:g} W")
    check_lock = (caps is None or caps.can_lock_clocks) and "clocks" not in failed
    if check_lock and saved.clocks_known and now.clocks_known and now.locked_clocks_mhz != saved.locked_clocks_mhz:
        mismatches.append(f"clock lock reads {now.locked_clocks_mhz}, saved {saved.locked_clocks_mhz}")
    return GiveBack(saved, written, now, mismatches)
