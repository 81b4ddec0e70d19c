"""A wake-up a signal handler can send without taking a lock.

Python runs a signal handler in the main thread between two of its steps, wherever that thread is,
including inside a lock it holds: a handler that sets a threading.Event there waits forever for the
lock the interrupted Event call holds (govd hung so, deaf to SIGTERM, once a SIGTERM came while the
SIGHUP handler ran). A handler instead notes what it was asked in a plain attribute and pokes a
Wakeup; the thread waiting on it reads the note outside any handler.
"""

from __future__ import annotations

import contextlib
import os
import select


class Wakeup:
    """A non-blocking pipe: poke() writes a byte (from a handler or any thread); wait() returns when
    one was written or the timeout passed, and drains them."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def poke(self) -> None:
        """Wake the waiter (a full pipe has a wake-up pending already; a closed one wakes no one)."""
        with contextlib.suppress(OSError):
            if self._w >= 0:
                os.write(self._w, b"\0")

    def wait(self, timeout_s: float) -> None:
        """Until poked or timeout_s seconds passed; the pokes so far are consumed."""
        if self._r < 0:
            return
        select.select([self._r], [], [], max(0.0, timeout_s))
        with contextlib.suppress(OSError):
            while os.read(self._r, 4096):
                pass

    def close(self) -> None:
        """Close the pipe; later pokes write nowhere (not to a file descriptor reused since)."""
        fds, self._r, self._w = (self._r, self._w), -1, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
