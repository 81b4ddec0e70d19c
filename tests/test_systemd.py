"""systemd integration: the notify protocol, journald fields, the unit's static checks, install."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from governor.install import unit_text
from governor.systemd_integration import JournalHandler, Notifier

REPO = Path(__file__).resolve().parent.parent


def bind_dgram(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(0.2)
    return s


def drain(sock, seconds=0.0):
    out, end = [], time.monotonic() + seconds
    while True:
        try:
            out.append(sock.recv(65536).decode())
        except (TimeoutError, BlockingIOError):
            if time.monotonic() >= end:
                return out


def test_pure_python_notify_protocol(tmp_path):
    sock = bind_dgram(tmp_path / "notify")
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000",
                      "WATCHDOG_PID": str(os.getpid())}, use_library=False)
    assert n.ready("2 GPUs managed")
    assert n.watchdog(healthy=True) and not n.watchdog(healthy=True)  # at most every half interval
    assert not n.watchdog(healthy=False)
    assert n.reloading() and n.stopping()
    msgs = drain(sock)
    assert msgs[0].splitlines()[:2] == ["READY=1", "STATUS=2 GPUs managed"]
    assert msgs[1] == "WATCHDOG=1"
    assert msgs[2].startswith("RELOADING=1\nMONOTONIC_USEC=") and msgs[3] == "STOPPING=1"


def test_abstract_socket_and_missing_socket_never_raise(tmp_path):
    name = f"govd-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(1)
    assert Notifier(env={"NOTIFY_SOCKET": "@" + name}, use_library=False).status("x")
    assert s.recv(100) == b"STATUS=x"
    assert not Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone")}, use_library=False).ready("x")
    assert not Notifier(env={}, use_library=False).ready("x")  # not under systemd: silent


def test_systemd_python_when_installed(tmp_path):
    pytest.importorskip("systemd.daemon", reason="systemd-python is not installed (optional extra govd[systemd])")
    sock = bind_dgram(tmp_path / "notify")
    os.environ["NOTIFY_SOCKET"] = str(tmp_path / "notify")
    try:
        assert Notifier().ready("via library")
    finally:
        del os.environ["NOTIFY_SOCKET"]
    assert "READY=1" in drain(sock)[0]


def test_journal_handler_sends_structured_fields(tmp_path):
    import logging

    sock = bind_dgram(tmp_path / "journal")
    h = JournalHandler(path=str(tmp_path / "journal"))
    h.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("govd-journal-test")
    logger.addHandler(h)
    logger.warning("saved\nsome", extra={"GOVD_GPU": 3, "GOVD_SAVED_J": 12.5})
    data = sock.recv(65536)
    assert b"PRIORITY=4\n" in data and b"SYSLOG_IDENTIFIER=govd\n" in data
    assert b"GOVD_GPU=3\n" in data and b"GOVD_SAVED_J=12.5\n" in data
    assert b"MESSAGE\n" + (10).to_bytes(8, "little") + b"saved\nsome\n" in data  # binary-safe multi-line form
    logger.removeHandler(h)
    h.close()


def test_daemon_notifies_ready_watchdog_reload_stopping(tmp_path):
    sock = bind_dgram(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"}
    p = subprocess.Popen([sys.executable, "-m", "governor.cli.govd", "--root", str(tmp_path / "r"), "--sim",
                          "h100-sxm", "--speed", "5"], env=env, stderr=subprocess.PIPE, text=True)
    env_pid = str(p.pid)
    try:
        msgs = drain(sock, 4.0)
        ready = [m for m in msgs if m.startswith("READY=1")]
        assert ready and "GPUs managed" in ready[0] and f"MAINPID={env_pid}" in ready[0]
        assert any(m == "WATCHDOG=1" for m in msgs)
        p.send_signal(signal.SIGHUP)
        msgs = drain(sock, 1.5)
        assert any(m.startswith("RELOADING=1") for m in msgs) and any(m.startswith("READY=1") for m in msgs)
    finally:
        p.terminate()
        p.wait(20)
    assert any(m == "STOPPING=1" for m in drain(sock, 0.5))


def test_a_hung_loop_stops_the_watchdog_pings(tmp_path):
    sock = bind_dgram(tmp_path / "notify")
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "govd.toml").write_text("[daemon]\ncall_timeout_s = 1.0\n")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "600000"}
    p = subprocess.Popen([sys.executable, "-m", "governor.cli.govd", "--root", str(root), "--sim", "h100-sxm"],
                         env=env, stderr=subprocess.PIPE, text=True)
    try:
        # the hang starts once the daemon is ready: timed from the process's start, it fell before
        # the loop ran on a machine slow to import, and the pings of start-up counted as the hung loop's
        msgs: list[str] = []
        end = time.monotonic() + 30.0
        while not any(m.startswith("READY=1") for m in msgs) and time.monotonic() < end:
            msgs += drain(sock, 0.2)
        assert any(m.startswith("READY=1") for m in msgs)
        (root / "run" / "sim" / "faults-gpu0.json").write_text(json.dumps({"hang_at_s": 0.0, "hang_s": 30}))
        drain(sock, 2.5)  # the hang starts at the loop's next call and is noticed 1 s later
        later = drain(sock, 2.0)
        assert "WATCHDOG=1" not in later
    finally:
        p.kill()
        p.wait(10)


def rendered_unit(tmp_path) -> Path:
    govd = shutil.which("govd") or sys.executable
    unit = tmp_path / "govd.service"
    unit.write_text(unit_text(str(Path(govd).resolve())))
    return unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_verifies_with_empty_stderr(tmp_path):
    r = subprocess.run(["systemd-analyze", "verify", str(rendered_unit(tmp_path))], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_exposure_is_3_or_lower(tmp_path):
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(rendered_unit(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for govd.service: (\d+\.\d+)", r.stdout)
    assert m and float(m.group(1)) <= 3.0, r.stdout[-500:]


def test_unit_has_what_the_service_needs():
    text = (REPO / "systemd" / "govd.service").read_text()
    assert text == (REPO / "governor" / "govd.service").read_text()  # the packaged copy never drifts
    for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID",
                 "ExecStopPost=/usr/local/bin/govd --restore", "After=nvidia-persistenced.service",
                 "StateDirectory=govd", "RuntimeDirectory=govd", "ConfigurationDirectory=govd",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "DeviceAllow=char-nvidia-frontend rw"):
        assert line in text.splitlines(), line
    assert "WatchdogSec=" in text and "CapabilityBoundingSet=CAP_SYS_ADMIN" in text
    assert "PrivateDevices" not in text.replace("Not PrivateDevices=", "") and "Conflicts=" not in \
        text.replace("No Conflicts=", "")


def test_install_and_uninstall_under_a_prefix(tmp_path):
    run = [sys.executable, "-m", "governor.cli.govd"]
    r = subprocess.run([*run, "install", "--dry-run", "--prefix", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0 and "would write" in r.stdout and not any(tmp_path.iterdir())
    r = subprocess.run([*run, "install", "--prefix", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "etc/systemd/system/govd.service"
    assert "ExecStart=" in unit.read_text() and "/usr/local/bin/govd" not in unit.read_text()
    config = tmp_path / "etc/govd/govd.toml"
    config.write_text("[daemon]\npolicy = 'max-savings'\n")  # the admin edits it
    r = subprocess.run([*run, "install", "--prefix", str(tmp_path)], capture_output=True, text=True)
    assert config.read_text() == "[daemon]\npolicy = 'max-savings'\n"  # never overwritten
    r = subprocess.run([*run, "uninstall", "--prefix", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0 and not unit.exists() and config.exists()  # the admin's config stays


def test_install_exposes_a_hidden_interpreter_with_a_drop_in(tmp_path):
    """A govd in a virtualenv under /root, /home or /tmp gets a unit the hardening would hide it
    from (203/EXEC): install adds a drop-in that binds those folders read-only."""
    from governor.install import HOME_HIDDEN, TMP_HIDDEN, exposure_dropin, hidden_by_unit, install_plan

    paths = [Path("/root/venvs/govd"), Path("/home/ops/src/govd"), Path("/opt/python3.11"), Path("/tmp/ci/venv")]
    hidden = hidden_by_unit(paths, HOME_HIDDEN + TMP_HIDDEN)
    assert hidden == [Path("/root/venvs/govd"), Path("/home/ops/src/govd"), Path("/tmp/ci/venv")]
    steps = install_plan(tmp_path, "/root/venvs/govd/bin/govd", True, hidden)
    dropin = [s for s in steps if s.target.endswith("govd.service.d/10-govd-paths.conf")]
    assert dropin and "ProtectHome=tmpfs" in dropin[0].content
    assert "BindReadOnlyPaths=/root/venvs/govd /home/ops/src/govd /tmp/ci/venv" in dropin[0].content
    assert not [s for s in install_plan(tmp_path, "/usr/local/bin/govd", True, []) if ".service.d" in s.target]
    with pytest.raises(ValueError, match="no spaces"):
        exposure_dropin([Path("/home/a b/venv")])


def test_install_under_a_prefix_writes_the_drop_in_this_interpreter_needs(tmp_path):
    from governor.install import hidden_runtime_paths

    expose, _ = hidden_runtime_paths()
    r = subprocess.run([sys.executable, "-m", "governor.cli.govd", "install", "--prefix", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    dropin = tmp_path / "etc/systemd/system/govd.service.d/10-govd-paths.conf"
    assert dropin.exists() == bool(expose)
    if expose:
        assert all(str(p) in dropin.read_text() for p in expose)
    r = subprocess.run([sys.executable, "-m", "governor.cli.govd", "uninstall", "--prefix", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not dropin.exists()
