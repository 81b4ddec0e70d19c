"""The control socket: JSON lines over a Unix socket, one thread, bounded in every direction.

Who may do what is decided from the kernel's word about the peer (SO_PEERCRED), never from anything
the client says: read commands are open to whoever can connect (the socket is 0660, root and the
`govd` group); commands that change anything need uid 0, the daemon's own uid (an unprivileged
demo daemon steered by its owner), or membership of the configured admin group.

Bad input never takes the daemon down: malformed JSON and wrong requests get an error reply and the
connection stays usable; an oversized line, an idle or non-reading client, or one client too many
gets an error reply (where possible) and is disconnected.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .protocol import (
    BUSY_IDLE_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    LISTEN_BACKLOG,
    MAX_CLIENTS,
    MAX_CLIENTS_PER_UID,
    MAX_LINE_BYTES,
    MAX_PENDING_REPLY_BYTES,
    RESERVED_FOR_ADMINS,
    Command,
    ProtocolError,
    parse_request,
    reply_error,
    reply_ok,
)
from .wire import ErrorCode

log = logging.getLogger("govd")


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    def groups(self) -> set[int]:
        """The peer's supplementary groups, from /proc (the kernel's view, not the client's)."""
        gids = {self.gid}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("Groups:"):
                    gids |= {int(g) for g in line.split()[1:]}
        except (OSError, ValueError):
            pass
        return gids


@dataclass
class _Conn:
    sock: socket.socket
    peer: Peer
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    last_active: float = field(default_factory=time.monotonic)
    closing: bool = False
    admin: bool = False  # may change things: counts against the reserved places, never evicted for others


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid=pid, uid=uid, gid=gid)


class ControlServer:
    def __init__(self, path: Path, handler: Callable[[Command, dict, Peer], Any], mode: int = 0o660,
                 group: str = "govd", admin_group: str = ""):
        self.path = Path(path)
        self.handler = handler
        self.mode = mode
        self.group = group
        self.admin_group = admin_group
        self.owner_uid = os.geteuid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sel = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._listener: socket.socket | None = None

    # ----- who may change things ---------------------------------------------------------------
    def _admin_group(self) -> grp.struct_group | None:
        if not self.admin_group:
            return None
        try:
            return grp.getgrnam(self.admin_group)
        except KeyError:
            return None

    def may_change(self, peer: Peer) -> bool:
        """Root, the daemon's own uid, or a member of the admin group as the system knows it now:
        the kernel's credentials of the peer hold the group (it was a member when it logged in)
        and the group database still lists it (removing a user from the group revokes at once)."""
        if peer.uid == 0 or peer.uid == self.owner_uid:
            return True
        group = self._admin_group()
        if group is None or group.gr_gid not in peer.groups():
            return False
        try:
            user = pwd.getpwuid(peer.uid)
        except KeyError:
            return False
        return user.pw_name in group.gr_mem or user.pw_gid == group.gr_gid

    def reconfigure(self, mode: int, group: str, admin_group: str) -> None:
        """Apply socket.mode, socket.group and socket.admin_group now (reload): the socket file is
        re-owned and re-moded, and every later request is checked against the new admin group."""
        self.mode, self.group, self.admin_group = mode, group, admin_group
        self._own_socket()

    def _own_socket(self) -> None:
        os.chmod(self.path, self.mode)
        if os.geteuid() != 0:
            return
        gid = 0
        if self.group:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                log.info("socket group %r does not exist; %s is root-only (create it with `groupadd %s`)",
                         self.group, self.path, self.group)
        try:
            os.chown(self.path, 0, gid)
        except OSError as exc:
            log.warning("cannot give %s to group %r (%s); it is root-only", self.path, self.group, exc)
            os.chmod(self.path, self.mode & 0o700)

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a stale socket from a dead daemon
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # never exposed wider than the owner before the chmod below
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        self._own_socket()
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        self._listener = sock
        self._sel.register(sock, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for conn in list(self._conns.values()):
            self._close(conn)
        if self._listener is not None:
            self._sel.unregister(self._listener)
            self._listener.close()
        self.path.unlink(missing_ok=True)

    # ----- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._sel.select(timeout=0.5)
                for key, mask in events:
                    if key.data is None:
                        self._accept()
                    else:
                        self._service(key.data, mask)
                self._reap_idle()
            except Exception:  # the control socket must never take the daemon down
                log.exception("control socket: unexpected error; continuing")

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        try:
            peer = peer_of(sock)
        except OSError:
            sock.close()
            return
        admin = self.may_change(peer)
        refusal = self._make_room(peer, admin)
        if refusal:
            try:
                sock.send(reply_error(None, ErrorCode.BUSY, refusal))
            except OSError:
                pass
            sock.close()
            return
        conn = _Conn(sock=sock, peer=peer, admin=admin)
        self._conns[sock.fileno()] = conn
        self._sel.register(sock, selectors.EVENT_READ, conn)

    def _make_room(self, peer: Peer, admin: bool) -> str | None:
        """Room for one more connection of this peer, or why not. Read-only peers share MAX_CLIENTS
        places, at most MAX_CLIENTS_PER_UID each; root and the admin group also have the
        RESERVED_FOR_ADMINS places no read-only peer can take, so a group member holding idle
        connections cannot lock them out. When full, a read-only connection idle for
        BUSY_IDLE_TIMEOUT_S makes room (the longest idle first)."""
        readers = [c for c in self._conns.values() if not c.admin]
        if not admin:
            mine = [c for c in readers if c.peer.uid == peer.uid]
            if len(mine) >= MAX_CLIENTS_PER_UID and not self._evict_idle(mine):
                return f"too many connections from uid {peer.uid} (limit {MAX_CLIENTS_PER_UID}); try again"
            if len(readers) >= MAX_CLIENTS and not self._evict_idle(readers):
                return f"too many clients (limit {MAX_CLIENTS}); try again"
            return None
        if len(self._conns) >= MAX_CLIENTS + RESERVED_FOR_ADMINS and not self._evict_idle(readers):
            return f"too many clients (limit {MAX_CLIENTS + RESERVED_FOR_ADMINS}); try again"
        return None

    def _evict_idle(self, candidates: list[_Conn]) -> bool:
        now = time.monotonic()
        idle = [c for c in candidates if now - c.last_active > BUSY_IDLE_TIMEOUT_S and not c.outbuf]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.last_active)
        try:
            victim.sock.send(reply_error(None, ErrorCode.IDLE_TIMEOUT, f"idle for {now - victim.last_active:.0f} s "
                                                                       "while the server is full; closing"))
        except OSError:
            pass
        self._close(victim)
        return True

    def _service(self, conn: _Conn, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                self._close(conn)
                return
            if data == b"":
                self._close(conn)
                return
            if data:
                conn.last_active = time.monotonic()
                conn.inbuf += data
                self._handle_lines(conn)
        if mask & selectors.EVENT_WRITE or conn.outbuf:
            self._flush(conn)

    def _handle_lines(self, conn: _Conn) -> None:
        while not conn.closing:
            nl = conn.inbuf.find(b"\n")
            if nl < 0:
                if len(conn.inbuf) > MAX_LINE_BYTES:
                    conn.outbuf += reply_error(None, ErrorCode.LINE_TOO_LONG,
                                               f"request line over {MAX_LINE_BYTES} bytes; closing")
                    conn.inbuf.clear()
                    conn.closing = True
                break
            line = bytes(conn.inbuf[:nl])
            del conn.inbuf[: nl + 1]
            if len(line) > MAX_LINE_BYTES:
                conn.outbuf += reply_error(None, ErrorCode.LINE_TOO_LONG,
                                           f"request line over {MAX_LINE_BYTES} bytes; closing")
                conn.closing = True
                break
            if not line.strip():
                continue
            conn.outbuf += self._answer(line, conn.peer)
        if len(conn.outbuf) > MAX_PENDING_REPLY_BYTES:
            log.warning("control socket: client pid %d does not read its replies; disconnecting", conn.peer.pid)
            self._close(conn)

    def _answer(self, line: bytes, peer: Peer) -> bytes:
        req_id = None
        try:
            req_id, command, args = parse_request(line)
            if command.mutating and not self.may_change(peer):
                raise ProtocolError(ErrorCode.FORBIDDEN,
                                    f"{command.name} changes the daemon: it needs root or the admin "
                                    f"group{' ' + repr(self.admin_group) if self.admin_group else ''} "
                                    f"(you are uid {peer.uid})")
            if command.mutating:
                log.info("control: %s %s by uid %d pid %d", command.name, args, peer.uid, peer.pid)
            return reply_ok(req_id, self.handler(command, args, peer))
        except ProtocolError as exc:
            return reply_error(req_id, exc.code, str(exc))
        except Exception as exc:  # a handler bug is an error reply, not a dead socket
            log.exception("control: %r failed", line[:200])
            return reply_error(req_id, ErrorCode.INTERNAL, f"internal error: {exc}")

    def _flush(self, conn: _Conn) -> None:
        try:
            while conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                if sent <= 0:
                    break
                del conn.outbuf[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self._close(conn)
            return
        if conn.outbuf:
            self._sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        else:
            if conn.closing:
                self._close(conn)
                return
            self._sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def _reap_idle(self) -> None:
        now = time.monotonic()
        for conn in list(self._conns.values()):
            if now - conn.last_active > IDLE_TIMEOUT_S:
                try:
                    conn.sock.send(reply_error(None, ErrorCode.IDLE_TIMEOUT, f"idle for {IDLE_TIMEOUT_S:g} s; closing"))
                except OSError:
                    pass
                self._close(conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd in self._conns:
            del self._conns[fd]
            try:
                self._sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        try:
            conn.sock.close()
        except OSError:
            pass

    @property
    def client_count(self) -> int:
        return len(self._conns)
