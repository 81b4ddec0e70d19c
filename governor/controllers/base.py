"""The controller interface: a pure algorithm from samples to setpoints.

A controller does no I/O and is deterministic given its samples, so it can be unit-tested with
synthetic sample sequences and replayed from a log. It never sees the device, the simulator's
ground truth or the envelope; the envelope clamps whatever it asks for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..schema import Key, check_table, defaults
from ..vocabulary import DefaultReference, Limits, Sample, Setpoint


class Controller(ABC):
    """Subclasses set `name` and `PARAMS` (their tunables) and implement decide()."""

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Key]] = {}
    # True when the controller itself runs each phase at default settings now and then and reports
    # it through reference(): the ledger then forces no control windows of its own
    measures_reference: ClassVar[bool] = False

    def __init__(self, params: dict[str, Any], limits: Limits):
        self.params = {**defaults(self.PARAMS), **params}
        self.limits = limits

    @classmethod
    def validate_params(cls, data: dict, source: str) -> dict[str, Any]:
        """Check a policy's [params] table against PARAMS (raises ConfigError naming the key)."""
        return check_table(data, cls.PARAMS, source, "params")

    def start(self, sample: Sample, current: Setpoint) -> None:  # noqa: B027 - optional hook
        """Take over a GPU: begin from the state it is in (bumpless start)."""

    @abstractmethod
    def decide(self, sample: Sample) -> Setpoint:
        """The setpoint for this tick, from this sample and what came before."""

    def reference(self, sample: Sample) -> DefaultReference | None:
        """What this sample's work would cost at default settings, if the controller measured it
        (the ledger then needs no control windows of its own); None: the controller has no opinion
        and the ledger uses its own control windows."""
        return None

    def throttled_work_ratio(self, sample: Sample, power_w: float) -> float | None:
        """At the thermal limit: how much more work per second default settings would do than the
        GPU does now, if they dissipated power_w (for the ledger); None: the controller cannot tell."""
        return None

    def note_thermal(self, default_power_w: float | None) -> None:  # noqa: B027 - optional hook
        """Before decide(), each tick: at the thermal limit, the power default settings would
        dissipate there, throttled by the firmware (from the cooling the ledger learned); None when
        not at the limit or not known yet. The thermal guard cuts clocks for safety, so what
        default would do there is no reference measured under it: a controller with a slowdown
        budget charges and plans against this instead."""

    def status(self) -> dict[str, Any]:
        """Controller state for `govctl status`: what it is doing and why."""
        return {}
