"""The persistent ledger: SQLite in the state folder, one row per GPU per minute, plus lifetime totals.

WAL mode and a commit every minute, so a crash loses at most the last minute. Lifetime totals are
the sums of the rows ever written (kept in their own table, so retention never shrinks them). A
corrupt or unreadable database is moved aside with a warning and a new one started: the ledger
must never take the daemon down.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("govd")

SCHEMA = """
CREATE TABLE IF NOT EXISTS minutes (
    gpu_uuid TEXT NOT NULL,
    minute INTEGER NOT NULL,          -- unix time of the minute's start
    gpu_index INTEGER,
    policy TEXT,
    measured_j REAL NOT NULL,
    counterfactual_j REAL NOT NULL,
    saved_j REAL NOT NULL,
    saved_lo_j REAL NOT NULL,
    saved_hi_j REAL NOT NULL,
    slowdown REAL NOT NULL,
    PRIMARY KEY (gpu_uuid, minute)
);
CREATE TABLE IF NOT EXISTS lifetime (
    gpu_uuid TEXT PRIMARY KEY,
    gpu_index INTEGER,
    measured_j REAL NOT NULL,
    saved_j REAL NOT NULL,
    saved_lo_j REAL NOT NULL,
    saved_hi_j REAL NOT NULL,
    first_minute INTEGER NOT NULL,
    last_minute INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT NOT NULL,
    gpu_uuid TEXT NOT NULL,
    gpu_index INTEGER,
    policy TEXT,
    user TEXT,
    started REAL NOT NULL,            -- unix time
    ended REAL,                       -- NULL while the job runs
    end_reason TEXT,                  -- "ended", or why govd closed it
    measured_j REAL NOT NULL DEFAULT 0,
    counterfactual_j REAL NOT NULL DEFAULT 0,
    saved_j REAL NOT NULL DEFAULT 0,
    saved_lo_j REAL NOT NULL DEFAULT 0,
    saved_hi_j REAL NOT NULL DEFAULT 0,
    slowdown REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, gpu_uuid)
);
"""
VERSION = "1"


@dataclass(frozen=True)
class MinuteRow:
    gpu_uuid: str
    gpu_index: int
    minute: int
    policy: str
    measured_j: float
    counterfactual_j: float
    saved_j: float
    saved_lo_j: float
    saved_hi_j: float
    slowdown: float


class LedgerStore:
    def __init__(self, path: Path, retention_days: float = 90.0):
        self.path = Path(path)
        self.retention_days = retention_days
        self._last_prune = 0.0
        self._lock = threading.Lock()  # the supervisor writes while the control thread reads
        self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("ledger %s is unreadable (%s); moved aside to %s, starting a new one", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    p.rename(Path(str(aside) + suffix))
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('version', ?)", (VERSION,))
            elif row[0] != VERSION:
                raise sqlite3.DatabaseError(f"ledger version {row[0]}, expected {VERSION}")
            db.execute("PRAGMA quick_check").fetchone()
            db.commit()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def write(self, rows: list[MinuteRow]) -> None:
        """Add minute rows (a minute already present is added to) and fold them into lifetime totals."""
        if not rows:
            return
        with self._lock:
            self._write(rows)

    def _write(self, rows: list[MinuteRow]) -> None:
        try:
            with self.db:
                for r in rows:
                    self.db.execute(
                        """INSERT INTO minutes VALUES (?,?,?,?,?,?,?,?,?,?)
                           ON CONFLICT(gpu_uuid, minute) DO UPDATE SET
                             measured_j = measured_j + excluded.measured_j,
                             counterfactual_j = counterfactual_j + excluded.counterfactual_j,
                             saved_j = saved_j + excluded.saved_j,
                             saved_lo_j = saved_lo_j + excluded.saved_lo_j,
                             saved_hi_j = saved_hi_j + excluded.saved_hi_j,
                             slowdown = excluded.slowdown, policy = excluded.policy""",
                        (r.gpu_uuid, r.minute, r.gpu_index, r.policy, r.measured_j, r.counterfactual_j, r.saved_j,
                         r.saved_lo_j, r.saved_hi_j, r.slowdown))
                    self.db.execute(
                        """INSERT INTO lifetime VALUES (?,?,?,?,?,?,?,?)
                           ON CONFLICT(gpu_uuid) DO UPDATE SET
                             gpu_index = excluded.gpu_index,
                             measured_j = measured_j + excluded.measured_j,
                             saved_j = saved_j + excluded.saved_j,
                             saved_lo_j = saved_lo_j + excluded.saved_lo_j,
                             saved_hi_j = saved_hi_j + excluded.saved_hi_j,
                             last_minute = excluded.last_minute""",
                        (r.gpu_uuid, r.gpu_index, r.measured_j, r.saved_j, r.saved_lo_j, r.saved_hi_j, r.minute,
                         r.minute))
            self._prune()
        except sqlite3.DatabaseError as exc:
            log.error("ledger write failed (%s); reopening", exc)
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = self._open()

    def _prune(self) -> None:
        now = time.time()
        if now - self._last_prune < 3600:
            return
        self._last_prune = now
        cutoff = int(now - self.retention_days * 86400)
        with self.db:
            self.db.execute("DELETE FROM minutes WHERE minute < ?", (cutoff,))

    def prune_now(self, now: float | None = None) -> int:
        cutoff = int((time.time() if now is None else now) - self.retention_days * 86400)
        with self.db:
            cur = self.db.execute("DELETE FROM minutes WHERE minute < ?", (cutoff,))
        return cur.rowcount

    def lifetime(self) -> dict[str, dict]:
        with self._lock:
            return lifetime_rows(self.db)

    # ----- jobs --------------------------------------------------------------------------------
    def job_exists(self, job_id: str) -> bool:
        with self._lock:
            return self.db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None

    def start_job(self, job_id: str, gpus: list[tuple[str, int]], policy: str, user: str, started: float) -> None:
        with self._lock, self.db:
            for uuid, index in gpus:
                self.db.execute("INSERT INTO jobs (job_id, gpu_uuid, gpu_index, policy, user, started) "
                                "VALUES (?,?,?,?,?,?)", (job_id, uuid, index, policy, user, started))

    def update_job(self, job_id: str, uuid: str, totals: dict, ended: float | None = None,
                   end_reason: str | None = None) -> None:
        """A job's totals on one GPU so far (cumulative: replaced, not added), and its end if over."""
        with self._lock, self.db:
            self.db.execute("UPDATE jobs SET measured_j=?, counterfactual_j=?, saved_j=?, saved_lo_j=?, saved_hi_j=?, "
                            "slowdown=?, ended=COALESCE(?, ended), end_reason=COALESCE(?, end_reason) "
                            "WHERE job_id=? AND gpu_uuid=?",
                            (totals["measured_j"], totals["counterfactual_j"], totals["saved_j"], totals["saved_lo_j"],
                             totals["saved_hi_j"], totals["slowdown"], ended, end_reason, job_id, uuid))

    def close_open_jobs(self, ended: float, reason: str) -> list[str]:
        """Jobs whose end never came (the node or govd restarted): closed with their last totals."""
        with self._lock, self.db:
            ids = [r[0] for r in self.db.execute("SELECT DISTINCT job_id FROM jobs WHERE ended IS NULL")]
            self.db.execute("UPDATE jobs SET ended=?, end_reason=? WHERE ended IS NULL", (ended, reason))
        return ids

    def minutes(self, since: float | None = None, gpu_index: int | None = None) -> list[MinuteRow]:
        with self._lock:
            return minute_rows(self.db, since, gpu_index)

    def close(self) -> None:
        with self._lock:
            try:
                self.db.close()
            except sqlite3.Error:
                pass


def open_read_only(path: Path) -> sqlite3.Connection:
    """For `govctl ledger`: read while the daemon writes (WAL), never create or move anything."""
    if not Path(path).exists():
        raise FileNotFoundError(path)
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)


def lifetime_rows(db: sqlite3.Connection) -> dict[str, dict]:
    rows = db.execute("SELECT gpu_uuid, gpu_index, measured_j, saved_j, saved_lo_j, saved_hi_j, first_minute, "
                      "last_minute FROM lifetime").fetchall()
    keys = ("gpu_uuid", "gpu_index", "measured_j", "saved_j", "saved_lo_j", "saved_hi_j", "first_minute",
            "last_minute")
    return {r[0]: dict(zip(keys, r, strict=True)) for r in rows}


JOB_KEYS = ("job_id", "gpu_uuid", "gpu_index", "policy", "user", "started", "ended", "end_reason", "measured_j",
            "counterfactual_j", "saved_j", "saved_lo_j", "saved_hi_j", "slowdown")


def job_rows(db: sqlite3.Connection, job_id: str | None = None, since: float = 0.0) -> list[dict]:
    """One row per job and GPU: a job by id, or every job that ran since `since`."""
    q = f"SELECT {', '.join(JOB_KEYS)} FROM jobs WHERE COALESCE(ended, 9e18) >= ?"
    args: list = [since]
    if job_id is not None:
        q += " AND job_id = ?"
        args.append(job_id)
    return [dict(zip(JOB_KEYS, r, strict=True)) for r in db.execute(q + " ORDER BY started, gpu_index", args)]


def minute_rows(db: sqlite3.Connection, since: float | None = None, gpu_index: int | None = None) -> list[MinuteRow]:
    q = ("SELECT gpu_uuid, gpu_index, minute, policy, measured_j, counterfactual_j, saved_j, saved_lo_j, "
         "saved_hi_j, slowdown FROM minutes WHERE minute >= ?")
    args: list = [int(since or 0)]
    if gpu_index is not None:
        q += " AND gpu_index = ?"
        args.append(gpu_index)
    return [MinuteRow(*r) for r in db.execute(q + " ORDER BY minute, gpu_index", args).fetchall()]
