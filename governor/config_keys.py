"""Config keys: typed, range-checked key tables, shared by the config, policy and controller-parameter
loaders.

Every error names the file, the full key path and what is allowed, and an unknown key gets the
nearest known one as a suggestion: an operator with a typo in a policy on 300 nodes needs to see
exactly which line to fix.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Key:
    """One allowed key: its type, its range or choices, its default and what it means."""

    kind: type  # int, float, bool, str
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    doc: str = ""
    optional: bool = False  # None allowed (the key may be absent with no default)
    length: int | None = None  # lists: exact number of items (each a number within lo..hi)
    example: Any = None  # shown in the example config where the default is None
    reloads: bool = True  # False: a reload cannot apply it (it is refused, naming the key); restart govd
    expert: bool = False  # an estimator constant or heuristic: set only under an [expert] table

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind is list:
            n = f"{self.length} " if self.length else ""
            return f"a list of {n}numbers" + (f" in [{self.lo}, {self.hi}]" if self.lo is not None else "")
        name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.kind]
        if self.lo is not None and self.hi is not None:
            return f"{name} in [{self.lo}, {self.hi}]"
        if self.lo is not None:
            return f"{name} >= {self.lo}"
        if self.hi is not None:
            return f"{name} <= {self.hi}"
        return name


def suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def check_value(key: Key, value: Any, source: str, path: str) -> Any:
    kind = key.kind
    if kind is list:
        ok = isinstance(value, list) and (key.length is None or len(value) == key.length) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and (key.lo is None or v >= key.lo) and (key.hi is None or v <= key.hi) for v in value)
        if not ok:
            raise ConfigError(source, path, f"got {value!r}; allowed: {key.allowed()}")
        return [float(v) for v in value]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(source, path, f"got {value!r}; allowed: {key.allowed()}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(source, path, f"got {value!r}; allowed: {key.allowed()}, finite")
    if key.choices and value not in key.choices:
        raise ConfigError(source, path, f"got {value!r}; allowed: {key.allowed()}")
    if key.lo is not None and value < key.lo or key.hi is not None and value > key.hi:
        raise ConfigError(source, path, f"got {value!r}; allowed: {key.allowed()}")
    return value


def check_table(data: Any, keys: dict[str, Key], source: str, prefix: str) -> dict[str, Any]:
    """Validate one TOML table against keys; returns only the keys present (validated)."""
    if not isinstance(data, dict):
        raise ConfigError(source, prefix, f"must be a table, got {type(data).__name__}")
    out = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in keys:
            raise ConfigError(source, path, f"unknown key; {suggest(name, keys)}allowed: {', '.join(sorted(keys))}")
        out[name] = check_value(keys[name], value, source, path)
    return out


def defaults(keys: dict[str, Key]) -> dict[str, Any]:
    return {name: k.default for name, k in keys.items()}
