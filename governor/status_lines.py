"""The daemon's short status: one line for systemd's StatusText, one log line per GPU."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .worker import GpuWorker

log = logging.getLogger("govd")


def one_line_status(workers: Sequence[GpuWorker]) -> str:
    managed = sum(1 for w in workers if w.state == "managed")
    policies = sorted({w.policy.name for w in workers})
    saved = sum(w.ledger.since_start.saved_j for w in workers)
    return (f"{managed}/{len(workers)} GPUs managed, policy {', '.join(policies) or '-'}, "
            f"saved {saved / 1000:.1f} kJ since start")


def log_status(workers: Sequence[GpuWorker]) -> None:
    """One line per GPU: what it is doing and what govd has measured so far."""
    for w in workers:
        s = w.last_sample
        if s is None:
            continue
        target = w.target.sm_clock_max_mhz if w.target and w.target.sm_clock_max_mhz else "-"
        log.info("GPU %d: %s, policy %s, SM %d MHz (ceiling %s), %.0f W (limit %.0f W), %.0f C, util %.0f%%, "
                 "%.1f kJ since start", w.info.index, w.state, w.policy.name, s.sm_clock_mhz, target, s.power_w,
                 s.power_limit_w, s.temp_c, s.gpu_util_pct, w.ledger.meter.joules / 1000.0,
                 extra={"GOVD_GPU": w.info.index, "GOVD_POLICY": w.policy.name})
