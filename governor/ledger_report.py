"""`govctl ledger`'s report: the stored per-minute rows of the ledger, summed per GPU and priced.

One function for both ways to get it: through the daemon (the `ledger` command, for members of
the govd group who may not read the state folder) and straight from the database file when no
daemon runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .errors import GovdError
from .ledger import GpuLedger
from .ledger_store import lifetime_rows, minute_rows, open_read_only
from .pricing import Pricing
from .wire import LedgerTotals, LedgerView, LifetimeTotals

T = TypeVar("T")


def ledger_view(ledger: GpuLedger, stored: dict | None, pricing: Pricing, now_wall: float) -> LedgerView:
    """One GPU's ledger as status and the periodic log line show it: since start, and over its
    lifetime (the stored totals plus what is not written yet), priced."""
    since = ledger.since_start.to_dict()
    unflushed = ledger.minute
    lo, hi = unflushed.bounds()
    life_saved = (stored["saved_j"] if stored else 0.0) + unflushed.saved_j
    return LedgerView(
        since_start=LedgerTotals(**since, **pricing.describe(since["saved_j"], now_wall)),
        lifetime=LifetimeTotals(saved_j=round(life_saved, 3),
                                saved_lo_j=round((stored["saved_lo_j"] if stored else 0.0) + lo, 3),
                                saved_hi_j=round((stored["saved_hi_j"] if stored else 0.0) + hi, 3),
                                measured_j=round((stored["measured_j"] if stored else 0.0) + unflushed.measured_j, 3),
                                **pricing.describe(life_saved, now_wall)))


def read_ledger(db_path: Path, read: Callable[[sqlite3.Connection], T]) -> T:
    """Run read() on the ledger database opened read-only, for every report (per GPU, per job):
    whatever is wrong with the file (missing, not readable, not a ledger, a table an older govd did
    not write) is a GovdError that says so."""
    try:
        db = open_read_only(db_path)
    except FileNotFoundError:
        raise GovdError(f"no ledger at {db_path}: govd has not recorded anything yet") from None
    except (PermissionError, sqlite3.Error) as exc:
        raise GovdError(f"cannot open {db_path} ({exc}); ask the daemon instead (it serves the ledger to the govd "
                        "group while it runs)") from None
    try:
        return read(db)
    except sqlite3.DatabaseError as exc:
        raise GovdError(f"{db_path}: unreadable ({exc})") from None
    finally:
        db.close()


def ledger_report(db_path: Path, pricing: Pricing, since: float = 0.0, gpu: int | None = None) -> dict:
    """Per GPU since `since` (a wall time; 0: all recorded): minutes, energy used and saved with its
    interval, kWh, money, CO2e and the lifetime saving. Raises GovdError with what is wrong."""
    rows, lifetime = read_ledger(db_path, lambda db: (minute_rows(db, since, gpu), lifetime_rows(db)))
    per_gpu: dict[int, dict] = {}
    for r in rows:
        g = per_gpu.setdefault(r.gpu_index, {"gpu": r.gpu_index, "uuid": r.gpu_uuid, "minutes": 0, "measured_j": 0.0,
                                             "saved_j": 0.0, "saved_lo_j": 0.0, "saved_hi_j": 0.0, "co2e_kg": 0.0})
        g["minutes"] += 1
        for key in ("measured_j", "saved_j", "saved_lo_j", "saved_hi_j"):
            g[key] += getattr(r, key)
        g["co2e_kg"] += pricing.carbon_kg(r.saved_j, r.minute)
    for g in per_gpu.values():
        g["kwh"] = pricing.kwh(g["saved_j"])
        g["money"] = pricing.money(g["saved_j"])
        g["currency"] = pricing.currency
        life = lifetime.get(g["uuid"])
        g["lifetime_saved_kwh"] = pricing.kwh(life["saved_j"]) if life else 0.0
    return {"since": since or None, "gpus": sorted(per_gpu.values(), key=lambda g: g["gpu"])}
