"""Logging: journald with structured fields under systemd, plain lines on stderr otherwise."""

from __future__ import annotations

import logging
import sys

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
