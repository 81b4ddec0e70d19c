"""Where govd keeps its files: config, state (the ledger) and runtime (socket, originals.json).

As root: /etc/govd, /var/lib/govd, /run/govd, or the folders systemd hands over
(CONFIGURATION_DIRECTORY, STATE_DIRECTORY, RUNTIME_DIRECTORY). With --root DIR: DIR/etc, DIR/state,
DIR/run, so anyone can run the whole daemon unprivileged (demos, tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path
    runtime_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "govd.toml"

    @property
    def conf_d(self) -> Path:
        return self.config_dir / "conf.d"

    @property
    def originals(self) -> Path:
        return self.runtime_dir / "originals.json"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "govd.sock"

    def ensure(self) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)


SYSTEM_SOCKET = Path("/run/govd/govd.sock")


def control_socket(paths: Paths, explicit: bool) -> Path:
    """The socket govctl talks to. With --root or --socket, that one. Otherwise root's paths are the
    system's; anyone else first looks for a daemon of their own (started without --root, in their
    runtime folder) and then for the system daemon, whose socket members of the govd group may use."""
    if explicit or os.geteuid() == 0 or paths.socket == SYSTEM_SOCKET or paths.socket.exists():
        return paths.socket
    return SYSTEM_SOCKET


def _first(env_value: str | None) -> Path | None:
    # systemd passes colon-separated lists when several directories are configured
    return Path(env_value.split(":")[0]) if env_value else None


def resolve_paths(root: str | os.PathLike | None = None, env: dict | None = None) -> Paths:
    env = os.environ if env is None else env
    if root is not None:
        r = Path(root).resolve()
        return Paths(config_dir=r / "etc", state_dir=r / "state", runtime_dir=r / "run")
    if os.geteuid() == 0:
        return Paths(
            config_dir=_first(env.get("CONFIGURATION_DIRECTORY")) or Path("/etc/govd"),
            state_dir=_first(env.get("STATE_DIRECTORY")) or Path("/var/lib/govd"),
            runtime_dir=_first(env.get("RUNTIME_DIRECTORY")) or Path("/run/govd"),
        )
    home = Path(env.get("HOME", "/tmp"))
    runtime = env.get("XDG_RUNTIME_DIR") or f"/tmp/govd-{os.geteuid()}"
    return Paths(
        config_dir=Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "govd",
        state_dir=Path(env.get("XDG_STATE_HOME") or home / ".local/state") / "govd",
        runtime_dir=Path(runtime) / "govd",
    )
