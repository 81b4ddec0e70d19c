"""govd-slurm's Prolog, Epilog and TaskProlog against a running govd (in-process, simulated GPUs):
the policy from --govd-policy or the job's comment, the site's rules, dcgm-exporter's mapping files,
the AdminComment, and never failing a job."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from governor.errors import ConfigError
from governor.paths import resolve_paths
from governor.site_rules import AllowedPolicies
from governor.slurm import SiteRules, SlurmJob, choose_policy, epilog, job_end, main, prolog, task_prolog


@pytest.fixture
def root():
    r = Path(tempfile.mkdtemp(prefix="govd-slurm-"))
    (r / "etc").mkdir()
    (r / "etc" / "govd.toml").write_text('[daemon]\npolicy = "performance"\n')
    yield r
    shutil.rmtree(r, ignore_errors=True)


@pytest.fixture
def daemon(training_daemon_on_root):
    return training_daemon_on_root


def rules_for(root: Path, **extra) -> SiteRules:
    scontrol = root / "scontrol"
    scontrol.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {root / "scontrol.args"}\n')
    scontrol.chmod(0o755)
    values = {"socket": str(resolve_paths(root).socket), "dcgm_mapping_dir": str(root / "mapping"),
              "state_dir": str(root / "slurm-state"), "scontrol": str(scontrol), **extra}
    return SiteRules(**values)


def env(job="77", gpus="0,1", comment="", spank=None, partition="gpu"):
    e = {"SLURM_JOB_ID": job, "SLURM_JOB_GPUS": gpus, "SLURM_JOB_USER": "alice", "SLURM_JOB_COMMENT": comment,
         "SLURM_JOB_PARTITION": partition}
    if spank is not None:
        e["SPANK_GOVD_POLICY"] = spank
    return e


def test_a_job_runs_the_policy_from_its_comment_and_ends_with_its_energy(root, daemon):
    rules = rules_for(root)
    out = prolog(env(comment="nightly run, govd:policy=batch"), rules)
    assert [w.policy.name for w in daemon.workers] == ["batch", "batch"], out.log
    assert (root / "mapping" / "0").read_text() == "77\n" and (root / "mapping" / "1").read_text() == "77\n"
    said = task_prolog(env(), rules)
    assert said.job_line == "govd: the job's GPUs run policy 'batch'"
    time.sleep(1.0)
    out = epilog(env(), rules)
    assert [w.policy.name for w in daemon.workers] == ["performance", "performance"]
    assert not (root / "mapping" / "0").exists() and not list((root / "slurm-state").iterdir())
    args = (root / "scontrol.args").read_text().splitlines()
    assert args[:2] == ["update", "JobId=77"] and args[2].startswith("AdminComment=govd: used ")
    assert "saved" in args[2] and "with policy batch" in args[2], out.log


def test_the_spank_option_wins_over_the_comment(root, daemon):
    prolog(env(comment="govd:policy=max-savings", spank="batch"), rules_for(root))
    assert daemon.workers[0].policy.name == "batch"
    job = SlurmJob.from_env(env(comment="govd:policy=max-savings", spank="batch"))
    assert job.asked_by == "--govd-policy"


def test_a_forbidden_policy_runs_the_node_default_and_tells_the_job(root, daemon):
    rules = rules_for(root, policies=AllowedPolicies(("batch", "balanced"), {"capped": ("batch",)}))
    out = prolog(env(comment="govd:policy=max-savings"), rules)
    assert [w.policy.name for w in daemon.workers] == ["performance", "performance"]
    assert "not allowed" in out.job_line and "batch, balanced" in out.job_line
    printed = subprocess.run([sys.executable, "-m", "governor.slurm", "task-prolog", "--site", str(root / "none")],
                             env={**os.environ, **env()}, capture_output=True, text=True, timeout=30)
    assert printed.returncode == 0 and printed.stdout == ""  # the default state dir is not this test's
    epilog(env(), rules)
    out = prolog(env(job="78", comment="govd:policy=balanced", partition="capped"), rules)
    assert "not allowed on partition capped" in out.job_line and daemon.workers[0].policy.name == "performance"


def test_an_unknown_policy_runs_the_node_default(root, daemon):
    out = prolog(env(comment="govd:policy=turbo"), rules_for(root))
    assert [w.policy.name for w in daemon.workers] == ["performance", "performance"]
    assert [w.job_id for w in daemon.workers] == ["77", "77"]  # under its own id: nothing was requeued
    assert "'turbo'" in out.job_line and "unknown to govd" in out.job_line and "default" in out.job_line
    assert "not a policy name" in choose_policy(SlurmJob.from_env(env(spank="../etc/x")), SiteRules())[1]


def test_with_govd_down_the_scripts_exit_0_within_a_second(root):
    rules = rules_for(root)
    t0 = time.monotonic()
    out = prolog(env(comment="govd:policy=batch"), rules)
    out2 = epilog(env(), rules)
    assert time.monotonic() - t0 < 1.0
    assert "not running" in out.log[-1] and "not running" in out2.log[-1]
    site = root / "slurm.toml"
    site.write_text(f'socket = "{root / "none.sock"}"\ndcgm_mapping_dir = ""\nstate_dir = "{root / "state"}"\n')
    e = {**os.environ, **env(comment="govd:policy=batch")}
    t0 = time.monotonic()
    for script in ("prolog", "epilog"):
        r = subprocess.run([sys.executable, "-m", "governor.slurm", script, "--site", str(site)], env=e,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "govd is not running" in r.stderr
    assert time.monotonic() - t0 < 6.0  # two interpreter starts included


def test_bad_input_never_fails_the_job(root, capsys):
    site = root / "bad.toml"
    site.write_text('allowed = "batch"\n')
    with pytest.raises(ConfigError, match="allowed.*list of policy names"):
        SiteRules.load(site)
    site.write_text('alowed = ["batch"]\n')
    with pytest.raises(ConfigError, match="alowed"):
        SiteRules.load(site)
    site.write_text('[partition.capped]\nallowed = ["bad name"]\n')
    with pytest.raises(ConfigError, match="partition.capped.allowed"):
        SiteRules.load(site)
    os.environ.pop("SLURM_JOB_ID", None)
    assert main(["prolog", "--site", str(site)]) == 0
    assert "govd-slurm prolog:" in capsys.readouterr().err
    with pytest.raises(Exception, match="SLURM_JOB_GPUS"):
        SlurmJob.from_env({"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "gpu0"})


def test_deploy_scripts_are_executable_and_exit_0_without_govd_slurm(tmp_path):
    deploy = Path(__file__).resolve().parent.parent / "deploy" / "slurm"
    for name in ("prolog.sh", "epilog.sh", "task_prolog.sh"):
        script = deploy / name
        assert script.stat().st_mode & stat.S_IXUSR
        r = subprocess.run([str(script)], env={"PATH": "/usr/bin:/bin", "GOVD_SLURM": str(tmp_path / "absent")},
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0


def test_the_batch_scripts_end_ends_the_job_and_the_epilog_then_only_cleans_up(root, daemon):
    rules = rules_for(root)
    prolog(env(comment="govd:policy=batch"), rules)
    time.sleep(0.5)
    out = job_end({"SLURM_JOB_ID": "77"}, rules)
    assert "ended: govd: used" in out.log[0] and (root / "scontrol.args").exists()
    assert [w.policy.name for w in daemon.workers] == ["performance", "performance"]
    (root / "scontrol.args").unlink()
    out = epilog(env(), rules)
    assert "not running in govd" in out.log[-1] and not (root / "scontrol.args").exists()
    assert not (root / "mapping" / "0").exists()


def test_a_requeued_job_runs_again_under_its_next_run_id(root, daemon):
    """Slurm requeues a job under its id, which govd's ledger has used: the second run is ID.2, with
    the job's policy, and the Epilog ends that run."""
    rules = rules_for(root)
    prolog(env(comment="govd:policy=batch"), rules)
    epilog(env(), rules)
    out = prolog(env(comment="govd:policy=batch"), rules)
    assert [w.job_id for w in daemon.workers] == ["77.2", "77.2"], out.log
    assert [w.policy.name for w in daemon.workers] == ["batch", "batch"] and "requeued" in out.log[-1]
    out = epilog(env(), rules)
    assert [w.job_id for w in daemon.workers] == [None, None] and "ended" in out.log[-1], out.log
    args = (root / "scontrol.args").read_text().splitlines()
    assert args[1] == "JobId=77" and "with policy batch" in args[2]
