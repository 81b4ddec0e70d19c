"""For tests that start real programs: wait for a condition within a bound, and stop a child this
test started by its own PID (never 0 or 1)."""

from __future__ import annotations

import signal
import subprocess
import time


def wait_for(pred, timeout: float = 30.0, errors: tuple = (OSError,)) -> bool:
    """True once pred() is true, False after timeout seconds; errors raised by pred count as not yet."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return True
        except errors:
            pass
        time.sleep(0.2)
    return False


def stop_child(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """Stop a child this test started, by its own PID (never 0 or 1), and reap it."""
    if proc is None or proc.pid <= 1 or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
