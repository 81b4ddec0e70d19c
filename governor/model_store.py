"""The node's model store (STATE_DIR/models.json): what controllers learned about the work, kept per
GPU model and controller, so that work seen before is not learned again after a restart, in the next
job, or on another GPU of the node that runs the same work.

Records are the controllers' own (controllers/base.py: export_models, import_models); the store
keeps the newest per key, at most `MAX_PER_GROUP` per group, and knows only what makes a record
worth offering: the GPU model it was learned on and the driver. A driver other than the one the store
was written under drops every record (clock behaviour and power management change with drivers); a
GPU model no longer on the node drops its records. A file that is not a store (damaged, foreign,
another format) is set aside under a new name with a warning and the store starts empty: nothing is
lost and nothing crashes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_json_atomic

log = logging.getLogger("govd")

STORE_FORMAT = 1
MAX_PER_GROUP = 64  # records per (GPU model, controller): a node runs a few dozen kinds of work at most


@dataclass
class ModelStore:
    """In memory, shared by the node's GPU loops (each exchanges with it on its own thread); written
    by the supervisor with the ledger."""

    path: Path | None  # None: in memory only (offline evaluation)
    driver: str
    groups: dict[tuple[str, str], dict[str, dict]] = field(default_factory=dict)  # (gpu, controller) -> key -> entry
    warnings: list[str] = field(default_factory=list)
    _dirty: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, path: Path | None, driver: str, gpu_names: set[str]) -> ModelStore:
        store = cls(path, driver)
        if path is None or not path.exists():
            return store
        try:
            data = json.loads(path.read_bytes())
            groups = cls._parse(data)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            try:
                path.replace(aside)
                kept = f"; it is kept as {aside}"
            except OSError as move_exc:
                kept = f"; it could not be set aside ({move_exc.strerror})"
            store._warn(f"model store {path} is not a govd model store ({exc}){kept}; starting with none")
            return store
        if data.get("driver") != driver:
            count = sum(len(g) for g in groups.values())
            if count:
                store._warn(f"model store {path}: written under driver {data.get('driver')!r}, this is {driver!r}; "
                            f"its {count} remembered models are dropped and the work is learned anew")
            store._dirty = True
            return store
        for (gpu, controller), entries in groups.items():
            if gpu in gpu_names:
                store.groups[gpu, controller] = entries
            else:
                log.info("model store: no %s on this node any more; its %d remembered models are dropped", gpu,
                         len(entries))
                store._dirty = True
        return store

    @staticmethod
    def _parse(data) -> dict[tuple[str, str], dict[str, dict]]:
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT or not isinstance(data.get("groups"), list):
            raise ValueError(f"expected {{\"format\": {STORE_FORMAT}, \"driver\": ..., \"groups\": [...]}}")
        groups: dict[tuple[str, str], dict[str, dict]] = {}
        for g in data["groups"]:
            if not isinstance(g, dict) or not isinstance(g.get("gpu"), str) \
                    or not isinstance(g.get("controller"), str) or not isinstance(g.get("models"), list):
                raise ValueError("a group without gpu, controller and models")
            entries = {}
            for e in g["models"]:
                if not isinstance(e, dict) or not isinstance(e.get("learned"), int | float) \
                        or not isinstance(e.get("record"), dict) or not isinstance(e["record"].get("key"), str):
                    raise ValueError("a model without learned time, record and key")
                entries[e["record"]["key"]] = e
            groups[g["gpu"], g["controller"]] = entries
        return groups

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s", message)

    def recall(self, gpu: str, controller: str, now: float | None = None) -> list[tuple[dict, float]]:
        """Every record for this GPU model and controller, newest first, with its age in seconds."""
        now = time.time() if now is None else now
        with self._lock:
            entries = sorted(self.groups.get((gpu, controller), {}).values(), key=lambda e: -e["learned"])
            return [(e["record"], max(0.0, now - e["learned"])) for e in entries]

    def remember(self, gpu: str, controller: str, records: list[dict], now: float | None = None) -> None:
        """Keep these records (replacing older ones of the same key), at most MAX_PER_GROUP, newest."""
        if not records:
            return
        now = time.time() if now is None else now
        with self._lock:
            group = self.groups.setdefault((gpu, controller), {})
            for r in records:
                key = r.get("key")
                if not isinstance(key, str):
                    continue
                old = group.get(key)
                if old is None or old["record"] != r:
                    group[key] = {"learned": now, "record": r}
                    self._dirty = True
            if len(group) > MAX_PER_GROUP:
                for key in sorted(group, key=lambda k: group[k]["learned"])[:len(group) - MAX_PER_GROUP]:
                    del group[key]

    def save(self) -> None:
        """Write the file if anything changed (crash-safe: the old file or the new one)."""
        if self.path is None:
            return
        with self._lock:
            if not self._dirty:
                return
            data = {"format": STORE_FORMAT, "driver": self.driver,
                    "groups": [{"gpu": gpu, "controller": c, "models": list(entries.values())}
                               for (gpu, c), entries in sorted(self.groups.items())]}
            self._dirty = False
        write_json_atomic(self.path, data, mode=0o640)

    def count(self) -> int:
        with self._lock:
            return sum(len(g) for g in self.groups.values())
