"""Offline restore (`govd --restore`): put every GPU listed in originals.json back, without the daemon.

systemd runs this as ExecStopPost after any death of govd (clean stop, crash, SIGKILL, watchdog),
so it must need nothing from the dead process. GPUs are restored in reverse order of first write,
each on its own: one that fails stays in the file for a later try, the others still go back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .actuation import give_back
from .atomic import write_text_atomic
from .backends import RestoreOpener
from .errors import GovdError
from .originals import OriginalsFile, owner_alive, render, saved_gpus

log = logging.getLogger("govd")


@dataclass
class RestoreReport:
    found: bool
    gpus: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(g["ok"] for g in self.gpus)

    def to_dict(self) -> dict:
        return {"found": self.found, "ok": self.ok, "error": self.error, "gpus": self.gpus}


def restore_from_originals(path: Path, force: bool = False, nvml=None, allow_self: bool = False) -> RestoreReport:
    data = OriginalsFile.read(path)
    if data is None:
        return RestoreReport(found=False)
    owner = data.get("owner") or {}
    is_self = owner.get("pid") == os.getpid()
    if owner_alive(owner) and not force and not (allow_self and is_self):
        return RestoreReport(found=True, error=f"govd (pid {owner.get('pid')}) is still running and owns these "
                                               "GPUs; stop it first, or pass --force")
    opener = RestoreOpener(nvml)
    report = RestoreReport(found=True)
    remaining = dict(data["gpus"])
    try:
        for saved in saved_gpus(data):
            entry = {"uuid": saved.uuid, "index": saved.handle.get("index"), "backend": saved.handle.get("backend"),
                     "settings": saved.settings.to_dict(), "knobs": [], "ok": False}
            try:
                device = opener.open(saved.handle)
                limits = None
                with contextlib.suppress(GovdError):
                    limits = device.limits()
                gave = give_back(device, saved.settings, limits)
                entry["knobs"] = [r.to_dict() for r in gave.knobs]
                entry["ok"] = gave.ok
                entry["now"] = gave.now.to_dict() if gave.now is not None else None
                if not gave.ok:
                    entry["error"] = gave.problem()
            except GovdError as exc:
                entry["error"] = str(exc)
            if entry["ok"]:
                remaining.pop(saved.uuid, None)
            report.gpus.append(entry)
    finally:
        opener.close()
    if remaining:
        data["gpus"] = remaining
        write_text_atomic(Path(path), render(data))  # the daemon's format: one line per GPU still to restore
    else:
        Path(path).unlink(missing_ok=True)
    return report


def recover_leftovers(originals: Path, runtime_dir: Path) -> None:
    """At start-up: if a previous govd died without restoring, restore its GPUs before touching
    anything. Raises GovdError when another govd owns them, or when one cannot be put back."""
    data = OriginalsFile.read(originals)
    if data is None:
        return
    owner = data.get("owner") or {}
    if owner_alive(owner):
        raise GovdError(f"another govd (pid {owner.get('pid')}) is running with runtime folder {runtime_dir}; stop "
                        "it first")
    log.warning("found %s from a govd that did not exit cleanly (pid %s); restoring its GPUs first", originals,
                owner.get("pid"))
    report = restore_from_originals(originals)
    for gpu in report.gpus:
        log.info("restored GPU %s (%s): %s", gpu.get("index"), gpu["uuid"], "ok" if gpu["ok"] else gpu)
    if not report.ok:
        raise GovdError("could not restore every GPU left changed by a previous govd; see the log, fix, and "
                        "run `govd --restore`")


def do_restore(args, paths) -> int:
    """`govd --restore` and `govctl restore`: restore, print the report, exit 0 only if every GPU is back."""
    report = restore_from_originals(paths.originals, force=args.force)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not report.found:
        print(f"govd --restore: nothing to restore ({paths.originals} does not exist)")
    elif report.error:
        print(f"govd --restore: {report.error}", file=sys.stderr)
    else:
        for g in report.gpus:
            knobs = ", ".join(f"{k['action']}: {'ok' if k['ok'] else k['error']}" for k in g["knobs"])
            if g["ok"]:
                print(f"GPU {g['index']} {g['uuid']}: restored ({knobs})")
            else:
                print(f"GPU {g['index']} {g['uuid']}: FAILED: {g.get('error') or knobs}", file=sys.stderr)
    return 0 if report.ok else 1
