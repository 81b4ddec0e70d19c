"""A real Prometheus on 127.0.0.1 scrapes a `govd --sim` daemon every second and evaluates the shipped
recording rules; the saved energy it records for a job agrees with `govctl ledger --job`.

Every process the test starts (govd, Prometheus) is its own child, stopped by its PID in a
`finally`; both listen on loopback only, and everything they write is in the test's temp folder."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from child_processes import stop_child as stop
from child_processes import wait_for

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
CAP = 'name = "cap"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = 1200\n'

why = None if shutil.which("prometheus") else "prometheus is not installed (Debian package prometheus)"
if why and os.environ.get("GOVD_TESTS_REQUIRE_REAL"):
    raise RuntimeError(f"the real-Prometheus test cannot run ({why}) but CI requires it")
pytestmark = pytest.mark.skipif(why is not None, reason=f"real Prometheus test skipped: {why}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())["data"]["result"]


def test_prometheus_records_a_jobs_saving_as_the_ledger_does(tmp_path):
    govd_port, prom_port = free_port(), free_port()
    (tmp_path / "etc" / "policies").mkdir(parents=True)
    (tmp_path / "etc" / "policies" / "cap.toml").write_text(CAP)
    (tmp_path / "etc" / "govd.toml").write_text(f'[daemon]\npolicy = "performance"\n[metrics]\n'
                                                f'listen = "127.0.0.1:{govd_port}"\n[ledger]\nflush_s = 1.0\n')
    rules = (DEPLOY / "govd-rules.yml").read_text().replace("interval: 1m", "interval: 1s")
    (tmp_path / "govd-rules.yml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - govd-rules.yml\n"
        f"scrape_configs:\n  - job_name: govd\n    static_configs:\n      - targets: ['127.0.0.1:{govd_port}']\n")
    govctl = [sys.executable, "-m", "governor.cli.govctl", "--root", str(tmp_path)]
    govd = prom = None
    try:
        govd = subprocess.Popen([sys.executable, "-m", "governor.cli.govd", "--root", str(tmp_path), "--sim",
                                 "h100-sxm", "--trace", "training", "--speed", "5"],
                                stdout=subprocess.DEVNULL, stderr=(tmp_path / "govd.log").open("w"))
        assert wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{govd_port}/metrics", timeout=2)), \
            (tmp_path / "govd.log").read_text()
        prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
        assert wait_for(lambda: query(prom_port, 'up{job="govd"}') and
                        query(prom_port, 'up{job="govd"}')[0]["value"][1] == "1"), \
            (tmp_path / "prometheus.log").read_text()[-2000:]
        r = subprocess.run([*govctl, "job", "start", "j42", "--gpus", "0", "--policy", "cap"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        time.sleep(10.0)
        r = subprocess.run([*govctl, "job", "end", "j42", "--json"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        ledger_kwh = json.loads(r.stdout)["jobs"][0]["kwh"]
        time.sleep(2.0)
        recorded = query(prom_port, 'max_over_time(job:govd_saved_kwh:increase1h{hpc_job="j42"}[5m])')
        assert recorded, query(prom_port, "gpu:govd_saved_kwh:increase1h")
        prom_kwh = float(recorded[0]["value"][1])
        assert ledger_kwh > 0
        # scrapes are a second apart and increase() extrapolates to its window's ends: a second or
        # so of a ten-second job either way
        print(f"prometheus {prom_kwh:.6f} kWh, ledger {ledger_kwh:.6f} kWh")
        assert prom_kwh == pytest.approx(ledger_kwh, rel=0.35), (prom_kwh, ledger_kwh)
    finally:
        stop(prom)
        stop(govd)
    assert prom is None or prom.poll() is not None
    assert govd is None or govd.poll() is not None
