"""Wakeup: what a signal handler pokes instead of setting an Event (governor/wakeup.py)."""

import threading
import time

from governor.wakeup import Wakeup


def test_a_poke_from_another_thread_ends_a_wait_and_is_consumed():
    w = Wakeup()
    try:
        threading.Timer(0.2, w.poke).start()
        t0 = time.monotonic()
        w.wait(10.0)
        assert time.monotonic() - t0 < 5.0  # woken by the poke, not the timeout
        for _ in range(10_000):  # more pokes than the pipe holds: none blocks, one wait takes them all
            w.poke()
        w.wait(10.0)
        t0 = time.monotonic()
        w.wait(0.2)  # nothing pending now: waits its timeout
        assert time.monotonic() - t0 >= 0.15
    finally:
        w.close()


def test_a_closed_wakeup_neither_writes_nor_waits():
    w = Wakeup()
    w.close()
    w.poke()
    w.wait(5.0)  # returns at once
    w.close()
