"""govd.service under a real systemd (PID 1 of a private namespace): READY, SIGKILL with ExecStopPost
restore and restart, watchdog on a hung loop, reload with a bad config, clean stop.

The unit under test is systemd/govd.service itself, with the drop-in `govd install` writes for an
interpreter the hardening would hide (wherever this one lives); the test's own drop-in changes only
what the namespace requires: the command runs the simulator from this checkout, the config comes
from /run (the namespace's root is read-only, so ConfigurationDirectory= cannot be created and is
cleared), DefaultDependencies=no keeps sysinit units out, and the watchdog is 3 s so the test is
quick.
"""

import json
import shutil
import time
from pathlib import Path

import pytest
from systemd_harness import SystemdNamespace, _start_ticks, available, exposed_paths, python_cmd

from governor.install import HOME_HIDDEN, TMP_HIDDEN, exposure_dropin, hidden_by_unit, unit_text

REPO = Path(__file__).resolve().parent.parent
why = available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"real systemd test skipped: {why}")

CAP = 'name = "cap"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = 1200\n'
GOOD = "[daemon]\ncall_timeout_s = 1.0\n[ledger]\nlog_every_s = 1.0\n"


@pytest.fixture(scope="module")
def ns():
    py = python_cmd()
    dropin = f"""[Unit]
DefaultDependencies=no
[Service]
Environment=PYTHONPATH={REPO}
ExecStart=
ExecStart={py} --sim h100-sxm --speed 5 --policy /run/govd-test/cap.toml --config /run/govd-test/govd.toml
ExecStopPost=
ExecStopPost={py} --restore
ConfigurationDirectory=
WatchdogSec=3s
RestartSec=1s
"""
    hidden = hidden_by_unit([Path(p) for p in exposed_paths()], HOME_HIDDEN + TMP_HIDDEN)
    unit = unit_text("/usr/local/bin/govd")
    files = {"cap.toml": CAP, "govd.toml": GOOD}
    if hidden:  # as `govd install` writes it (tests/test_systemd.py checks that it does)
        dropin = dropin + "\n" + exposure_dropin(hidden).replace("[Service]\n", "")
    space = SystemdNamespace(unit, dropin, files)
    try:
        if not space.wait(lambda: space.show("ActiveState") == "active", 60):
            pytest.fail("govd.service did not start under the namespace's systemd:\n" + space.journal()[-4000:]
                        + "\n--- console ---\n" + space.console())
        yield space
    finally:
        space.close()


def locked(ns):
    text = ns.read("/run/govd/sim/gpu0.json")
    return text is not None and json.loads(text)["locked_clocks_mhz"] == [345, 1200]


def test_1_active_after_ready_with_status(ns):
    assert ns.wait(lambda: ns.show("ActiveState") == "active", 60), ns.console()
    assert "GPUs managed" in ns.show("StatusText")
    assert ns.wait(lambda: locked(ns), 20)


def test_2_sigkill_restores_through_execstoppost_and_restarts(ns):
    restarts = int(ns.show("NRestarts") or 0)
    pid = ns.kill_main("SIGKILL")
    assert ns.wait(lambda: int(ns.show("NRestarts") or 0) > restarts and ns.show("ActiveState") == "active", 60)
    assert ns.main_pid() != pid
    journal = ns.journal()
    assert "restored (power limit 700 W: ok, reset clock lock: ok)" in journal  # govd --restore's report
    assert ns.wait(lambda: locked(ns), 20)


def test_3_a_hung_loop_trips_the_watchdog_and_the_gpus_are_restored(ns):
    restarts = int(ns.show("NRestarts") or 0)
    before = ns.journal().count("restored (power limit 700 W")
    ns.run("sh", "-c", "echo '{\"hang_at_s\": 0, \"hang_s\": 600}' > /run/govd/sim/faults-gpu0.json")
    assert ns.wait(lambda: int(ns.show("NRestarts") or 0) > restarts, 60), ns.journal()[-2000:]
    ns.run("rm", "-f", "/run/govd/sim/faults-gpu0.json")
    journal = ns.journal()
    assert "Watchdog timeout" in journal  # systemd's own report about the unit
    assert journal.count("restored (power limit 700 W") > before
    assert ns.wait(lambda: ns.show("ActiveState") == "active", 60)


def test_4_reload_with_a_bad_config_keeps_the_old_one(ns):
    assert ns.wait(lambda: ns.show("ActiveState") == "active", 60)
    ns.run("sh", "-c", "echo \"[daemon]\nperiod_ms = 'often'\" > /run/govd-test/govd.toml")
    r = ns.run("systemctl", "reload", "govd.service")
    assert r.returncode == 0, r.stderr
    assert ns.wait(lambda: "reload refused, keeping the running config" in ns.journal(), 20)
    assert ns.show("ActiveState") == "active"
    ns.run("sh", "-c", f"printf '{GOOD}' > /run/govd-test/govd.toml")


def test_5_stop_restores_and_exits_cleanly(ns):
    assert ns.wait(lambda: locked(ns), 20)
    before = ns.journal().count("GPU 0: restored to its original settings")
    r = ns.run("systemctl", "stop", "govd.service", timeout=60)
    assert r.returncode == 0, r.stderr
    assert ns.show("ActiveState") == "inactive" and ns.show("Result") == "success"
    assert ns.journal().count("GPU 0: restored to its original settings") > before
    time.sleep(0.2)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (the README's recipe uses it)")
def test_6_the_readmes_savings_recipe_prints_the_saved_joules(ns):
    """README: `journalctl -u govd -o json | jq -r 'select(.GOVD_SAVED_J) | .GOVD_SAVED_J'`."""
    ns.run("systemctl", "start", "govd.service", timeout=60)  # test_5 stopped it

    def values():
        r = ns.run("sh", "-c", "journalctl -u govd -o json | jq -r 'select(.GOVD_SAVED_J) | .GOVD_SAVED_J'")
        return [line for line in r.stdout.split() if line.strip()]

    assert ns.wait(lambda: len(values()) >= 1, 30), ns.journal()[-2000:]
    assert all(float(v) >= -1e9 for v in values())


def test_7_closing_leaves_no_process_folder_or_cgroup(ns):
    pid1, cgroups, tmp = ns.pid1, list(ns.cgroups), ns.tmp
    assert pid1 > 1 and ns.processes()
    ns.close()
    assert not ns.processes()
    assert _start_ticks(pid1) != ns.pid1_ticks  # that systemd is gone (its PID may be reused)
    assert not tmp.exists()
    assert not any(c.exists() for c in cgroups)
