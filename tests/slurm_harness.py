"""A real Slurm on localhost for tests: munged, slurmctld and slurmd in the foreground, each the test's own
child, in a private network namespace whose only interface is loopback (so nothing listens beyond
it), with two GPUs exposed as GRES through character devices (Slurm refuses plain files).

Every process is started here and stopped here by its own PID, never 0 or 1. The config and state
live in one temporary folder, removed by the caller. No cgroups are used (proctrack/linuxproc,
task/none), so nothing is left in the cgroup tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from child_processes import stop_child

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo", "unshare", "nsenter", "ip",
            "hostname", "gcc", "mknod")
CTLD_PORT, SLURMD_PORT = 16817, 16818
# A job credential's lifetime, and with it how long slurmd remembers a requeued job's revoked
# credential and how long slurmctld holds the job before its next run (Slurm's default is 120 s).
# Shorter, so that a requeue test waits for it to pass rather than releasing the job early: a job
# relaunched while slurmd still remembers it runs without the prolog.
CRED_EXPIRE_S = 15


def why_not() -> str | None:
    """None when a real Slurm can run here, else why not. In CI a reason is an error (GOVD_TESTS_REQUIRE_REAL)."""
    why = None
    if os.geteuid() != 0:
        why = "needs root (munged, slurmd, mknod, network namespace)"
    else:
        missing = [b for b in BINARIES if shutil.which(b) is None]
        if missing:
            why = f"missing {', '.join(missing)} (Debian: slurmctld slurmd slurm-client munge libslurm-dev gcc)"
        elif not Path("/usr/include/slurm/spank.h").exists():
            why = "missing /usr/include/slurm/spank.h (Debian: libslurm-dev)"
    if why and os.environ.get("GOVD_TESTS_REQUIRE_REAL"):
        raise RuntimeError(f"the real-Slurm test cannot run ({why}) but CI requires it")
    return why


class SlurmCluster:
    """One node (`govdnode`, two GPUs) and its controller, configured under work/."""

    def __init__(self, work: Path, prolog: Path, epilog: Path, task_prolog: Path, plugin: Path,
                 plugin_args: str = ""):
        self.work = work
        self.conf = work / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "SLURM_CONF": str(self.conf)}
        for d in ("state", "spool", "log"):
            (work / d).mkdir()
        for i in range(2):
            subprocess.run(["mknod", str(work / f"nvidia{i}"), "c", "195", str(i)], check=True)
        key = work / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (work / "plugstack.conf").write_text(f"required {plugin} {plugin_args}\n")
        (work / "gres.conf").write_text(f"NodeName=govdnode Name=gpu File={work}/nvidia[0-1]\n")
        self.conf.write_text(f"""ClusterName=govdtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny,EnableIPv6
AuthType=auth/munge
AuthInfo=socket={work}/munge.sock,cred_expire={CRED_EXPIRE_S}
CredType=cred/munge
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool/slurmd.%n
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.%n.pid
SlurmctldLogFile={work}/log/slurmctld.log
SlurmdLogFile={work}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
GresTypes=gpu
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
PrologFlags=Alloc
Prolog={prolog}
Epilog={epilog}
TaskProlog={task_prolog}
PlugStackConfig={work}/plugstack.conf
NodeName=govdnode NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PartitionName=gpu Nodes=govdnode Default=YES MaxTime=INFINITE State=UP
PartitionName=capped Nodes=govdnode MaxTime=INFINITE State=UP
""")

    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = (self.work / "log" / f"{name}.out").open("w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def in_netns(self, cmd: list[str]) -> list[str]:
        pid = self.procs["netns"].pid
        return ["nsenter", f"--net=/proc/{pid}/ns/net", f"--uts=/proc/{pid}/ns/uts", *cmd]

    def run(self, *cmd: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(self.in_netns(list(cmd)), env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def start(self) -> None:
        # the namespaces' holder: `unshare` execs sleep in a fresh network namespace (loopback only) and
        # UTS namespace, whose host name is "localhost" so that Slurm resolves its own name to 127.0.0.1
        holder = self._start("netns", ["unshare", "--net", "--uts", "sleep", "3600"])
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            if time.monotonic() > deadline or holder.poll() is not None:
                raise RuntimeError("could not make a network namespace for Slurm")
            time.sleep(0.05)
        subprocess.run(self.in_netns(["ip", "link", "set", "lo", "up"]), check=True, timeout=10)
        subprocess.run(self.in_netns(["hostname", "localhost"]), check=True, timeout=10)
        self._start("munged", self.in_netns([
            "munged", "-F", "-f", f"--socket={self.work}/munge.sock", f"--key-file={self.work}/munge.key",
            f"--pid-file={self.work}/munged.pid", f"--log-file={self.work}/log/munged.log",
            f"--seed-file={self.work}/munged.seed"]))
        self._wait(lambda: (self.work / "munge.sock").exists(), 10, "munged did not create its socket")
        self._start("slurmctld", self.in_netns(["slurmctld", "-D", "-f", str(self.conf)]))
        self._start("slurmd", self.in_netns(["slurmd", "-D", "-f", str(self.conf), "-N", "govdnode"]))
        self._wait(lambda: "idle" in self.run("sinfo", "-h", "-o", "%T", check=False).stdout, 30,
                   "the node did not come up idle")

    def _wait(self, pred, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}): {self.logs()}")
            try:
                if pred():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{what}: {self.logs()}")

    def wait_jobs_done(self, timeout: float = 60.0) -> None:
        self._wait(lambda: self.run("squeue", "-h", check=False).stdout.strip() == "", timeout,
                   "jobs did not finish")

    def logs(self) -> str:
        out = []
        for f in sorted((self.work / "log").iterdir()):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-1500:]}")
        return "\n".join(out)

    def stop(self) -> None:
        """slurmd, slurmctld, munged, then the namespace's holder: each by its own PID."""
        for name in ("slurmd", "slurmctld", "munged", "netns"):
            stop_child(self.procs.get(name))

    def leftovers(self) -> list[str]:
        """Processes still running whose command line names this cluster's folder (slurmstepd of a job)."""
        r = subprocess.run(["pgrep", "-af", str(self.work)], capture_output=True, text=True)
        return [line for line in r.stdout.splitlines() if line.strip()]
