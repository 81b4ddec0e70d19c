"""Daemon configuration: documented defaults, then govd.toml, then conf.d/*.toml in name order.

Every value is validated; an error names the file, the key path and what is allowed, and unknown
keys are rejected with a suggestion. The loader remembers which file each value came from, so an
operator can see why a value is what it is. A bad file is refused as a whole: on SIGHUP the
running config stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from .config_keys import Key, check_table, defaults, suggest
from .errors import ConfigError
from .tomlfile import TomlFileError, read_toml

SCHEMA: dict[str, dict[str, Key]] = {
    "daemon": {
        "policy": Key(str, "balanced", doc="policy for every GPU without its own [gpu.N] policy"),
        "period_ms": Key(int, 200, lo=20, hi=10000, doc="control period of each GPU loop"),
        "dry_run": Key(bool, False, doc="decide and log, never write to a GPU (restart to change)", reloads=False),
        "log_level": Key(str, "info", choices=("debug", "info", "warning", "error"), doc="log verbosity"),
        "status_log_s": Key(float, 60.0, lo=0.0, hi=86400.0,
                            doc="log one status line per GPU this often (0: never)"),
        "call_timeout_s": Key(float, 10.0, lo=0.5, hi=600.0,
                              doc="a GPU whose loop has not finished a tick in this long is marked degraded"),
        "remember_models": Key(bool, True, doc="keep what controllers learned about the work in STATE_DIR/models.json, "
                                               "to reuse after a restart, in the next job and on the node's other "
                                               "GPUs (restart to change)", reloads=False),
    },
    "socket": {
        "enabled": Key(bool, True, doc="serve the control socket (govctl) in the runtime folder (restart to change)",
                       reloads=False),
        "group": Key(str, "govd", doc="group owning the socket; its members may read status"),
        "admin_group": Key(str, "", doc="group whose members may change things (root always may); it must exist"),
        "mode": Key(str, "0660", choices=("0600", "0660", "0666"), doc="socket file permissions"),
    },
    "ledger": {
        "enabled": Key(bool, True, doc="keep the energy ledger (STATE_DIR/ledger.db) (restart to change)",
                       reloads=False),
        "price_per_kwh": Key(float, 0.15, lo=0.0, hi=100.0, doc="electricity price per kWh"),
        "currency": Key(str, "USD", doc="currency of price_per_kwh"),
        "carbon_g_per_kwh": Key(float, 400.0, lo=0.0, hi=5000.0, doc="grid carbon intensity, g CO2e per kWh"),
        "carbon_hourly": Key(list, None, lo=0.0, hi=5000.0, length=24, optional=True,
                             doc="24 hourly carbon intensities (local time, hour 0 first), instead of one value",
                             example=[300.0] * 7 + [450.0] * 12 + [350.0] * 5),
        "control_share": Key(float, 0.02, lo=0.0, hi=0.5,
                             doc="share of time at default settings to measure the counterfactual"),
        "control_window_s": Key(float, 3.0, lo=0.5, hi=600.0, doc="length of one control window"),
        "model_error": Key(float, 0.03, lo=0.0, hi=1.0, doc="relative error floor of the counterfactual", expert=True),
        "thermal_default_below_c": Key(float, 2.5, lo=0.0, hi=20.0,
                                       doc="at the thermal limit, default settings are taken to hold the GPU "
                                           "this far under its slowdown temperature (firmware throttling "
                                           "swings in a band under it, 3 C wide on the simulated H100 with its "
                                           "mean 1.1 C under; the lower part errs low)", expert=True),
        "thermal_budget_below_c": Key(float, 1.0, lo=0.0, hi=20.0,
                                      doc="for the slowdown budget, default settings at the thermal limit are "
                                          "taken to hold the GPU this far under its slowdown temperature: the "
                                          "hot side of the firmware's band, so the slowdown errs high as the "
                                          "saving errs low", expert=True),
        "thermal_error": Key(float, 0.05, lo=0.0, hi=1.0,
                             doc="relative error of the counterfactual while the GPU is at its thermal limit "
                                 "(priced from the learned cooling, or no saving claimed)", expert=True),
        "drift_per_min": Key(float, 0.005, lo=0.0, hi=1.0,
                             doc="relative error added per minute since the last control window", expert=True),
        "unpriced_error": Key(float, 0.5, lo=0.0, hi=1.0,
                              doc="relative error of work no default-settings measurement prices (counted at "
                                  "its measured energy: no saving claimed, but none ruled out either)", expert=True),
        "match_util_pct": Key(float, 10.0, lo=0.0, hi=100.0,
                              doc="a sample this many utilization points less busy than the control window "
                                  "is other work: no saving is claimed for it", expert=True),
        "match_progress": Key(float, 0.25, lo=0.0, hi=1.0,
                              doc="a sample whose DRAM progress differs from the control window's by more than "
                                  "this share is other work: no saving is claimed for it", expert=True),
        "min_progress_pct": Key(float, 2.0, lo=0.0, hi=100.0, doc="least DRAM activity for the progress proxy",
                                expert=True),
        "flush_s": Key(float, 60.0, lo=1.0, hi=60.0,
                       doc="write the ledger this often and at each minute's end (a crash loses at most this)"),
        "retention_days": Key(float, 90.0, lo=1.0, hi=3650.0, doc="keep per-minute rows this long"),
        "log_every_s": Key(float, 300.0, lo=0.0, hi=86400.0, doc="log the savings per GPU this often (0: never)"),
    },
    "metrics": {
        "listen": Key(str, "127.0.0.1:9477",
                      doc="serve Prometheus metrics on this host:port ('' : no endpoint); loopback by default, "
                          "widen it (and the unit's IPAddressAllow=) for a remote scraper (restart to change)",
                      reloads=False),
        "textfile": Key(str, "", doc="also write the metrics to this file for node_exporter's textfile collector "
                                     "('' : never), atomically"),
        "interval_s": Key(float, 15.0, lo=1.0, hi=3600.0, doc="write the textfile this often"),
    },
    "envelope": {
        "thermal_margin_c": Key(float, 2.0, lo=0.0, hi=30.0,
                                doc="the thermal guard engages this far below the GPU's slowdown temperature"),
        "thermal_hysteresis_c": Key(float, 1.0, lo=0.5, hi=20.0,
                                    doc="the guard releases this far below its engage temperature"),
        "thermal_step_mhz_per_s": Key(float, 150.0, lo=15.0, hi=10000.0,
                                      doc="how fast the guard lowers the clock ceiling while hot (MHz per second); "
                                          "faster overshoots, since the die answers a cut over tens of seconds"),
        "thermal_release_mhz_per_s": Key(float, 30.0, lo=1.0, hi=10000.0,
                                         doc="how fast the guard raises the ceiling again once cooled (MHz per "
                                             "second); it lets go at the highest clock"),
        "min_write_interval_ms": Key(int, 400, lo=0, hi=60000,
                                     doc="least time between two writes to one GPU (safety writes excepted)"),
        "max_writes_per_minute": Key(int, 60, lo=1, hi=6000, doc="most writes to one GPU in any minute"),
        "error_budget": Key(int, 5, lo=1, hi=1000,
                            doc="errors within error_window_s after which the GPU is handed back and degraded"),
        "error_window_s": Key(float, 60.0, lo=1.0, hi=86400.0, doc="window for error_budget"),
        "external_backoff_s": Key(float, 300.0, lo=0.0, hi=86400.0,
                                  doc="after another program changes a GPU, leave it alone this long"),
        "readback": Key(bool, True, doc="read every write back and count a mismatch as an error"),
        "respect_existing_limits": Key(bool, True,
                                       doc="a power limit under the default, or a clock lock under the highest "
                                           "clock, found when govd takes a GPU is a ceiling govd never goes "
                                           "above (false: govd may raise them up to the GPU's default)"),
    },
}
GPU_KEYS = {
    "policy": Key(str, doc="policy for this GPU"),
    "manage": Key(bool, True, doc="false: govd watches this GPU but never writes to it (restart to change)",
                  reloads=False),
}
DEFAULT_SOURCE = "default"


def _section_type(section: str, keys: dict[str, Key]) -> type:
    """A frozen dataclass with one typed field per key of a section: what consumers are handed."""
    fields_ = [(name, key.kind | None if key.optional else key.kind) for name, key in keys.items()]
    return make_dataclass(f"{section.capitalize()}Config", fields_, frozen=True)


# The typed sections consumers receive (Config.section): DaemonConfig, SocketConfig, LedgerConfig,
# EnvelopeConfig, built from SCHEMA so the two never disagree.
SECTION_TYPES: dict[str, type] = {section: _section_type(section, keys) for section, keys in SCHEMA.items()}


def key_path(section: str, name: str) -> str:
    """Where a key is written in a file: [section], or [expert.section] for an expert one."""
    return f"expert.{section}.{name}" if SCHEMA[section][name].expert else f"{section}.{name}"


@dataclass
class Config:
    values: dict[str, dict[str, Any]]
    sources: dict[str, str]  # "section.key" -> file it came from
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)  # "0" or "GPU-uuid" -> overrides
    files: list[str] = field(default_factory=list)

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    def policy_name(self, index: int, uuid: str, cli_policy: str | None) -> tuple[str, tuple[str, str]]:
        """The policy a GPU runs by the command line and this config, and where its name is written
        ((file, key), or ("--policy", "")), so that a name that loads nothing is blamed there."""
        name, origin = cli_policy, ("--policy", "")
        if name is None:
            name = self.values["daemon"]["policy"]
            origin = (self.sources.get("daemon.policy", DEFAULT_SOURCE), "daemon.policy")
        for ident in (uuid, str(index)):
            if "policy" in self.gpus.get(ident, {}):
                return self.gpus[ident]["policy"], (self.sources.get(f"gpu.{ident}.policy", "config"),
                                                    f"gpu.{ident}.policy")
        return name, origin

    def section(self, name: str) -> Any:
        """One section as its typed dataclass (SECTION_TYPES): attributes, not string keys."""
        return SECTION_TYPES[name](**self.values[name])

    def gpu_value(self, index: int, uuid: str, key: str, fallback: Any) -> Any:
        for ident in (uuid, str(index)):
            if ident in self.gpus and key in self.gpus[ident]:
                return self.gpus[ident][key]
        return fallback

    def effective(self) -> list[dict]:
        rows = []
        for section, keys in SCHEMA.items():
            for key in keys:
                rows.append({"key": key_path(section, key), "value": self.values[section][key],
                             "source": self.sources.get(f"{section}.{key}", DEFAULT_SOURCE)})
        for ident, table in self.gpus.items():
            for key, value in table.items():
                rows.append({"key": f"gpu.{ident}.{key}", "value": value,
                             "source": self.sources.get(f"gpu.{ident}.{key}", DEFAULT_SOURCE)})
        return rows


def restart_only_changes(running: Config, new: Config) -> list[str]:
    """The keys a reload cannot apply whose value the new config changes, each with both values."""
    changed = []
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            if not key.reloads and running.values[section][name] != new.values[section][name]:
                changed.append(f"{section}.{name} ({running.values[section][name]!r} -> {new.values[section][name]!r})")
    for name, key in GPU_KEYS.items():
        if key.reloads:
            continue
        for ident in sorted(set(running.gpus) | set(new.gpus)):
            old, now = running.gpus.get(ident, {}).get(name), new.gpus.get(ident, {}).get(name)
            if old != now:
                changed.append(f"gpu.{ident}.{name} ({old!r} -> {now!r})")
    return changed


def host_problems(config: Config) -> None:
    """Checks that need this host, not only the file: the groups the socket names must exist (an
    admin group that does not exist would silently give nobody rights, and a typo in it would
    go unnoticed). Raises ConfigError naming the file and key."""
    import grp  # noqa: PLC0415 - POSIX only, used here only

    from .metrics import parse_listen  # noqa: PLC0415 - the one parser of host:port

    try:
        parse_listen(config.values["metrics"]["listen"])
    except ValueError as exc:
        raise ConfigError(config.sources.get("metrics.listen", DEFAULT_SOURCE), "metrics.listen", str(exc)) from None
    for key, explicit_only in (("admin_group", False), ("group", True)):
        name = config.values["socket"][key]
        source = config.sources.get(f"socket.{key}")
        if not name or (explicit_only and source is None):
            continue
        try:
            grp.getgrnam(name)
        except KeyError:
            raise ConfigError(source or DEFAULT_SOURCE, f"socket.{key}",
                              f"no group {name!r} on this host; create it (`groupadd {name}`) or name an existing "
                              "one") from None


def unknown_gpus(config: Config, gpus: list[tuple[int, str]]) -> list[str]:
    """[gpu.X] tables that name no GPU of this host (by index or UUID), as warnings."""
    known = {str(i) for i, _ in gpus} | {u for _, u in gpus}
    warnings = []
    for ident, table in config.gpus.items():
        if ident in known:
            continue
        files = sorted({config.sources.get(f"gpu.{ident}.{key}", "config") for key in table})
        warnings.append(f"[gpu.{ident}] in {', '.join(files)} names no GPU here (GPU indexes: "
                        f"{', '.join(str(i) for i, _ in gpus) or 'none'}); it has no effect")
    return warnings


def reload_keys() -> tuple[list[str], list[str]]:
    """(keys a reload applies, keys that need a restart), for docs/architecture.md."""
    applied, restart = [], []
    for section, keys in [*SCHEMA.items(), ("gpu.N", GPU_KEYS)]:
        for name, key in keys.items():
            (applied if key.reloads else restart).append(f"{section}.{name}")
    return applied, restart


def default_config() -> Config:
    return Config(values={s: defaults(k) for s, k in SCHEMA.items()}, sources={})


def _merge(cfg: Config, data: dict, source: str) -> None:
    for section, table in data.items():
        if section == "gpu":
            if not isinstance(table, dict):
                raise ConfigError(source, "gpu", "must be a table of [gpu.INDEX] or [gpu.\"GPU-UUID\"] tables")
            for ident, gtable in table.items():
                if not (ident.isdigit() or ident.startswith("GPU-") or ident.startswith("MIG-")):
                    raise ConfigError(source, f"gpu.{ident}", "GPU key must be an index (0, 1, ...) or a UUID "
                                      "(GPU-...)")
                checked = check_table(gtable, GPU_KEYS, source, f"gpu.{ident}")
                cfg.gpus.setdefault(ident, {}).update(checked)
                for key in checked:
                    cfg.sources[f"gpu.{ident}.{key}"] = source
            continue
        if section == "expert":
            _merge_expert(cfg, table, source)
            continue
        if section not in SCHEMA:
            allowed = ", ".join(sorted([*SCHEMA, "gpu", "expert"]))
            raise ConfigError(source, section, f"unknown section; {suggest(section, [*SCHEMA, 'gpu', 'expert'])}"
                                               f"allowed: {allowed}")
        keys = SCHEMA[section]
        if isinstance(table, dict):
            for name in table:
                if name in keys and keys[name].expert:
                    raise ConfigError(source, f"{section}.{name}", f"an estimator constant: set it under "
                                                                   f"[expert.{section}] if you must (default "
                                                                   f"{keys[name].default!r})")
        checked = check_table(table, {n: k for n, k in keys.items() if not k.expert}, source, section)
        cfg.values[section].update(checked)
        for key in checked:
            cfg.sources[f"{section}.{key}"] = source


def _merge_expert(cfg: Config, data: Any, source: str) -> None:
    """[expert.SECTION] tables: the estimator constants and heuristics, with documented defaults
    that an operator should rarely need to touch (govd --print-example-config lists them)."""
    sections = [s for s, keys in SCHEMA.items() if any(k.expert for k in keys.values())]
    if not isinstance(data, dict):
        raise ConfigError(source, "expert", f"must be a table of [expert.SECTION] tables ({', '.join(sections)})")
    for section, table in data.items():
        if section not in sections:
            raise ConfigError(source, f"expert.{section}", f"no expert keys there; allowed: {', '.join(sections)}")
        experts = {n: k for n, k in SCHEMA[section].items() if k.expert}
        checked = check_table(table, experts, source, f"expert.{section}")
        cfg.values[section].update(checked)
        for key in checked:
            cfg.sources[f"{section}.{key}"] = source


def _read(path: Path) -> dict:
    try:
        return read_toml(path)
    except TomlFileError as exc:
        raise ConfigError(str(path), "", str(exc)) from None


def load_config(main_file: Path | None, conf_d: Path | None = None, required: bool = False) -> Config:
    """Layer the main file and conf.d/*.toml over the defaults. A missing main file is fine unless
    it was named on the command line (required)."""
    cfg = default_config()
    if main_file is not None:
        if main_file.exists():
            _merge(cfg, _read(main_file), str(main_file))
            cfg.files.append(str(main_file))
        elif required:
            raise ConfigError(str(main_file), "", "config file does not exist")
    if conf_d is not None and conf_d.is_dir():
        for path in sorted(conf_d.glob("*.toml")):
            _merge(cfg, _read(path), str(path))
            cfg.files.append(str(path))
    return cfg


def example_config() -> str:
    """The commented example config, generated from the schema so it never drifts from the code."""
    lines = ["# govd configuration. Every key is optional; shown values are the defaults.",
             "# Lines starting with '#' and no space are settings: remove the '#' to change one.",
             "# Files: /etc/govd/govd.toml, then /etc/govd/conf.d/*.toml in name order (later wins).", ""]
    tables = [(section, {n: k for n, k in keys.items() if not k.expert}) for section, keys in SCHEMA.items()]
    tables += [(f"expert.{section}", experts) for section, keys in SCHEMA.items()
               if (experts := {n: k for n, k in keys.items() if k.expert})]
    for section, keys in tables:
        lines.append(f"[{section}]")
        if section.startswith("expert."):
            lines[-1:] = ["# Estimator constants: documented defaults, measured on the simulator; change only "
                          "with a reason.", f"[{section}]"]
        for name, key in keys.items():
            lines.append(f"# {key.doc} ({key.allowed()})")
            value = key.default
            if value is None:
                if key.example is None:
                    continue
                value = key.example
            text = ("true" if value else "false") if isinstance(value, bool) else (
                f'"{value}"' if isinstance(value, str) else str(value))
            lines.append(f"#{name} = {text}")
        lines.append("")
    lines += ["# Per-GPU overrides, by index or UUID:", "#[gpu.0]", '#policy = "static-example"',
              "#manage = true", ""]
    return "\n".join(lines)
