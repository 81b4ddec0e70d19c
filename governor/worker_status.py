"""What `govctl status` shows of one GPU: its state, policy, controller, target and applied
setpoints, the latest sample, limits, envelope, loop statistics, energy, the learned cooling and
the settings a restore gives back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .telemetry import reason_names

if TYPE_CHECKING:
    from .worker import GpuWorker


def _cooling_status(w: GpuWorker) -> dict | None:
    """What the ledger learned of this GPU's cooling (None until it trusts a fit): the power it
    removes at the temperature default settings would hold at the thermal limit, the one number
    the ledger uses. The resistance and inlet behind it trade off against each other when the
    GPU has not been seen far from its working point, so they are not shown as facts."""
    temp = w.throttled_default_c()
    watts = w.ledger.cooling.steady_power_w(temp)
    if watts is None:
        return None
    return {"removes_w": round(watts, 1), "at_temp_c": temp}


def gpu_status(w: GpuWorker) -> dict[str, Any]:
    """One GPU's state for `govctl status` (the wire's GpuStatus)."""
    s = w.last_sample
    return {
        "index": w.info.index, "uuid": w.info.uuid, "name": w.info.name,
        "pci_bus_id": w.info.pci_bus_id, "backend": w.info.backend,
        "state": w.state, "reason": w.reason,
        "policy": w.policy.name, "controller": w.policy.controller, "job": w.job_id,
        "controller_state": w.controller.status(),
        "target": w.target.to_dict() if w.target else None,
        "applied": w.applied.to_dict() if w.applied else None,
        "sample": s.to_dict() if s else None,
        "clock_event_reasons": reason_names(s.clock_event_reasons) if s else [],
        "limits": {"sm_clock_min_mhz": w.limits.sm_clock_min_mhz,
                   "sm_clock_max_mhz": w.limits.sm_clock_max_mhz,
                   "power_limit_min_w": w.limits.power_limit_min_w,
                   "power_limit_max_w": w.limits.power_limit_max_w,
                   "power_limit_default_w": w.limits.power_limit_default_w,
                   "capabilities": w.limits.capabilities.to_dict()},
        "envelope": w.envelope.status(),
        "loop": {"ticks": w.stats.ticks, "overruns": w.stats.overruns, "writes": w.stats.writes,
                 "errors": w.stats.errors, "reversals": w.stats.reversals,
                 "tick_p50_ms": w.stats.percentile_ms(0.5),
                 "tick_p99_ms": w.stats.percentile_ms(0.99), "period_ms": w.period_s * 1000.0},
        "energy_since_start_j": round(w.ledger.meter.joules, 3),
        "ledger": w.ledger.since_start.to_dict(),
        "cooling": _cooling_status(w),
        "originals": _originals_status(w),
    }


def _originals_status(w: GpuWorker) -> dict | None:
    """What a restore would give this GPU back, and whether govd has changed it since (a GPU
    saved at start-up and never written is left alone at a clean stop); None when not listed."""
    saved = w.originals.saved(w.info.uuid)
    if saved is None:
        return None
    return {"settings": saved.to_dict(), "changed_by_govd": w.actuator.wrote}
