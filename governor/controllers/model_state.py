"""The `model` controller's states."""

from enum import StrEnum


class State(StrEnum):
    REFERENCE = "reference"  # measuring the phase at default settings
    PROBE = "probe"  # measuring it at a lower clock (or power limit)
    HOLD = "hold"  # running the phase at the clock the plan chose
