"""Writing to a GPU, written once for every backend and every knob: apply a setpoint, read it back,
and put saved settings back, each a loop over knobs.KNOBS.

Knobs are applied in KNOBS order (clock lock, then power limit) and restored in the reverse order,
every knob in its own try, so that one failing knob never keeps the others from going back
(GEOPM #4010).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .device import Device
from .errors import DeviceError
from .knobs import KNOBS, Knob
from .settings import DeviceSettings, Limits, Setpoint


@dataclass(frozen=True)
class KnobResult:
    knob: str  # "clocks" or "power_limit"
    action: str  # what was done, e.g. "lock 345-1410 MHz", "reset clock lock", "power limit 300 W"
    ok: bool
    error: str | None = None

    def to_dict(self) -> dict:
        return {"knob": self.knob, "action": self.action, "ok": self.ok, "error": self.error}


def _write(device: Device, knob: Knob, value) -> KnobResult:
    action = knob.action(value)
    try:
        knob.write(device, value)
        return KnobResult(knob.name, action, True)
    except DeviceError as exc:
        return KnobResult(knob.name, action, False, str(exc))


def knobs_of(limits: Limits | None, only: set[str] | None = None) -> list[Knob]:
    """The knobs this GPU has (all, where its limits are unknown), optionally only those named."""
    return [k for k in KNOBS if (limits is None or k.supported(limits.capabilities))
            and (only is None or k.name in only)]


def apply_setpoint(device: Device, limits: Limits, target: Setpoint, current: Setpoint | None) -> list[KnobResult]:
    """Write the knobs of target that differ from current (None: write every knob)."""
    results = []
    for knob in knobs_of(limits):
        value = knob.desired(target, limits)
        if current is None or knob.desired(current, limits) != value:
            results.append(_write(device, knob, value))
    return results


def read_back(device: Device, limits: Limits, target: Setpoint) -> list[str]:
    """Mismatches between what was asked and what the GPU now holds ([] when all is as set)."""
    problems = []
    for knob in knobs_of(limits):
        have, want = knob.read(device), knob.desired(target, limits)
        if knob.readable(have) and not knob.matches(have, want):
            problems.append(f"{knob.label} reads {knob.show(have)}, set {knob.show(want)}")
    return problems


def restore_settings(device: Device, settings: DeviceSettings, limits: Limits | None = None,
                     knobs: set[str] | None = None) -> list[KnobResult]:
    """Put saved settings back in reverse apply order, each knob on its own.

    A knob the GPU does not have (limits say so) was never written, so there is nothing to restore.
    knobs limits the restore to those named ("power_limit", "clocks"); None: all.
    """
    return [_write(device, knob, knob.to_restore(settings)) for knob in reversed(knobs_of(limits, knobs))]


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
    try:
        now = device.read_settings()
    except DeviceError as exc:
        return GiveBack(saved, written, None, [], str(exc))
    failed = {k.knob for k in written if not k.ok}  # already reported as failed writes
    mismatches = []
    for knob in knobs_of(limits, knobs):
        have, want = knob.saved(now), knob.to_restore(saved)
        if knob.name not in failed and knob.readable(have) and knob.readable(knob.saved(saved)) \
                and not knob.matches(have, want):
            mismatches.append(f"{knob.label} reads {knob.show(have)}, saved {knob.show(want)}")
    return GiveBack(saved, written, now, mismatches)
