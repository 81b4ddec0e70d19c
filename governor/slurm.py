"""Slurm's Prolog, Epilog and TaskProlog for govd: a job's GPUs run the policy its user asked for.

The Prolog (root, on the node, before the job) reads the job from Slurm's environment, picks the
policy (the SPANK option `--govd-policy`, exported as SPANK_GOVD_POLICY, else `govd:policy=NAME` in
the job's comment), checks it against the site's rules (/etc/govd/slurm.toml), and starts the job on
its GPUs through govd's job API. When the batch script ends, the SPANK plugin (in slurmstepd, as
root) runs `job-end`: the job ends in govd and, if the site asks, its energy goes to its
AdminComment while Slurm still accepts that (in the Epilog the job already counts as finished). The
Epilog ends any job still running in govd (no batch script, no plugin) and cleans up. The Prolog
writes dcgm-exporter's HPC job-mapping files (one per GPU index, holding the job id), so both
exporters label the same job, and the Epilog removes them. The TaskProlog (as the user, in the job) prints
what the Prolog decided about the policy into the job's output.

None of them ever fails the job or drains the node: every error is a line on stderr (slurmd's log)
and exit status 0. If govd is not running they are done within a second.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config_keys import Key
from .control_client import CommandFailed, NotRunning, call
from .errors import GovdError
from .paths import SYSTEM_SOCKET
from .site_rules import AllowedPolicies, load_site_file
from .wire import ErrorCode

SITE_FILE = Path("/etc/govd/slurm.toml")
MAX_RUNS = 50  # runs of one requeued job told apart in govd's ledger (ID, ID.2, ... ID.50)
SOCKET_TIMEOUT_S = 0.8  # the whole script must be done within about a second if govd hangs
COMMENT_TOKEN = re.compile(r"(?:^|[\s,;])govd:policy=([^\s,;]+)")

SITE_KEYS = {  # and `allowed`: the policies users may choose (absent: any policy govd knows)
    "admin_comment": Key(bool, True, doc="write the job's energy used and saved to its AdminComment at the end"),
    "dcgm_mapping_dir": Key(str, "/var/lib/dcgm-exporter/job-mapping",
                            doc="dcgm-exporter's --hpc-job-mapping-dir (empty: write no mapping files)"),
    "state_dir": Key(str, "/run/govd/slurm", doc="where the Prolog leaves its message for the TaskProlog"),
    "socket": Key(str, "", doc="govd's control socket (empty: /run/govd/govd.sock)"),
    "scontrol": Key(str, "scontrol", doc="the scontrol to write AdminComment with"),
}


@dataclass(frozen=True)
class SiteRules:
    """The site's rules for user-chosen policies (/etc/govd/slurm.toml)."""

    policies: AllowedPolicies = field(default_factory=AllowedPolicies)  # `allowed`, `[partition.NAME] allowed`
    admin_comment: bool = True
    dcgm_mapping_dir: str = "/var/lib/dcgm-exporter/job-mapping"
    state_dir: str = "/run/govd/slurm"
    socket: str = ""
    scontrol: str = "scontrol"

    @classmethod
    def load(cls, path: Path) -> SiteRules:
        """The rules in path; an absent file means the defaults (any policy, AdminComment on)."""
        values, policies = load_site_file(path, SITE_KEYS, "partition")
        return cls(policies=policies, **values)


@dataclass(frozen=True)
class SlurmJob:
    """What Slurm's Prolog/Epilog environment says about the job."""

    job_id: str
    gpus: tuple[int, ...]
    user: str
    partition: str
    requested: str | None  # the policy the user asked for, as given
    asked_by: str  # "--govd-policy", "the job's comment", or ""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> SlurmJob:
        job_id = env.get("SLURM_JOB_ID", "").strip()
        if not job_id:
            raise GovdError("SLURM_JOB_ID is not set: run this as Slurm's Prolog or Epilog")
        gpus = []
        for part in env.get("SLURM_JOB_GPUS", "").split(","):
            if part.strip():
                try:
                    gpus.append(int(part))
                except ValueError:
                    raise GovdError(f"SLURM_JOB_GPUS={env['SLURM_JOB_GPUS']!r}: expected GPU indexes such as 0,1") \
                        from None
        spank = env.get("SPANK_GOVD_POLICY", "").strip()
        comment = COMMENT_TOKEN.search(env.get("SLURM_JOB_COMMENT", ""))
        requested, asked_by = (spank, "--govd-policy") if spank else \
            ((comment.group(1), "the job's comment") if comment else (None, ""))
        return cls(job_id=job_id, gpus=tuple(gpus), user=env.get("SLURM_JOB_USER", ""),
                   partition=env.get("SLURM_JOB_PARTITION", ""), requested=requested, asked_by=asked_by)


@dataclass
class Outcome:
    """What a script did: lines for slurmd's log, and the line the job's output gets."""

    log: list[str] = field(default_factory=list)
    job_line: str = ""


def choose_policy(job: SlurmJob, rules: SiteRules) -> tuple[str | None, str]:
    """(the policy to ask govd for, None for the node's; a line for the job, empty if nothing to say)."""
    if job.requested is None:
        return None, ""
    refusal = rules.policies.refusal(job.requested, job.partition, "on partition")
    if refusal is not None:
        return None, f"govd: {refusal} (from {job.asked_by}); the GPUs run the node's default policy"
    return job.requested, f"govd: the job's GPUs run policy {job.requested!r}"


def _socket(rules: SiteRules) -> Path:
    return Path(rules.socket) if rules.socket else SYSTEM_SOCKET


def _message_file(rules: SiteRules, job_id: str) -> Path:
    return Path(rules.state_dir) / f"job-{re.sub(r'[^0-9A-Za-z_.-]', '_', job_id)}.msg"


def write_mapping(rules: SiteRules, job: SlurmJob) -> None:
    """dcgm-exporter's HPC job mapping: a file per GPU index holding the job id."""
    if not rules.dcgm_mapping_dir or not job.gpus:
        return
    folder = Path(rules.dcgm_mapping_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for gpu in job.gpus:
        tmp = folder / f".{gpu}.tmp"
        tmp.write_text(f"{job.job_id}\n")
        tmp.replace(folder / str(gpu))


def clear_mapping(rules: SiteRules, job: SlurmJob) -> None:
    if not rules.dcgm_mapping_dir:
        return
    for gpu in job.gpus:
        f = Path(rules.dcgm_mapping_dir) / str(gpu)
        try:
            if f.read_text().strip() == job.job_id:  # never a later job's file
                f.unlink()
        except FileNotFoundError:
            pass


def prolog(env: dict[str, str], rules: SiteRules) -> Outcome:
    out = Outcome()
    job = SlurmJob.from_env(env)
    try:
        write_mapping(rules, job)
    except OSError as exc:
        out.log.append(f"govd-slurm: job {job.job_id}: cannot write dcgm-exporter mapping files: {exc}")
    policy, line = choose_policy(job, rules)
    if not job.gpus:
        out.log.append(f"govd-slurm: job {job.job_id} has no GPUs; nothing to do")
        return out
    args = {"id": job.job_id, "gpus": list(job.gpus), "user": job.user}
    try:
        run = 1
        while True:
            # a requeued job comes back with its id, which govd's ledger has used: its next run is
            # ID.2, ID.3, ... (the Epilog finds it by the GPUs' job in govd's status)
            args["id"] = job.job_id if run == 1 else f"{job.job_id}.{run}"
            try:
                result = call(_socket(rules), "job.start", timeout_s=SOCKET_TIMEOUT_S,
                              **({**args, "policy": policy} if policy else args))
                break
            except CommandFailed as exc:
                if exc.code == ErrorCode.JOB_ID_USED and run < MAX_RUNS:
                    run += 1
                    continue
                if policy is None or exc.code not in (ErrorCode.BAD_POLICY, ErrorCode.BAD_ARGS):
                    raise
                line = (f"govd: policy {policy!r} (from {job.asked_by}) is unknown to govd on this node ({exc}); "
                        "the GPUs run the node's default policy")
                policy = None
        out.log.append(f"govd-slurm: job {job.job_id} started on GPUs {result['gpus']} with policy "
                       f"{result['policy'] or 'the node default'}"
                       + (f" (run {args['id']} in govd: the job was requeued)" if args["id"] != job.job_id else ""))
    except NotRunning:
        out.log.append(f"govd-slurm: job {job.job_id}: govd is not running; the GPUs keep their settings")
        line = "" if not line or policy is None else "govd: not running on this node; the policy request is ignored"
    except GovdError as exc:
        out.log.append(f"govd-slurm: job {job.job_id}: {exc}")
    out.job_line = line
    if line:
        try:
            msg = _message_file(rules, job.job_id)
            msg.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            msg.write_text(line + "\n")
            msg.chmod(0o644)  # the TaskProlog runs as the job's user
        except OSError as exc:
            out.log.append(f"govd-slurm: job {job.job_id}: cannot leave the message for the job: {exc}")
    return out


def energy_comment(report: dict) -> str:
    """The AdminComment: what the job's GPUs used and what govd saved, with the saving's interval."""
    j = report["jobs"][0]
    return (f"govd: used {j['used_kwh']:.3f} kWh, saved {j['kwh']:.3f} kWh "
            f"[{j['saved_lo_j'] / 3.6e6:.3f}, {j['saved_hi_j'] / 3.6e6:.3f}] "
            f"with policy {j['policy'] or 'node default'}")


def running_id(job_id: str, rules: SiteRules) -> str:
    """The id the job runs under in govd: its own, or ID.N for a requeued job's later run (from
    govd's status); its own when govd cannot say."""
    try:
        gpus = call(_socket(rules), "status", timeout_s=SOCKET_TIMEOUT_S)["gpus"]
    except (GovdError, KeyError, TypeError):
        return job_id
    runs = {g.get("job") for g in gpus if isinstance(g, dict)}
    later = sorted((r for r in runs if isinstance(r, str) and r.startswith(job_id + ".")
                    and r[len(job_id) + 1:].isdigit()), key=lambda r: int(r[len(job_id) + 1:]))
    return job_id if job_id in runs or not later else later[-1]


def end_job(job_id: str, rules: SiteRules, out: Outcome) -> None:
    """End the job in govd and, if the site asks, write its energy to its AdminComment. A job govd
    does not run (ended already, or never started) is no error."""
    try:
        try:
            report = call(_socket(rules), "job.end", timeout_s=SOCKET_TIMEOUT_S, id=job_id)
        except CommandFailed as exc:
            # not running under its own id: a requeued job's later run (ID.N) may be
            run_id = running_id(job_id, rules) if exc.code == ErrorCode.BAD_JOB else job_id
            if run_id == job_id:
                raise
            report = call(_socket(rules), "job.end", timeout_s=SOCKET_TIMEOUT_S, id=run_id)
    except NotRunning:
        out.log.append(f"govd-slurm: job {job_id}: govd is not running; no energy to report")
        return
    except CommandFailed as exc:
        if exc.code == ErrorCode.BAD_JOB:
            out.log.append(f"govd-slurm: job {job_id}: not running in govd ({exc})")
        else:
            out.log.append(f"govd-slurm: job {job_id}: {exc}")
        return
    except GovdError as exc:
        out.log.append(f"govd-slurm: job {job_id}: {exc}")
        return
    if not report.get("jobs"):
        out.log.append(f"govd-slurm: job {job_id} ended; the ledger is off, no energy to report")
        return
    comment = energy_comment(report)
    out.log.append(f"govd-slurm: job {job_id} ended: {comment}")
    if rules.admin_comment:
        try:
            subprocess.run([rules.scontrol, "update", f"JobId={job_id}", f"AdminComment={comment}"],
                           check=True, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or exc
            out.log.append(f"govd-slurm: job {job_id}: cannot write AdminComment: {str(detail).strip()}")


def job_end(env: dict[str, str], rules: SiteRules) -> Outcome:
    """The SPANK plugin's call when a batch script ends (in slurmstepd, as root): the job still runs,
    so its AdminComment may still be written, which the Epilog no longer may."""
    out = Outcome()
    job_id = env.get("SLURM_JOB_ID", "").strip()
    if not job_id:
        raise GovdError("SLURM_JOB_ID is not set: spank_govd passes it")
    end_job(job_id, rules, out)
    return out


def epilog(env: dict[str, str], rules: SiteRules) -> Outcome:
    """Cleans up, and ends the job in govd if the SPANK plugin did not (jobs without a batch script,
    or no plugin); Slurm then refuses the AdminComment of a finished job, which is logged."""
    out = Outcome()
    job = SlurmJob.from_env(env)
    try:
        clear_mapping(rules, job)
    except OSError as exc:
        out.log.append(f"govd-slurm: job {job.job_id}: cannot remove dcgm-exporter mapping files: {exc}")
    try:
        _message_file(rules, job.job_id).unlink()
    except OSError:
        pass
    if job.gpus:
        end_job(job.job_id, rules, out)
    return out


def task_prolog(env: dict[str, str], rules: SiteRules) -> Outcome:
    """Runs as the user in the job: Slurm copies lines starting with "print " into the job's output."""
    out = Outcome()
    job_id = env.get("SLURM_JOB_ID", "").strip()
    if not job_id:
        return out
    try:
        out.job_line = _message_file(rules, job_id).read_text().strip()
    except OSError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="govd-slurm", description="Slurm Prolog/Epilog/TaskProlog for govd "
                                "(docs/deploy.md); always exits 0 so that a job never fails for govd")
    p.add_argument("script", choices=("prolog", "epilog", "task-prolog", "job-end"))
    p.add_argument("--site", type=Path, default=Path(os.environ.get("GOVD_SLURM_SITE", SITE_FILE)),
                   help=f"site rules (default $GOVD_SLURM_SITE, else {SITE_FILE})")
    args = p.parse_args(argv)
    try:
        rules = SiteRules.load(args.site)
        run = {"prolog": prolog, "epilog": epilog, "task-prolog": task_prolog, "job-end": job_end}[args.script]
        outcome = run(dict(os.environ), rules)
    except Exception as exc:  # noqa: BLE001 - whatever goes wrong, the job must not fail for govd
        print(f"govd-slurm {args.script}: {exc}", file=sys.stderr)
        return 0
    for line in outcome.log:
        print(line, file=sys.stderr)
    if args.script == "task-prolog" and outcome.job_line:
        print(f"print {outcome.job_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
