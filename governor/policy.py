"""Policies: TOML profiles that name a controller and tune it.

A policy is found by name (the admin's /etc/govd/policies/NAME.toml first, then the shipped
policies/) or given as a path, so a policy can be tuned offline with `govctl simulate` before it
is installed. A wrong key, type or range is refused with the file, the key and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .config_keys import Key, check_table
from .controllers import controller_class
from .errors import ConfigError
from .tomlfile import TomlFileError, read_toml

_TOP = {
    "name": Key(str, doc="policy name, shown in status"),
    "description": Key(str, "", doc="what the policy promises"),
    "controller": Key(str, doc="controller that runs it (default, static, or a plugin)"),
}
BOUNDS = {
    "sm_clock_min_mhz": Key(int, None, lo=0, hi=10000, optional=True, doc="never lock below this SM clock"),
    "sm_clock_max_mhz": Key(int, None, lo=0, hi=10000, optional=True, doc="never lock above this SM clock"),
    "power_limit_min_w": Key(float, None, lo=0, hi=5000, optional=True, doc="never set a lower power limit"),
    "power_limit_max_w": Key(float, None, lo=0, hi=5000, optional=True, doc="never set a higher power limit"),
}


@dataclass(frozen=True)
class Policy:
    name: str
    controller: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    bounds: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    expert: dict[str, Any] = field(default_factory=dict)  # the controller's heuristics ([expert])

    def to_dict(self) -> dict:
        return {"name": self.name, "controller": self.controller, "description": self.description,
                "params": dict(self.params), "expert": dict(self.expert), "bounds": dict(self.bounds),
                "source": self.source}


def policy_from_dict(data: dict, source: str) -> Policy:
    top = check_table({k: v for k, v in data.items() if k not in ("bounds", "params", "expert")},
                      _TOP, source, "")
    for required in ("name", "controller"):
        if required not in top:
            raise ConfigError(source, required, "missing; a policy needs name and controller")
    cls = controller_class(top["controller"], source)
    params = cls.validate_params(data.get("params", {}), source)
    expert = cls.validate_expert(data.get("expert", {}), source)
    bounds = check_table(data.get("bounds", {}), BOUNDS, source, "bounds")
    for lo, hi in (("sm_clock_min_mhz", "sm_clock_max_mhz"), ("power_limit_min_w", "power_limit_max_w")):
        if bounds.get(lo) is not None and bounds.get(hi) is not None and bounds[lo] > bounds[hi]:
            raise ConfigError(source, f"bounds.{lo}", f"{bounds[lo]} is above bounds.{hi} = {bounds[hi]}")
    return Policy(name=top["name"], controller=top["controller"], description=top.get("description", ""),
                  params=params, bounds=bounds, source=source, expert=expert)


def _read_toml(path: Path, source: str) -> dict:
    try:
        return read_toml(path)
    except TomlFileError as exc:
        raise ConfigError(source, "", str(exc)) from None


def shipped_policy_dir():
    """The shipped policies: installed as governor.shipped_policies, or the source tree's policies/."""
    try:
        return resources.files("governor.shipped_policies")
    except ModuleNotFoundError:  # running from a source checkout (the repo root is on sys.path)
        return Path(__file__).resolve().parent.parent / "policies"


def shipped_policy_names() -> list[str]:
    folder = shipped_policy_dir()
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def policy_names(config_dir: Path | None) -> list[str]:
    names = set(shipped_policy_names())
    if config_dir and (config_dir / "policies").is_dir():
        names |= {p.stem for p in (config_dir / "policies").glob("*.toml")}
    return sorted(names)


POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_policy_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".toml") or "/" in name_or_path


def load_policy(name_or_path: str, config_dir: Path | None = None,
                origin: tuple[str, str] = ("--policy", "")) -> Policy:
    """Resolve a policy: a path to a .toml file, an admin override, or a shipped policy.

    origin names where the name came from (a config file and its key, or a command-line option),
    so that a name that resolves to nothing is blamed on the line that holds it."""
    where, key = origin

    def missing(problem: str) -> ConfigError:
        return ConfigError(where, key, f"{name_or_path!r}: {problem}") if key else \
            ConfigError(where, name_or_path, problem)

    path = Path(name_or_path)
    if is_policy_path(name_or_path):
        if not path.exists():
            raise missing("policy file does not exist")
        return policy_from_dict(_read_toml(path, str(path)), str(path))
    if config_dir is not None:
        override = config_dir / "policies" / f"{name_or_path}.toml"
        if POLICY_NAME.fullmatch(name_or_path) and override.exists():
            return policy_from_dict(_read_toml(override, str(override)), str(override))
    if name_or_path in shipped_policy_names():
        res = shipped_policy_dir().joinpath(f"{name_or_path}.toml")
        with res.open("rb") as fh:
            data = tomllib.load(fh)
        return policy_from_dict(data, f"shipped:{name_or_path}")
    raise missing(f"unknown policy; available: {', '.join(policy_names(config_dir))} (or a path to a .toml)")
