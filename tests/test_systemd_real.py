"""govd.service under a real systemd (PID 1 of a private namespace): READY, SIGKILL with ExecStopPost
restore and restart, watchdog on a hung loop, reload with a bad config, clean stop.

The unit under test is systemd/govd.service itself; the test's drop-in changes only what the
namespace requires: the command runs the simulator from this checkout, the config comes from
/run (the namespace's root is read-only, so ConfigurationDirectory= cannot be created and is
cleared), /root stays visible for the Python that runs it (ProtectHome=no), DefaultDependencies=no
keeps sysinit units out, and the watchdog is 3 s so the test is quick.
"""

import json
import time
from pathlib import Path

import pytest
from systemd_harness import SystemdNamespace, available, python_cmd

from governor.install import unit_text

REPO = Path(__file__).resolve().parent.parent
why = available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"real systemd test skipped: {why}")

CAP = 'name = "cap"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = 1200\n'
GOOD = "[daemon]\ncall_timeout_s = 1.0\n"


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
ProtectHome=no
ConfigurationDirectory=
WatchdogSec=3s
RestartSec=1s
"""
    unit = unit_text("/usr/local/bin/govd")
    space = SystemdNamespace(unit, dropin, {"cap.toml": CAP, "govd.toml": GOOD})
    try:
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
    pid = ns.show("MainPID")
    restarts = int(ns.show("NRestarts") or 0)
    ns.run("kill", "-9", pid)
    assert ns.wait(lambda: int(ns.show("NRestarts") or 0) > restarts and ns.show("ActiveState") == "active", 60)
    assert ns.show("MainPID") != pid
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
