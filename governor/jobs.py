"""Jobs: a scheduler's job on some of the node's GPUs (`govctl job start ID --gpus 0,1`, Slurm's
Prolog), with its own policy while it runs and its own line in the ledger: energy used and saved
with the interval, per GPU, money and CO2e.

A job's totals go to the store with every ledger write (a crash loses at most `ledger.flush_s`)
and at its end. A job whose end never comes (the node or govd restarted) is closed at the next
start, marked as such, with the totals last written.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import GovdError
from .ledger import Totals
from .ledger_report import read_ledger
from .ledger_store import LedgerStore, job_rows
from .policy import Policy
from .pricing import Pricing

if TYPE_CHECKING:
    from .worker import GpuWorker

log = logging.getLogger("govd")

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
RESTARTED = "closed at govd's next start: the node or govd restarted before the job's end"


def totals_dict(t: Totals) -> dict:
    lo, hi = t.bounds()
    return {"measured_j": t.measured_j, "counterfactual_j": t.counterfactual_j, "saved_j": t.saved_j,
            "saved_lo_j": lo, "saved_hi_j": hi, "slowdown": t.slowdown}


class JobIdUsed(GovdError):
    """The job id is in the ledger already (a job id is used once)."""


@dataclass
class Job:
    job_id: str
    gpus: list[int]  # indexes
    policy: str  # the policy it runs ("" : the node's)
    user: str
    started: float


class JobBook:
    """The jobs running on this node, and their lines in the store."""

    def __init__(self, store: LedgerStore | None):
        self.store = store
        self.running: dict[str, Job] = {}

    def close_leftovers(self) -> None:
        if self.store is None:
            return
        closed = self.store.close_open_jobs(time.time(), RESTARTED)
        if closed:
            log.warning("jobs %s had not ended when govd last stopped; closed with their last written totals",
                        ", ".join(closed))

    def job_of(self, gpu: int) -> str | None:
        return next((j.job_id for j in self.running.values() if gpu in j.gpus), None)

    def start(self, job_id: str, workers: Sequence[GpuWorker], policy: Policy | None, user: str) -> Job:
        """Give the job its GPUs (and its policy); raises GovdError naming what is wrong."""
        if not JOB_ID.fullmatch(job_id):
            raise GovdError(f"{job_id[:80]!r} is not a job id (letters, digits, '_', '.', ':', '-'; at most 64)")
        if job_id in self.running or (self.store is not None and self.store.job_exists(job_id)):
            raise JobIdUsed(f"job {job_id} has been started already (a job id is used once)")
        for w in workers:
            other = self.job_of(w.info.index)
            if other is not None:
                raise GovdError(f"GPU {w.info.index} runs job {other}; end it first")
        job = Job(job_id, [w.info.index for w in workers], policy.name if policy else "", user, time.time())
        if self.store is not None:
            self.store.start_job(job_id, [(w.info.uuid, w.info.index) for w in workers], job.policy, user,
                                 job.started)
        for w in workers:
            w.start_job(job_id, policy)
        self.running[job_id] = job
        log.info("job %s started on GPU %s%s", job_id, ", ".join(map(str, job.gpus)),
                 f" with policy {job.policy}" if job.policy else "")
        return job

    def end(self, job_id: str, workers: Sequence[GpuWorker], node_policy: Callable[[GpuWorker], Policy]) -> None:
        """The job's GPUs go back to the node's policy; its totals are written, marked ended."""
        job = self.running.pop(job_id, None)
        if job is None:
            raise GovdError(f"job {job_id} is not running here")
        now = time.time()
        for w in workers:
            if w.info.index not in job.gpus:
                continue
            totals = w.end_job(node_policy(w))
            if self.store is not None and totals is not None:
                self.store.update_job(job_id, w.info.uuid, totals_dict(totals), ended=now, end_reason="ended")
        log.info("job %s ended", job_id)

    def write(self, workers: Sequence[GpuWorker]) -> None:
        """Every running job's totals so far, with the ledger's own write."""
        if self.store is None:
            return
        for w in workers:
            if w.job_id is not None and w.ledger.job is not None:
                self.store.update_job(w.job_id, w.info.uuid, totals_dict(w.ledger.job))


def job_report(db_path, pricing: Pricing, job_id: str | None = None, since: float = 0.0) -> dict:
    """Jobs with their GPUs' lines, summed and priced: one job by id, or every job since `since`."""
    rows = read_ledger(db_path, lambda db: job_rows(db, job_id, since))
    if job_id is not None and not rows:
        raise GovdError(f"no job {job_id} in the ledger")
    jobs: dict[str, dict] = {}
    for r in rows:
        j = jobs.setdefault(r["job_id"], {"job": r["job_id"], "user": r["user"], "policy": r["policy"],
                                          "started": r["started"], "ended": r["ended"], "end_reason": r["end_reason"],
                                          "gpus": [], "measured_j": 0.0, "saved_j": 0.0, "saved_lo_j": 0.0,
                                          "saved_hi_j": 0.0})
        j["gpus"].append({k: r[k] for k in ("gpu_index", "gpu_uuid", "measured_j", "counterfactual_j", "saved_j",
                                            "saved_lo_j", "saved_hi_j", "slowdown")})
        for k in ("measured_j", "saved_j", "saved_lo_j", "saved_hi_j"):
            j[k] += r[k]
    for j in jobs.values():
        j.update({"used_kwh": pricing.kwh(j["measured_j"]), **pricing.describe(j["saved_j"], j["started"])})
    return {"jobs": list(jobs.values())}
