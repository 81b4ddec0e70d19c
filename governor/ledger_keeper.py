"""The daemon's ledger duties: write every GPU's totals to the store at each minute's end (and
every `ledger.flush_s`), and log the savings now and then, with GOVD_SAVED_J for the journal.

Written at each minute's end and every flush interval, not on every supervisor pass, which had
cost a third of the daemon's CPU with one GPU (docs/benchmarks.md, "The daemon's own cost").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .ledger_report import ledger_view
from .ledger_store import LedgerStore, MinuteRow
from .pricing import Pricing

if TYPE_CHECKING:
    from .worker import GpuWorker

log = logging.getLogger("govd")


def next_flush_time(now: float, flush_s: float) -> float:
    """When the ledger is next written: flush_s from now, but never past the next wall-clock minute.

    Stopping at each minute boundary keeps every stored row's totals inside the minute it is filed
    under, so `govctl ledger --since` and the retention cut see the hours the energy was used in.
    """
    return min(now + flush_s, (now // 60 + 1) * 60)


class LedgerKeeper:
    def __init__(self, store: LedgerStore):
        self.store = store
        self._next_flush = 0.0  # wall time of the next write (0: at the first supervisor pass)
        self._flush_from = time.time()  # wall time the unwritten totals began

    def due(self) -> bool:
        return time.time() >= self._next_flush

    def flush(self, workers: Sequence[GpuWorker], flush_s: float) -> None:
        """Write each GPU's totals since the last write, filed under the minute they began in, and
        set the next write `flush_s` from now (never past the minute's end).

        A crash loses at most the `flush_s` since the last write (never more than a minute).
        """
        self._next_flush = next_flush_time(time.time(), flush_s)
        minute = int(self._flush_from // 60 * 60)
        self._flush_from = time.time()
        rows = []
        for w in workers:
            t = w.ledger.take_minute()
            if t.time_s <= 0:
                continue
            lo, hi = t.bounds()
            rows.append(MinuteRow(gpu_uuid=w.info.uuid, gpu_index=w.info.index, minute=minute, policy=w.policy.name,
                                  measured_j=t.measured_j, counterfactual_j=t.counterfactual_j, saved_j=t.saved_j,
                                  saved_lo_j=lo, saved_hi_j=hi, slowdown=t.slowdown))
        self.store.write(rows)


def log_savings(workers: Sequence[GpuWorker], store: LedgerStore | None, pricing: Pricing) -> None:
    """One line per GPU: used and saved since start with the interval, priced, and the lifetime saving."""
    lifetime = store.lifetime() if store else {}
    for w in workers:
        v = ledger_view(w.ledger, lifetime.get(w.info.uuid), pricing, time.time())
        s = v.since_start
        log.info("GPU %d ledger: used %.1f kJ, saved %.1f kJ [%.1f, %.1f] since start (%.4f kWh, %.4f %s, "
                 "%.4f kg CO2e); lifetime saved %.3f kWh", w.info.index, s.measured_j / 1000,
                 s.saved_j / 1000, s.saved_lo_j / 1000, s.saved_hi_j / 1000, s.kwh, s.money,
                 s.currency, s.co2e_kg, v.lifetime.kwh,
                 extra={"GOVD_GPU": w.info.index, "GOVD_POLICY": w.policy.name, "GOVD_SAVED_J": s.saved_j})
