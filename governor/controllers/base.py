"""The controller contract: a pure algorithm from samples to setpoints.

A controller does no I/O and is deterministic given its samples, so it can be unit-tested with
synthetic sample sequences and replayed from a log. It never sees the device, the simulator's
ground truth or the envelope; the envelope clamps whatever it asks for.

Three calls: `start` (take over a GPU without a bump), `decide` (the setpoint for this tick) and
`status` (for `govctl status`); and one event, `work_changed`, when a job starts or ends on the
GPU. A controller that learns about the work may also hand what it learned to the node's model
store and take it back (`export_models`, `import_models`: plain records, the worker does the I/O).
A controller that measures each phase at default settings itself also offers the ledger a
`Counterfactual`, so the ledger needs no control windows of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..config_keys import Key, check_table, defaults
from ..errors import ConfigError
from ..settings import Limits, Setpoint
from ..telemetry import DefaultReference, Sample


@dataclass(frozen=True)
class TickContext:
    """What the loop knows this tick beyond the sample.

    thermal_default_power_w: at the thermal limit, the power default settings would dissipate
    there, throttled by the firmware (from the cooling the ledger learned); None when the GPU is
    not at the limit or the cooling is not known yet. The thermal guard cuts clocks for safety,
    so what default would do there is no reference measured under it: a controller with a
    slowdown budget charges and plans against this instead."""

    thermal_default_power_w: float | None = None


NO_CONTEXT = TickContext()


class Counterfactual(Protocol):
    """What the ledger asks a controller that measures default settings itself."""

    def reference(self, sample: Sample) -> DefaultReference:
        """What this sample's work would cost at default settings (known=False: cannot tell)."""

    def throttled_work_ratio(self, sample: Sample, power_w: float) -> float | None:
        """At the thermal limit: how much more work per second default settings would do than the
        GPU does now, if they dissipated power_w; None: cannot tell."""


class Controller(ABC):
    """Subclasses set `name` and `PARAMS` (their tunables) and implement decide()."""

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Key]] = {}  # what an operator turns, in a policy's [params]
    EXPERT: ClassVar[dict[str, Key]] = {}  # heuristics with documented defaults, only under [expert]
    # True for controllers that read what only the application knows (Zeus's training progress, an
    # oracle's phase): they run only in offline evaluation, which supplies it (lab/)
    evaluation_only: ClassVar[bool] = False
    # set by a controller that prices the counterfactual for the ledger (None: the ledger runs its
    # own control windows)
    counterfactual: Counterfactual | None = None

    def __init__(self, params: dict[str, Any], limits: Limits):
        self.params = {**defaults(self.PARAMS), **defaults(self.EXPERT), **params}
        self.limits = limits

    @classmethod
    def validate_params(cls, data: dict, source: str) -> dict[str, Any]:
        """Check a policy's [params] table against PARAMS (raises ConfigError naming the key)."""
        if isinstance(data, dict):
            for name in data:
                if name in cls.EXPERT and name not in cls.PARAMS:
                    raise ConfigError(source, f"params.{name}", f"a heuristic of {cls.name!r}: set it under "
                                                                f"[expert] if you must (default "
                                                                f"{cls.EXPERT[name].default!r})")
        return check_table(data, cls.PARAMS, source, "params")

    @classmethod
    def validate_expert(cls, data: dict, source: str) -> dict[str, Any]:
        """Check a policy's [expert] table against EXPERT."""
        return check_table(data, cls.EXPERT, source, "expert")

    def start(self, sample: Sample, current: Setpoint) -> None:  # noqa: B027 - optional hook
        """Take over a GPU: begin from the state it is in (bumpless start)."""

    def work_changed(self, time_s: float) -> None:  # noqa: B027 - optional hook
        """The work on the GPU changed by an event the loop was told of (a job started or ended):
        what was measured of the work before no longer describes what runs now."""

    @abstractmethod
    def decide(self, sample: Sample, context: TickContext = NO_CONTEXT) -> Setpoint:
        """The setpoint for this tick, from this sample and what came before."""

    def status(self) -> dict[str, Any]:
        """Controller state for `govctl status`: what it is doing and why."""
        return {}

    def export_models(self) -> list[dict[str, Any]]:
        """What it learned about the work, as JSON-able records for the node's model store (each with
        a "key": the store keeps the newest record per key). None learned: []."""
        return []

    def import_models(self, records: list[tuple[dict[str, Any], float]]) -> int:
        """Records from the store (with their age in seconds) to reuse; returns how many it took.
        Records it cannot use are skipped, never an error."""
        return 0
