"""What govd has done to one GPU, and putting it back: the applied setpoint, the originals, writes
with read-back, what the GPU should hold, another writer's changes knob by knob, and the give-back
of every exit path. Every step is a loop over knobs.KNOBS.

The worker decides *when* (its state machine); this decides *what* is written and what is owed
back, so that rule lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .actuation import GiveBack, apply_setpoint, give_back, knobs_of, read_back
from .device import Device
from .errors import DeviceError
from .knobs import KNOB_BY_NAME, settings_with
from .originals import OriginalsFile
from .settings import Limits, Setpoint
from .telemetry import Sample


class SaveFailed(Exception):
    """The GPU's originals could not be saved: it must not be written."""


@dataclass(frozen=True)
class OtherWrite:
    """Knobs whose value differs from what govd expects: {knob name: (value seen, value expected)}."""

    changed: dict[str, tuple[Any, Any]]

    def describe(self) -> str:
        return "; ".join(f"{KNOB_BY_NAME[name].label} {KNOB_BY_NAME[name].show(have)} (expected "
                         f"{KNOB_BY_NAME[name].show(want)})" for name, (have, want) in self.changed.items())


class GpuActuator:
    def __init__(self, device: Device, limits: Limits, originals: OriginalsFile):
        self.device = device
        self.limits = limits
        self.originals = originals
        self.uuid = device.info.uuid
        self.applied: Setpoint | None = None  # what govd last wrote and read back (None: nothing yet)
        # govd has written to this GPU since its originals were saved: only then is there anything
        # to put back (the daemon saves every managed GPU's originals at start-up, before any write)
        self.wrote = False

    # ----- writing -----------------------------------------------------------------------------
    def write(self, setpoint: Setpoint, readback: bool) -> str | None:
        """Save the originals if not yet, write the knobs that change, read back; None when the GPU
        now holds the setpoint, else what went wrong (the applied state is then unknown)."""
        try:
            self.originals.save_once(self.device)
        except (DeviceError, OSError) as exc:
            raise SaveFailed(str(exc)) from None
        self.wrote = True  # from here on the GPU may differ from its originals, even if the write fails
        results = apply_setpoint(self.device, self.limits, setpoint, self.applied)
        failed = [r for r in results if not r.ok]
        if failed:
            self.applied = None  # unknown state: rewrite every knob next time
            return "; ".join(f"{r.action}: {r.error}" for r in failed)
        if readback:
            try:
                problems = read_back(self.device, self.limits, setpoint)
            except DeviceError as exc:
                problems = [f"read-back failed: {exc}"]
            if problems:
                self.applied = None
                return "read-back mismatch: " + "; ".join(problems)
        self.applied = setpoint
        return None

    # ----- what the GPU should hold ------------------------------------------------------------
    def expected(self) -> dict[str, Any] | None:
        """Each knob's value the GPU should hold if nobody else wrote to it: what govd last wrote,
        or, before its first write, the originals saved at start-up; None when unknown (after a
        failed write, or with nothing saved). UNKNOWN_LOCK where the value cannot be read."""
        if self.applied is not None:
            return {k.name: k.desired(self.applied, self.limits) for k in knobs_of(self.limits)}
        if self.wrote:
            return None
        saved = self.originals.saved(self.uuid)
        if saved is None:
            return None
        return {k.name: k.saved(saved) for k in knobs_of(self.limits)}

    def other_write(self, sample: Sample) -> OtherWrite | None:
        """What differs from what the GPU should hold (None: nothing, or nothing known to compare)."""
        expected = self.expected()
        if expected is None:
            return None
        changed = {}
        for knob in knobs_of(self.limits):
            want = expected[knob.name]
            if not knob.readable(want):
                continue  # nothing to compare with (NVML cannot read a lock)
            try:
                have = knob.observed(sample, self.device)
            except DeviceError:
                continue
            if knob.readable(have) and not knob.matches(have, want):
                changed[knob.name] = (have, want)
        return OtherWrite(changed) if changed else None

    # ----- giving back -------------------------------------------------------------------------
    def forget_unwritten(self) -> None:
        """A driver reload before govd's first write: the settings saved at start-up are gone from
        the GPU (not by govd's hand), and are saved again at the first write."""
        self.originals.forget(self.uuid)

    def hand_back(self) -> GiveBack | None:
        """Restore the originals (if govd ever wrote) and forget them once restored; None when there
        was nothing to put back. A GPU not put back stays in originals.json for `govd --restore`."""
        saved = self.originals.saved(self.uuid)
        self.applied = None
        if saved is None:
            return None
        if not self.wrote:  # saved at start-up, never written: nothing to put back
            self.originals.forget(self.uuid)
            return None
        report = give_back(self.device, saved, self.limits)
        if report.ok:
            self.wrote = False
            self.originals.forget(self.uuid)
        return report

    def give_back_unchanged(self, other: OtherWrite) -> GiveBack | None:
        """Another program wrote: give back every setting govd made that it did not change, leave
        its own. The GPU then holds nothing of govd's and leaves originals.json; if the give-back
        fails, originals.json keeps the GPU with the other program's values where it wrote, so a
        later restore finishes govd's part and never clobbers the other program's."""
        self.applied = None
        saved = self.originals.saved(self.uuid)
        if saved is None:
            return None
        if not self.wrote:  # nothing of govd's on the GPU: the other program owns what it changed
            self.originals.forget(self.uuid)
            return None
        theirs = {name: have for name, (have, _) in other.changed.items()}
        keep = settings_with(saved, theirs)
        unchanged = {k.name for k in knobs_of(self.limits)} - set(theirs)
        report = give_back(self.device, keep, self.limits, knobs=unchanged) if unchanged else None
        if report is None or report.ok:
            self.wrote = False
            self.originals.forget(self.uuid)
        else:
            self.originals.update(self.uuid, keep)
        return report
