"""The daemon's side of systemd: sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and
structured logging to journald.

systemd-python is used where it is installed (the optional extra `govd[systemd]`); otherwise a small
pure-Python implementation of the same two protocols: a datagram of `KEY=value` lines to
$NOTIFY_SOCKET, and journald's native protocol on /run/systemd/journal/socket. Every send is
best-effort: systemd.daemon.notify raises when NOTIFY_SOCKET names a missing socket, and a daemon
must not die because its supervisor went away.
"""

from __future__ import annotations

import logging
import os
import socket
import time

JOURNAL_SOCKET = "/run/systemd/journal/socket"
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _systemd_daemon():
    try:
        from systemd import daemon  # type: ignore[import-not-found]
    except ImportError:
        return None
    return daemon


class Notifier:
    """Talks to the service manager, if there is one (NOTIFY_SOCKET set); silent otherwise."""

    def __init__(self, env: dict | None = None, use_library: bool = True):
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET")
        self.library = _systemd_daemon() if use_library else None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) \
            else None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields) -> bool:
        if not self.address:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items())
        try:
            if self.library is not None:
                return bool(self.library.notify(message))
            addr = self.address
            if addr.startswith("@"):
                addr = "\0" + addr[1:]
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(addr)
                s.sendall(message.encode())
            return True
        except OSError:
            return False

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def reloading(self) -> bool:
        return self.send(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1e6))

    def stopping(self) -> bool:
        return self.send(STOPPING=1)

    def watchdog(self, healthy: bool) -> bool:
        """Ping at half the watchdog interval, and only while every GPU loop makes progress."""
        if self.watchdog_s is None or not healthy:
            return False
        now = time.monotonic()
        if now - self._last_ping < self.watchdog_s / 2:
            return False
        self._last_ping = now
        return self.send(WATCHDOG=1)


class JournalHandler(logging.Handler):
    """Log records as journald entries with structured fields (GOVD_GPU, GOVD_POLICY, ...).

    Fields come from the record's `extra` keys that start with GOVD_.
    """

    def __init__(self, path: str = JOURNAL_SOCKET, identifier: str = "govd"):
        super().__init__()
        self.path = path
        self.identifier = identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @staticmethod
    def _field(key: str, value) -> bytes:
        text = str(value)
        if "\n" in text:  # journald's binary-safe form: KEY\n<64-bit little-endian length><data>\n
            data = text.encode()
            return key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        return f"{key}={text}\n".encode()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [self._field("MESSAGE", self.format(record)),
                     self._field("PRIORITY", _PRIORITY.get(record.levelno, 6)),
                     self._field("SYSLOG_IDENTIFIER", self.identifier),
                     self._field("CODE_FUNC", record.funcName), self._field("CODE_LINE", record.lineno)]
            for key, value in record.__dict__.items():
                if key.startswith("GOVD_"):
                    parts.append(self._field(key, value))
            self.sock.sendto(b"".join(parts), self.path)
        except OSError:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def under_journald(env: dict | None = None) -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM to its device:inode)."""
    env = os.environ if env is None else env
    stream = env.get("JOURNAL_STREAM")
    if not stream or not os.path.exists(JOURNAL_SOCKET):
        return False
    try:
        st = os.fstat(2)
        dev, ino = stream.split(":")
        return int(dev) == st.st_dev and int(ino) == st.st_ino
    except (OSError, ValueError):
        return False
