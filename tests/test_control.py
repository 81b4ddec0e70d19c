"""The control socket and govctl against a running daemon on simulated GPUs."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governor import control_server, protocol
from governor.control_client import CommandFailed, NotRunning, call

CAP = 'name = "cap"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = 1200\n'


@pytest.fixture(scope="module")
def daemon(in_process_daemon):
    root = Path(tempfile.mkdtemp(prefix="govd-ctl-", dir="/tmp"))
    os.chmod(root, 0o755)
    (root / "etc" / "policies").mkdir(parents=True)
    (root / "etc" / "policies" / "cap.toml").write_text(CAP)
    (root / "etc" / "govd.toml").write_text('[socket]\nmode = "0666"\n[daemon]\npolicy = "performance"\n'
                                           '[metrics]\nlisten = "127.0.0.1:0"\n')
    run = in_process_daemon(root)
    os.chmod(run.paths.runtime_dir, 0o755)
    d = run.start(lambda d: d.paths.socket.exists())
    try:
        yield d, run.paths
    finally:
        run.stop()
        shutil.rmtree(root, ignore_errors=True)


def raw(path, payload: bytes, read=True, timeout=5.0, half_close=False) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    s.sendall(payload)
    if half_close:  # no more requests: the daemon answers what it got, then closes
        s.shutdown(socket.SHUT_WR)
    out = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if not half_close and out.count(b"\n") >= payload.count(b"\n") and payload.endswith(b"\n"):
                    break
        except TimeoutError:
            pass
    s.close()
    return out


def govctl(paths, *args, timeout=30):
    return subprocess.run([sys.executable, "-m", "governor.cli.govctl", "--socket", str(paths.socket), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_status_has_what_an_operator_needs(daemon):
    _, paths = daemon
    time.sleep(0.5)
    st_ = call(paths.socket, "status")
    assert {g["name"] for g in st_["gpus"]} == {"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"}
    g = st_["gpus"][0]
    for key in ("index", "uuid", "policy", "controller_state", "target", "sample", "limits", "state", "reason",
                "energy_since_start_j", "clock_event_reasons", "ledger", "cooling", "originals"):
        assert key in g
    assert g["originals"]["settings"]["power_limit_w"] > 0  # saved at start-up
    assert st_["daemon"]["rss_mb"] > 0 and "cpu_core_share" in st_["daemon"]
    assert st_["other_writers"] == [] and st_["config_files"]
    r = govctl(paths, "status")
    assert r.returncode == 0 and "NVIDIA H100" in r.stdout and "SM target/actual" in r.stdout
    r = govctl(paths, "status", "--json")
    assert json.loads(r.stdout)["gpus"][1]["index"] == 1


def test_status_shows_a_dither_and_the_learned_cooling():
    from governor.cli.render import render_status
    from governor.wire import Status, from_wire

    gpu = {"index": 0, "uuid": "GPU-x", "name": "sim", "state": "managed", "policy": "balanced", "sample": {},
           "target": None, "limits": {"sm_clock_max_mhz": 1980}, "energy_since_start_j": 0.0, "reason": None,
           "controller": "model", "cooling": {"removes_w": 612.4, "at_temp_c": 84.5},
           "envelope": {"ceiling": {"power_limit_w": 550.0, "locked_clocks_mhz": None}, "ceiling_kept": True},
           "ledger": {"since_start": {"counterfactual_j": 100000.0, "saved_j": 12000.0, "saved_lo_j": 10000.0,
                                      "saved_hi_j": 14000.0}},
           "originals": {"settings": {"power_limit_w": 700.0, "locked_clocks_mhz": None, "clocks_known": False},
                         "changed_by_govd": True},
           "controller_state": {"state": "hold", "dither": {"planned_clock_mhz": 1650.0, "lower_clock_mhz": 1635.0,
                                                            "lower_share": 0.77},
                                "phase": {"kind": "serial", "cautious": True}}}
    st_ = {"daemon": {"version": "x", "pid": 1, "uptime_s": 5, "healthy": True, "cpu_core_share": 0.01, "rss_mb": 80},
           "gpus": [gpu], "config_files": [], "other_writers": [], "trials": {}}
    text = render_status(from_wire(Status, st_))
    assert "alternating 1650 and 1635 MHz, 77% of the time at the lower" in text
    assert "cooling learned: removes about 612 W at 84.5 C" in text
    assert "mix planned cautiously: its windows cannot yet tell arriving work from serial" in text
    assert "ceiling 550 W, set before govd; kept" in text
    assert "saved [interval]" in text and "12.0 kJ (12.0%) [10.0, 14.0]" in text
    assert ("originals: power limit 700 W, clock lock reset (the driver cannot read it); changed by govd, "
            "given back at stop") in text


def test_policy_set_pause_resume_try(daemon):
    d, paths = daemon
    call(paths.socket, "policy.set", name="cap", gpu=0)
    assert d.workers[0].policy.name == "cap" and d.workers[1].policy.name == "performance"
    time.sleep(0.5)
    state = json.loads((paths.runtime_dir / "sim" / "gpu0.json").read_text())
    assert state["locked_clocks_mhz"] == [345, 1200]
    r = govctl(paths, "pause", "--gpu", "0")
    assert r.returncode == 0 and d.workers[0].state == "paused"
    state = json.loads((paths.runtime_dir / "sim" / "gpu0.json").read_text())
    assert state["locked_clocks_mhz"] is None  # pause hands the GPU back
    assert govctl(paths, "resume", "--gpu", "0").returncode == 0 and d.workers[0].state == "managed"
    r = govctl(paths, "try", "cap", "--for", "2s", "--gpu", "1")  # 2 simulated seconds at speed 5
    assert r.returncode == 0 and d.workers[1].policy.name == "cap"
    end = time.monotonic() + 10
    while d.workers[1].policy.name != "performance" and time.monotonic() < end:
        time.sleep(0.05)
    assert d.workers[1].policy.name == "performance"
    call(paths.socket, "policy.set", name="performance")


def test_reload_config_show_and_snapshot(daemon, tmp_path):
    d, paths = daemon
    r = govctl(paths, "config", "show", "--effective")
    assert r.returncode == 0 and "socket.mode" in r.stdout and "govd.toml" in r.stdout
    good = paths.config_file.read_text()
    paths.config_file.write_text(good + "[envelope]\nthermal_margin_c = 'hot'\n")
    r = govctl(paths, "reload")
    assert r.returncode == 1 and "envelope.thermal_margin_c" in r.stderr and "reload_refused" in r.stderr
    paths.config_file.write_text(good)
    assert govctl(paths, "reload").returncode == 0
    out = tmp_path / "snap.json"
    assert govctl(paths, "snapshot", str(out)).returncode == 0
    snap = json.loads(out.read_text())
    assert snap["versions"]["govd"] and snap["gpus"][0]["limits"]["sm_clocks_mhz"] and snap["log"]
    assert any(r["key"] == "daemon.period_ms" for r in snap["config"])


def test_policy_errors_are_replies(daemon):
    _, paths = daemon
    with pytest.raises(CommandFailed, match="unknown policy") as e:
        call(paths.socket, "policy.set", name="turbo")
    assert e.value.code == "bad_policy"
    with pytest.raises(CommandFailed) as e:
        call(paths.socket, "pause", gpu=7)
    assert e.value.code == "no_such_gpu"


def test_bad_input_gets_an_error_and_the_connection_stays_usable(daemon):
    _, paths = daemon
    lines = [b"this is not json\n", b"[1,2]\n", b'{"cmd": 5}\n', b'{"cmd": "launch"}\n',
             b'{"cmd": "policy.set", "args": {"name": 3}}\n', b'{"cmd": "pause", "args": {"gpu": "0", "x": 1}}\n',
             b'{"v": 9, "cmd": "ping"}\n', b'{"cmd": "ping", "id": "last"}\n']
    out = raw(paths.socket, b"".join(lines)).splitlines()
    replies = [json.loads(x) for x in out]
    codes = [r.get("error", {}).get("code") for r in replies]
    assert codes[:7] == ["bad_json", "bad_request", "bad_request", "unknown_command", "bad_args", "bad_args",
                         "bad_version"]
    assert replies[7]["ok"] and replies[7]["id"] == "last"


def test_oversized_line_is_refused_and_closed(daemon):
    _, paths = daemon
    out = raw(paths.socket, b"x" * (protocol.MAX_LINE_BYTES + 10))
    assert b"line_too_long" in out


def test_idle_clients_are_dropped(daemon, monkeypatch):
    _, paths = daemon
    monkeypatch.setattr(control_server, "IDLE_TIMEOUT_S", 0.5)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(paths.socket))
    data = s.recv(4096)
    assert b"idle_timeout" in data
    assert s.recv(4096) == b""  # closed
    s.close()


def test_too_many_clients_are_refused(daemon):
    """Root has the readers' places and the admins' reserved ones; past both it gets busy."""
    _, paths = daemon
    socks = []
    try:
        for _ in range(protocol.MAX_CLIENTS + protocol.RESERVED_FOR_ADMINS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(paths.socket))
            socks.append(s)
        time.sleep(0.3)
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.settimeout(5)
        extra.connect(str(paths.socket))
        assert b"busy" in extra.recv(4096)
        extra.close()
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    assert call(paths.socket, "ping")["protocol"] == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda cmd, args: json.dumps({"cmd": cmd, "args": args}).encode() + b"\n",
              st.sampled_from([*protocol.COMMANDS, "nope", ""]),
              st.dictionaries(st.sampled_from(["gpu", "name", "seconds", "effective", "zzz"]),
                              st.one_of(st.integers(-5, 50), st.text(max_size=8), st.floats(allow_nan=True),
                                        st.booleans(), st.none(), st.lists(st.integers(), max_size=2)),
                              max_size=3)),
))
def test_fuzz_never_breaks_the_daemon(daemon, junk):
    d, paths = daemon
    try:
        raw(paths.socket, junk + b"\n", timeout=2.0, half_close=True)
    except OSError:
        pass
    assert call(paths.socket, "status")["gpus"]
    assert all(t.is_alive() for t in d.threads)


def test_fuzz_aftermath_daemon_still_serves_and_restores_policy(daemon):
    d, paths = daemon
    call(paths.socket, "policy.set", name="performance")
    call(paths.socket, "resume")
    assert call(paths.socket, "status")["daemon"]["healthy"]


CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(10); s.connect(sys.argv[1])
s.sendall((json.dumps({"v": 1, "id": 1, "cmd": sys.argv[2], "args": json.loads(sys.argv[3])}) + "\n").encode())
buf = b""
while b"\n" not in buf:
    buf += s.recv(65536)
print(buf.decode().strip())
"""


def as_nobody(paths, cmd, args):
    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    r = subprocess.run(["/usr/bin/python3", "-c", CLIENT, str(paths.socket), cmd, json.dumps(args)],
                       capture_output=True, text=True, timeout=30, preexec_fn=drop)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user (uid 65534)")
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3 for the other user")
def test_unprivileged_peers_may_read_but_not_change(daemon):
    d, paths = daemon
    assert as_nobody(paths, "status", {})["ok"]
    for cmd, args in (("policy.set", {"name": "cap"}), ("pause", {}), ("reload", {}),
                      ("try", {"name": "cap", "seconds": 5})):
        reply = as_nobody(paths, cmd, args)
        assert not reply["ok"] and reply["error"]["code"] == "forbidden" and "uid 65534" in reply["error"]["message"]
    assert all(w.policy.name == "performance" and w.state == "managed" for w in d.workers)
    assert call(paths.socket, "pause", gpu=1)["paused"]  # root may
    call(paths.socket, "resume", gpu=1)


HOLD = r"""
import socket, sys, time
held, busy = [], 0
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1]); held.append(s)
time.sleep(0.5)
for s in held:
    s.setblocking(False)
    try:
        busy += b"busy" in s.recv(4096)
    except BlockingIOError:
        pass
print(len(held) - busy, flush=True)
sys.stdin.read()
"""


def hold_as(uid, paths, n):
    def drop():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    p = subprocess.Popen(["/usr/bin/python3", "-c", HOLD, str(paths.socket), str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, preexec_fn=drop)
    return p, int(p.stdout.readline())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run clients as other users (uids 65534, 65533)")
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3 for the other user")
def test_a_group_member_holding_connections_cannot_lock_root_or_others_out(daemon):
    """One member holding 32 idle connections had made `govctl status` fail for root with busy."""
    _, paths = daemon
    hog, held = hold_as(65534, paths, protocol.MAX_CLIENTS + 8)
    other = None
    try:
        assert held == protocol.MAX_CLIENTS_PER_UID  # one user gets its share, not every place
        assert call(paths.socket, "status")["gpus"]  # root is served
        other, held_other = hold_as(65533, paths, 2)
        assert held_other == 2  # another member still gets in
    finally:
        for proc in (hog, other):
            if proc is not None:
                proc.stdin.close()
                proc.wait(10)


def test_when_full_an_idle_reader_makes_room(daemon, monkeypatch):
    from governor.control_server import Peer

    d, _ = daemon
    server = d.server
    monkeypatch.setattr(control_server, "BUSY_IDLE_TIMEOUT_S", 0.0)
    monkeypatch.setattr(control_server, "MAX_CLIENTS", 0)
    a, b = socket.socketpair()
    conn = control_server._Conn(sock=a, peer=Peer(pid=1, uid=1000, gid=1000), last_active=time.monotonic() - 5)
    server._conns[a.fileno()] = conn
    server._sel.register(a, control_server.selectors.EVENT_READ, conn)
    assert server._make_room(Peer(pid=2, uid=1001, gid=1001), admin=False) is None
    assert b"idle_timeout" in b.recv(4096) and a.fileno() == -1
    b.close()


def test_not_running_is_one_line_and_exit_3(tmp_path):
    r = subprocess.run([sys.executable, "-m", "governor.cli.govctl", "--root", str(tmp_path), "status"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "govd is not running" in r.stderr and r.stderr.count("\n") == 1
    with pytest.raises(NotRunning):
        call(tmp_path / "nope.sock", "ping")


def test_the_daemon_never_reads_a_path_sent_over_the_socket(daemon, tmp_path):
    """A group member had read a root-only file through `policy show PATH`, learned another's key
    names, and that /etc/shadow exists. Paths are refused alike, existing or not, whatever inside."""
    _, paths = daemon
    secret = tmp_path / "secret.toml"
    secret.write_text('name = "s"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = 1200\ntoken = "hunter2"\n')
    secret.chmod(0o600)
    replies = []
    for target in (str(secret), "/etc/shadow", "/nonexistent/x.toml", "../../../etc/passwd", "x/../shadow"):
        for cmd, args in (("policy.show", {"name": target}), ("policy.set", {"name": target}),
                          ("try", {"name": target, "seconds": 5.0})):
            with pytest.raises(CommandFailed) as e:
                call(paths.socket, cmd, **args)
            assert e.value.code == "bad_policy"
            replies.append(str(e.value).replace(target[:80], "PATH"))
    assert len(set(replies)) == 1  # the same answer for every path: nothing about the file leaks
    assert "hunter2" not in replies[0] and "token" not in replies[0] and "shadow" not in replies[0]


def test_govctl_reads_a_policy_file_itself_and_sends_its_table(daemon, tmp_path):
    d, paths = daemon
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = 1500\n')
    r = govctl(paths, "policy", "show", str(f))
    assert r.returncode == 0 and json.loads(r.stdout)["params"]["sm_clock_max_mhz"] == 1500
    r = govctl(paths, "policy", "set", str(f), "--gpu", "1")
    assert r.returncode == 0, r.stderr
    assert d.workers[1].policy.name == "mine" and str(f) in d.workers[1].policy.source
    f.write_text('name = "mine"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = "fast"\n')
    r = govctl(paths, "policy", "set", str(f), "--gpu", "1")
    assert r.returncode == 1 and "params.sm_clock_max_mhz" in r.stderr and str(f) in r.stderr
    assert govctl(paths, "policy", "set", "performance", "--gpu", "1").returncode == 0


def test_try_refuses_a_trial_longer_than_a_week_or_not_finite(daemon):
    _, paths = daemon
    for seconds in (1e308, 8 * 86400.0, 0.0, -5.0):
        with pytest.raises(CommandFailed, match="at most") as e:
            call(paths.socket, "try", name="cap", seconds=seconds)
        assert e.value.code == "bad_args"
    reply = json.loads(raw(paths.socket, b'{"cmd": "try", "args": {"name": "cap", "seconds": Infinity}}\n'))
    assert reply["error"]["code"] == "bad_args"


def test_the_api_doc_lists_exactly_the_protocols_commands():
    doc = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    section = doc.split("<!-- begin: commands -->\n", 1)[1].split("\n<!-- end: commands -->", 1)[0]
    assert section == protocol.commands_markdown()


def reload_with(paths, extra: str):
    good = paths.config_file.read_text()
    paths.config_file.write_text(good + extra)
    try:
        return govctl(paths, "reload")
    finally:
        paths.config_file.write_text(good)


def test_reload_refuses_a_key_it_cannot_apply_and_names_it(daemon):
    d, paths = daemon
    r = reload_with(paths, "[ledger]\nenabled = false\n")
    assert r.returncode == 1 and "ledger.enabled (True -> False)" in r.stderr and "restart govd" in r.stderr
    r = reload_with(paths, '[gpu.0]\nmanage = false\n')
    assert r.returncode == 1 and "gpu.0.manage" in r.stderr
    assert d.store is not None and d.workers[0].state == "managed"
    assert govctl(paths, "reload").returncode == 0


def test_reload_refuses_an_admin_group_that_does_not_exist(daemon):
    d, paths = daemon
    (paths.conf_d).mkdir(exist_ok=True)
    extra = paths.conf_d / "50-admin.toml"
    extra.write_text('[socket]\nadmin_group = "nosuchgroup-govd"\n')
    try:
        r = govctl(paths, "reload")
    finally:
        extra.unlink()
    assert r.returncode == 1 and "socket.admin_group" in r.stderr and "no group 'nosuchgroup-govd'" in r.stderr
    assert d.server.admin_group == ""
    assert govctl(paths, "reload").returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the socket to another group")
def test_reload_applies_socket_mode_and_group_at_once(daemon):
    import grp

    d, paths = daemon
    group = next(g for g in ("daemon", "nogroup", "bin") if g in {e.gr_name for e in grp.getgrall()})
    good = paths.config_file.read_text()
    paths.config_file.write_text(good.replace('mode = "0666"', f'mode = "0660"\ngroup = "{group}"'))
    try:
        assert govctl(paths, "reload").returncode == 0
        st_ = os.stat(paths.socket)
        assert oct(st_.st_mode & 0o777) == "0o660" and st_.st_gid == grp.getgrnam(group).gr_gid
    finally:
        paths.config_file.write_text(good)
        assert govctl(paths, "reload").returncode == 0
    assert oct(os.stat(paths.socket).st_mode & 0o777) == "0o666"


def test_admin_rights_follow_the_group_database_now(monkeypatch):
    """Removing a user from the admin group revokes at once, though its process keeps the gid."""
    import grp
    import pwd

    from governor.control_server import ControlServer, Peer

    server = ControlServer(Path("/nonexistent/sock"), lambda *a: None, admin_group="gpuadmin")
    server.owner_uid = 0
    members = ["alice"]
    monkeypatch.setattr(grp, "getgrnam", lambda name: grp.struct_group(("gpuadmin", "x", 4242, list(members))))
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: pwd.struct_passwd(("alice", "x", uid, 1000, "", "/", "/bin/sh")))
    monkeypatch.setattr(Peer, "groups", lambda self: {1000, 4242})
    peer = Peer(pid=1234, uid=1000, gid=1000)
    assert server.may_change(peer)
    members.clear()
    assert not server.may_change(peer)
    server.admin_group = ""
    members.append("alice")
    assert not server.may_change(peer)  # reload emptied admin_group: checked on the next request


def test_a_runtime_policy_survives_reload_and_shows_as_runtime(daemon):
    d, paths = daemon
    call(paths.socket, "policy.set", name="cap", gpu=0)
    r = govctl(paths, "reload")
    assert r.returncode == 0 and "GPU 0: keeps policy cap, set at runtime" in r.stdout
    assert d.workers[0].policy.name == "cap"
    rows = call(paths.socket, "config.show", effective=True)["values"]
    row = next(x for x in rows if x["key"] == "gpu.0.policy")
    assert row["value"] == "cap" and row["source"].startswith("runtime (govctl policy set by uid")
    r = govctl(paths, "policy", "reset", "--gpu", "0")
    assert r.returncode == 0 and "back to the config's policy performance" in r.stdout
    assert d.workers[0].policy.name == "performance" and 0 not in d.runtime_policies


def test_a_gpu_table_for_a_gpu_not_here_is_warned_about(daemon):
    d, paths = daemon
    good = paths.config_file.read_text()
    paths.config_file.write_text(good + '[gpu.9]\npolicy = "cap"\n')
    try:
        r = govctl(paths, "reload")
        assert r.returncode == 0 and "[gpu.9]" in r.stdout and "names no GPU here" in r.stdout
        assert any("[gpu.9]" in w for w in call(paths.socket, "status")["config_warnings"])
        assert "config warning: [gpu.9]" in govctl(paths, "status").stdout
    finally:
        paths.config_file.write_text(good)
        govctl(paths, "reload")


def test_pause_and_resume_print_sentences(daemon):
    d, paths = daemon
    call(paths.socket, "policy.set", name="cap", gpu=0)
    time.sleep(1.0)
    r = govctl(paths, "pause", "--gpu", "0")
    assert r.returncode == 0 and r.stdout.startswith("GPU 0: paused; given back its original settings (")
    assert "{" not in r.stdout
    r = govctl(paths, "pause", "--gpu", "0")
    assert r.returncode == 0 and "nothing to give back" in r.stdout
    r = govctl(paths, "resume", "--gpu", "0")
    assert r.returncode == 0 and r.stdout.strip() == "GPU 0: resumed; govd steers it again"
    call(paths.socket, "policy.reset", gpu=0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user (uid 65534)")
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3 for the other user")
def test_the_ledger_is_served_to_a_member_who_cannot_read_the_state_folder(daemon):
    d, paths = daemon
    d.flush_ledger()
    os.chmod(paths.state_dir, 0o700)
    reply = as_nobody(paths, "ledger", {})
    assert reply["ok"] and reply["result"]["gpus"], reply
    r = govctl(paths, "ledger", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["gpus"]


def test_every_command_has_exactly_one_handler_and_every_error_code_is_documented():
    from governor.control_api import HANDLERS
    from governor.wire import ErrorCode

    assert set(HANDLERS) == set(protocol.COMMANDS)
    doc = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    codes = doc.split("- Error codes:", 1)[1].split(".", 1)[0]
    assert {c.strip(" `\n") for c in codes.split(",")} == {c.value for c in ErrorCode}
