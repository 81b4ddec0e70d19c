"""originals.json: each GPU's settings as govd found them, on disk before govd first writes to it.

Written atomically (temp file + rename, mode 0600) so a crash never leaves half a file, and owned
by a process identified by pid *and* start time: after a crash the pid may be reused by another
process, which must not pass for the owner. `govd --restore` (systemd's ExecStopPost) reads this
file when the daemon is gone, however it died, and puts every GPU back.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .atomic import write_text_atomic
from .device import Device
from .errors import DeviceError, GovdError
from .settings import DeviceSettings

VERSION = 1


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_identity(pid: int | None = None) -> dict:
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "create_time": psutil.Process(pid).create_time(), "boot_id": _boot_id()}


def owner_alive(owner: dict) -> bool:
    """True only if the very process that wrote the file still runs (not a reused pid)."""
    if not owner:
        return False
    if owner.get("boot_id") and owner.get("boot_id") != _boot_id():
        return False
    try:
        proc = psutil.Process(int(owner["pid"]))
        return abs(proc.create_time() - float(owner["create_time"])) < 0.05 and proc.status() != "zombie"
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


@dataclass(frozen=True)
class SavedGpu:
    uuid: str
    handle: dict
    settings: DeviceSettings
    order: int


class OriginalsFile:
    """Thread-safe view of originals.json for the daemon that owns it.

    Every change is on disk before the call that made it returns (a GPU is written only once its
    originals are), but GPUs that change together share one write, as the GPUs of one job do
    (docs/decisions/008). A change waits for a write that began after it was made; whoever
    writes next writes every change so far."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()  # guards the in-memory view and its version
        self._write_lock = threading.Lock()  # one write of the file at a time
        self._data: dict | None = None
        self._version = 0  # bumped by every change to the view
        self._durable = 0  # the version the file on disk holds
        self._saved_in: dict[str, int] = {}  # uuid -> the version that added it
        self._deferring = 0  # inside forgetting_together(): forget() leaves the write to its end

    @staticmethod
    def read(path: Path) -> dict | None:
        try:
            with Path(path).open() as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise GovdError(f"{path}: unreadable ({exc}); restore each GPU by hand with "
                            "`nvidia-smi -rgc` and `nvidia-smi -pl DEFAULT`, then remove the file") from None
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("gpus"), dict):
            raise GovdError(f"{path}: not a govd originals file (version {VERSION})")
        return data

    def save_once(self, device: Device) -> bool:
        """Save this GPU's current settings unless already saved; True if saved now. Returns once
        the file on disk holds them (at once when it already does: a GPU saved at start-up never
        waits for another GPU's write). The GPU is read outside the lock: one GPU's slow read must
        not hold up the others' first writes."""
        uuid = device.info.uuid
        with self._lock:
            version = self._saved_in.get(uuid)
        if version is None:
            saved = self._add({uuid: self._entry(device)})
            return uuid in saved
        self._persist(version)  # saved by a call whose write may not be done: wait for it too
        return False

    def save_all(self, devices: list[Device]) -> dict[str, str]:
        """Save every GPU not saved yet in one write, before any is written to; returns the GPUs
        that could not be read ({uuid: why}), which are then saved at their first write instead.

        The daemon takes the originals of every GPU it manages at start-up, so that no loop waits
        for the disk at its first write (docs/decisions/008)."""
        entries, failed = {}, {}
        for device in devices:
            try:
                entries[device.info.uuid] = self._entry(device)
            except DeviceError as exc:
                failed[device.info.uuid] = str(exc)
        if entries:
            self._add(entries)
        return failed

    @staticmethod
    def _entry(device: Device) -> dict:
        return {"handle": device.restore_handle(), "settings": device.read_settings().to_dict()}

    def _add(self, entries: dict[str, dict]) -> set[str]:
        """Add the GPUs not saved yet and put them on disk; returns the uuids added by this call."""
        with self._lock:
            if self._data is None:
                self._data = {"version": VERSION, "owner": process_identity(), "gpus": {}}
            gpus = self._data["gpus"]
            added = {uuid for uuid in entries if uuid not in gpus}
            if added:
                self._version += 1
            now = time.time()
            for uuid in added:
                gpus[uuid] = {**entries[uuid], "order": len(gpus), "saved_at": now}
                self._saved_in[uuid] = self._version
            version = max(self._saved_in[uuid] for uuid in entries)
        self._persist(version)
        return added

    def saved(self, uuid: str) -> DeviceSettings | None:
        with self._lock:
            if self._data is None or uuid not in self._data["gpus"]:
                return None
            return DeviceSettings.from_dict(self._data["gpus"][uuid]["settings"])

    def update(self, uuid: str, settings: DeviceSettings) -> None:
        """Change what a restore gives a listed GPU (another program now owns some of its settings)."""
        with self._lock:
            if self._data is None or uuid not in self._data["gpus"]:
                return
            self._data["gpus"][uuid] = {**self._data["gpus"][uuid], "settings": settings.to_dict()}
            self._version += 1
            version = self._version
        self._persist(version)

    def forget(self, uuid: str) -> None:
        """Drop a GPU once it is back to its originals (or handed to another program)."""
        with self._lock:
            if self._data is None or uuid not in self._data["gpus"]:
                return
            del self._data["gpus"][uuid]
            del self._saved_in[uuid]
            if not self._data["gpus"]:
                self._data = None
            self._version += 1
            version = self._version
            if self._deferring:
                return
        self._persist(version)

    @contextlib.contextmanager
    def forgetting_together(self):
        """GPUs forgotten inside are dropped from the file in one write at the end, not one each:
        shutdown restores 64 GPUs one after another. Until then the file still lists GPUs already
        restored, which a restore after a crash in between puts back once more: the same values."""
        with self._lock:
            self._deferring += 1
        try:
            yield
        finally:
            with self._lock:
                self._deferring -= 1
                version = self._version
            self._persist(version)

    def _persist(self, version: int) -> None:
        """Make the file hold at least `version` of the view: the latest one, written whole
        (or removed once no GPU is left to restore)."""
        if self._durable >= version:
            return  # already on disk: no need to queue behind a write in progress
        with self._write_lock:
            if self._durable >= version:
                return  # a write that began after this change has put it on disk
            with self._lock:  # the text is the snapshot: rendered under the lock, written outside it
                latest = self._version
                text = render(self._data) if self._data is not None else None
            if text is None:
                self.path.unlink(missing_ok=True)
            else:
                write_text_atomic(self.path, text)
            self._durable = latest


def render(data: dict) -> str:
    """originals.json as text: one line per GPU (`grep` its uuid to see what it will get back).

    Written by the C JSON encoder, entry by entry, which holds the interpreter lock far shorter
    than the indenting one (docs/decisions/008)."""
    head = {k: v for k, v in data.items() if k != "gpus"}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}," for k, v in sorted(head.items())]
    gpus = [f"    {json.dumps(uuid)}: {json.dumps(entry, sort_keys=True)}" for uuid, entry in data["gpus"].items()]
    lines += ['  "gpus": {', ",\n".join(gpus), "  }", "}"] if gpus else ['  "gpus": {}', "}"]
    return "\n".join(lines) + "\n"


def saved_gpus(data: dict) -> list[SavedGpu]:
    """Entries of an originals file, last saved first (restore runs in reverse order of change)."""
    out = []
    for uuid, entry in data.get("gpus", {}).items():
        out.append(SavedGpu(uuid=uuid, handle=entry["handle"], settings=DeviceSettings.from_dict(entry["settings"]),
                            order=int(entry.get("order", 0))))
    return sorted(out, key=lambda g: -g.order)
