"""`default`: hand the GPU to its firmware (no locked clocks, default power limit)."""

from __future__ import annotations

from ..settings import DEFAULT_SETPOINT, Setpoint
from ..telemetry import Sample
from .base import NO_CONTEXT, Controller, TickContext


class DefaultController(Controller):
    """The reference every saving is measured against: what the GPU does without govd."""

    name = "default"

    def decide(self, sample: Sample, context: TickContext = NO_CONTEXT) -> Setpoint:
        return DEFAULT_SETPOINT

    def status(self) -> dict:
        return {"mode": "firmware default"}
