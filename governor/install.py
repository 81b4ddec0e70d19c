"""`govd install` and `govd uninstall`: put the service in place, or take it away, and say what was done.

Install writes the unit (with this govd's own path), the example config (never over an existing
one), the policies folder and the `govd` group, then enables and starts the service. It records
what it added in STATE/install.json, so uninstall removes exactly that: it stops the service (whose
ExecStopPost restores every GPU), restores again offline in case, and removes the unit and the
group it added, leaving the administrator's config in place. `--dry-run` prints the plan only;
`--prefix DIR` places files under DIR and runs no commands (packaging, tests).
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config import example_config


@dataclass(frozen=True)
class Step:
    what: str  # "write", "mkdir", "run", "remove"
    target: str
    content: str | None = None

    def describe(self) -> str:
        return {"write": "write", "mkdir": "create folder", "run": "run", "remove": "remove"}[self.what] + \
            f" {self.target}"


def unit_text(govd_path: str) -> str:
    """The unit shipped in systemd/ (a copy travels in the package), with this govd's path."""
    text = resources.files("governor").joinpath("govd.service").read_text()
    return text.replace("/usr/local/bin/govd", govd_path)


# What govd.service's hardening hides from the service: ProtectHome= hides these, PrivateTmp= gives
# it an empty /tmp and /var/tmp. A drop-in binds the folders govd runs from back in, read-only.
HOME_HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"))
TMP_HIDDEN = (Path("/tmp"), Path("/var/tmp"))
DROPIN_NAME = "10-govd-paths.conf"


def runtime_paths() -> list[Path]:
    """The folders this govd needs at run time: its interpreter's prefixes (a virtualenv and the
    Python it was made from) and the folder the package is imported from (a source checkout, for
    an editable install). Folders inside another listed one are left out."""
    found = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
             Path(os.path.realpath(sys.executable)).parent.parent, Path(__file__).resolve().parent.parent}
    return sorted(p for p in found if not any(q != p and q in p.parents for q in found))


def hidden_by_unit(paths: list[Path], roots: tuple[Path, ...]) -> list[Path]:
    return [p for p in paths if any(p == r or r in p.parents for r in roots)]


def exposure_dropin(paths: list[Path]) -> str:
    """A drop-in that lets the service see these folders, read-only, through the unit's hardening
    (ProtectHome=tmpfs keeps the rest of /home and /root out of its sight)."""
    bad = [p for p in paths if any(c.isspace() for c in str(p))]
    if bad:
        raise ValueError(f"cannot expose {bad[0]} to the unit: BindReadOnlyPaths= takes no spaces")
    return ("# Written by `govd install`: govd runs from these folders, which the unit's hardening would\n"
            "# hide (203/EXEC at start). They are bound read-only; nothing else of /home or /root is seen.\n"
            "[Service]\nProtectHome=tmpfs\nBindReadOnlyPaths=" + " ".join(str(p) for p in paths) + "\n")


def hidden_runtime_paths() -> tuple[list[Path], str | None]:
    """(the folders govd runs from that the unit would hide, a warning where they are fragile)."""
    paths = runtime_paths()
    in_tmp = hidden_by_unit(paths, TMP_HIDDEN)
    warning = None
    if in_tmp:
        warning = (f"govd runs from {in_tmp[0]}, under a temporary folder that /tmp cleaning or a reboot may "
                   "empty, and the service would then fail to start; for a lasting install use a system-wide "
                   "one (`sudo python3 -m pip install .`) or a virtualenv under /opt (`python3 -m venv /opt/govd "
                   "&& /opt/govd/bin/pip install .`)")
    return hidden_by_unit(paths, HOME_HIDDEN + TMP_HIDDEN), warning


def govd_executable() -> str:
    found = shutil.which("govd")
    return str(Path(found).resolve()) if found else str(Path(sys.argv[0]).resolve())


def install_plan(prefix: Path, govd_path: str, group_exists: bool, expose: list[Path] | None = None) -> list[Step]:
    etc = prefix / "etc"
    steps = [Step("write", str(etc / "systemd/system/govd.service"), unit_text(govd_path))]
    if expose:
        steps.append(Step("write", str(etc / "systemd/system/govd.service.d" / DROPIN_NAME), exposure_dropin(expose)))
    steps += [
        Step("mkdir", str(etc / "govd/conf.d")),
        Step("mkdir", str(etc / "govd/policies")),
    ]
    config = etc / "govd/govd.toml"
    if not config.exists():
        steps.append(Step("write", str(config), example_config() + "\n"))
    if not group_exists:
        steps.append(Step("run", "groupadd --system govd"))
    steps += [Step("run", "systemctl daemon-reload"), Step("run", "systemctl enable --now govd.service")]
    return steps


def uninstall_plan(prefix: Path, added: dict) -> list[Step]:
    steps = [Step("run", "systemctl disable --now govd.service"), Step("run", f"{govd_executable()} --restore")]
    steps.append(Step("remove", str(prefix / "etc/systemd/system/govd.service")))
    for path in added.get("files", []):
        if not path.endswith("govd.service") and not path.endswith("govd.toml"):  # config is the admin's
            steps.append(Step("remove", path))
    if added.get("group"):
        steps.append(Step("run", "groupdel govd"))
    steps.append(Step("run", "systemctl daemon-reload"))
    return steps


def execute(steps: list[Step], prefix: Path, dry_run: bool, record: Path | None = None) -> int:
    run_commands = prefix == Path("/")
    added = {"files": [], "group": False}
    failures = 0
    for step in steps:
        print(("would " if dry_run else "") + step.describe())
        if dry_run:
            continue
        try:
            if step.what == "write":
                Path(step.target).parent.mkdir(parents=True, exist_ok=True)
                Path(step.target).write_text(step.content or "")
                added["files"].append(step.target)
            elif step.what == "mkdir":
                Path(step.target).mkdir(parents=True, exist_ok=True)
            elif step.what == "remove":
                Path(step.target).unlink(missing_ok=True)
            elif step.what == "run":
                if not run_commands:
                    print(f"  (skipped: --prefix {prefix})")
                    continue
                result = subprocess.run(step.target.split(), capture_output=True, text=True)
                if result.returncode != 0:
                    failures += 1
                    print(f"  failed ({result.returncode}): {result.stderr.strip()}", file=sys.stderr)
                elif step.target.startswith("groupadd"):
                    added["group"] = True
        except OSError as exc:
            failures += 1
            print(f"  failed: {exc}", file=sys.stderr)
    if record is not None and not dry_run:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(added, indent=2) + "\n")
    return 1 if failures else 0


def install(prefix: Path, dry_run: bool) -> int:
    try:
        grp.getgrnam("govd")
        exists = True
    except KeyError:
        exists = False
    expose, warning = hidden_runtime_paths()
    if warning:
        print(f"govd install: warning: {warning}", file=sys.stderr)
    if expose:
        print("govd runs from " + ", ".join(map(str, expose)) + ", which the unit's ProtectHome=/PrivateTmp= would "
              f"hide (status 203/EXEC at start); {DROPIN_NAME} binds it read-only")
    steps = install_plan(prefix, govd_executable(), exists, expose)
    return execute(steps, prefix, dry_run, record=prefix / "var/lib/govd/install.json")


def uninstall(prefix: Path, dry_run: bool) -> int:
    record = prefix / "var/lib/govd/install.json"
    try:
        added = json.loads(record.read_text())
    except (OSError, ValueError):
        added = {}
    code = execute(uninstall_plan(prefix, added), prefix, dry_run)
    if not dry_run:
        record.unlink(missing_ok=True)
    return code
