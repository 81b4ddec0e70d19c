"""Energy per job: `govctl job start/end`, the job's policy while it runs, its ledger line (also
after a restart), and the hpc_job label on the metrics."""

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from governor.control_client import CommandFailed, call
from governor.jobs import RESTARTED
from governor.paths import resolve_paths

CAP = 'name = "cap"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = 1200\n'


def start_daemon(factory, root: Path):
    run = factory(root, trace="training")
    d = run.start(lambda d: d.paths.socket.exists() and d.metrics is not None)
    return d, run


def stop(d, run):
    run.stop()


@pytest.fixture
def root():
    r = Path(tempfile.mkdtemp(prefix="govd-jobs-"))
    (r / "etc" / "policies").mkdir(parents=True)
    (r / "etc" / "policies" / "cap.toml").write_text(CAP)
    (r / "etc" / "govd.toml").write_text('[daemon]\npolicy = "performance"\n[metrics]\nlisten = "127.0.0.1:0"\n')
    yield r
    shutil.rmtree(r, ignore_errors=True)


def govctl(root, *args):
    return subprocess.run([sys.executable, "-m", "governor.cli.govctl", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60)


def test_a_job_runs_its_policy_gets_its_ledger_line_and_its_label(root, in_process_daemon):
    d, t = start_daemon(in_process_daemon, root)
    sock = resolve_paths(root).socket
    try:
        r = govctl(root, "job", "start", "4711", "--gpus", "1", "--policy", "cap", "--user", "alice")
        assert r.returncode == 0 and "job 4711 started on GPU 1 with policy cap" in r.stdout, r.stderr
        assert d.workers[1].policy.name == "cap" and d.workers[0].policy.name == "performance"
        status = call(sock, "status")
        assert status["gpus"][1]["job"] == "4711" and status["gpus"][0]["job"] is None
        host, port = d.metrics.address
        text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()
        assert 'hpc_job="4711"' in text and 'gpu="1"' in text
        time.sleep(1.5)
        r = govctl(root, "job", "end", "4711", "--json")
        assert r.returncode == 0, r.stderr
        job = json.loads(r.stdout)["jobs"][0]
        assert job["job"] == "4711" and job["user"] == "alice" and job["end_reason"] == "ended"
        assert [g["gpu_index"] for g in job["gpus"]] == [1] and job["measured_j"] > 0
        assert job["saved_lo_j"] <= job["saved_j"] <= job["saved_hi_j"]
        assert d.workers[1].policy.name == "performance"  # back to the node's policy
        listed = json.loads(govctl(root, "ledger", "--by", "job", "--json").stdout)["jobs"]
        assert [j["job"] for j in listed] == ["4711"]
        human = govctl(root, "ledger", "--job", "4711").stdout
        assert human.startswith("job 4711 (alice, policy cap)") and "GPU 1: used" in human
    finally:
        stop(d, t)


def test_bad_job_requests_get_clear_errors(root, in_process_daemon):
    d, t = start_daemon(in_process_daemon, root)
    sock = resolve_paths(root).socket
    try:
        call(sock, "job.start", id="j1", gpus=[0])
        for args, match, code in (({"id": "j1", "gpus": [1]}, "started already", "job_id_used"),
                                  ({"id": "j2", "gpus": [0]}, "GPU 0 runs job j1", "bad_job"),
                                  ({"id": "bad id!", "gpus": [1]}, "not a job id", "bad_job"),
                                  ({"id": "j3", "gpus": [7]}, "no GPU with index 7", "no_such_gpu"),
                                  ({"id": "j4", "gpus": []}, "non-empty list", "bad_args"),
                                  ({"id": "j5", "gpus": [1], "policy": "/etc/shadow"}, "not a policy name",
                                   "bad_policy")):
            with pytest.raises(CommandFailed, match=match) as failed:
                call(sock, "job.start", **args)
            assert failed.value.code == code, args
        with pytest.raises(CommandFailed, match="not running here"):
            call(sock, "job.end", id="nope")
        assert d.workers[1].job_id is None
    finally:
        stop(d, t)


def test_a_job_whose_end_never_came_is_closed_at_the_next_start_with_its_totals(root, in_process_daemon):
    d, t = start_daemon(in_process_daemon, root)
    call(resolve_paths(root).socket, "job.start", id="lost", gpus=[0, 1])
    time.sleep(1.5)
    stop(d, t)  # the node "reboots": the job's end never comes
    d2, t2 = start_daemon(in_process_daemon, root)
    try:
        job = json.loads(govctl(root, "ledger", "--job", "lost", "--json").stdout)["jobs"][0]
        assert job["end_reason"] == RESTARTED and job["ended"] is not None
        assert len(job["gpus"]) == 2 and job["measured_j"] > 0  # the totals written before the stop
        assert d2.jobs.running == {}
    finally:
        stop(d2, t2)


def test_a_ledger_from_before_jobs_is_a_clear_error_not_a_traceback(tmp_path):
    """Read offline (no daemon), a ledger an older govd wrote has no jobs table."""
    import sqlite3

    from governor.errors import GovdError
    from governor.jobs import job_report
    from governor.pricing import Pricing

    db = tmp_path / "ledger.db"
    sqlite3.connect(db).executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);").close()
    with pytest.raises(GovdError, match="unreadable .*no such table: jobs"):
        job_report(db, Pricing.from_config({"price_per_kwh": 0.15, "currency": "USD", "carbon_g_per_kwh": 400.0,
                                            "carbon_hourly": None}))
