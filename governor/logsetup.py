"""Logging: plain lines on stderr (journald adds timestamps and priorities under systemd)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("govd[%(threadName)s] %(levelname)s: %(message)s"))
    handler.govd_console = True  # replaced on the next call; other handlers (the snapshot's log tail) stay
    root = logging.getLogger("govd")
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "govd_console", False)] + [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
