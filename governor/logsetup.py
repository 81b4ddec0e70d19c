"""Logging: journald with structured fields under systemd, plain lines on stderr otherwise."""

from __future__ import annotations

import logging
import sys
from collections import deque

from .systemd_integration import JournalHandler, under_journald


def setup_logging(level: str = "info") -> None:
    if under_journald():
        handler: logging.Handler = JournalHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("govd[%(threadName)s] %(levelname)s: %(message)s"))
    handler.govd_console = True  # replaced on the next call; other handlers (the snapshot's log tail) stay
    root = logging.getLogger("govd")
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "govd_console", False)] + [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False


class LogTail(logging.Handler):
    """The last lines of the daemon's log, for `govctl snapshot`."""

    def __init__(self, size: int = 500):
        super().__init__(logging.DEBUG)
        self.lines: deque = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            pass
