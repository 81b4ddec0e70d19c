"""Logging: plain lines on stderr (journald adds timestamps and priorities under systemd)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("govd[%(threadName)s] %(levelname)s: %(message)s"))
    root = logging.getLogger("govd")
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
