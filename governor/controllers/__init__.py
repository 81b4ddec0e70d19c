"""Controller registry: built-in controllers plus third-party ones from the `govd.controllers`
entry-point group, so a site can add its own algorithm without patching govd."""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

from ..errors import ConfigError
from .base import Controller
from .default import DefaultController
from .model import ModelController
from .pid import PidController
from .static import StaticController

# govd's own; the peers it is compared with live in the lab and register through the entry points
BUILTIN: dict[str, type[Controller]] = {c.name: c for c in (
    DefaultController, StaticController, PidController, ModelController)}


def available() -> dict[str, type[Controller] | object]:
    """Every controller name: built-ins first, then entry points (loaded lazily)."""
    found: dict = dict(BUILTIN)
    for ep in entry_points(group="govd.controllers"):
        found.setdefault(ep.name, ep)
    return found


def controller_class(name: str, source: str = "policy") -> type[Controller]:
    if name in BUILTIN:
        # a built-in wins over a plugin of the same name (available()), so the entry points need not
        # be read: reading them was most of the daemon's start-up, once per GPU (380 ms at 64 GPUs)
        return BUILTIN[name]
    found = available()
    if name not in found:
        raise ConfigError(source, "controller", f"unknown controller {name!r}; available: {', '.join(sorted(found))}")
    cls = found[name]
    if not isinstance(cls, type):
        try:
            cls = cls.load()
        except Exception as exc:  # a broken plugin must not take the daemon down
            raise ConfigError(source, "controller", f"controller plugin {name!r} failed to load: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Controller)):
        raise ConfigError(source, "controller", f"plugin {name!r} is not a governor Controller subclass")
    if len(inspect.signature(cls.decide).parameters) < 3:
        raise ConfigError(source, "controller", f"plugin {name!r}: decide must be decide(self, sample, context) "
                                                "(the context carries the thermal limit; docs/controllers.md)")
    return cls


__all__ = ["Controller", "controller_class", "available", "BUILTIN"]
