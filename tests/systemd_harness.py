"""A real systemd as PID 1 of a private namespace, for testing govd.service end to end.

Safety first (a systemd booted carelessly on a shared filesystem cleans /tmp and remounts things):
- its own PID, mount and cgroup namespaces, mounts private;
- it runs chrooted in a read-only bind of /, with fresh tmpfs on /run, /tmp, /var/tmp, /var/lib and
  /var/log, so nothing it writes or cleans reaches the host;
- it boots only `govd-test.target`, which wants govd.service and nothing else; govd.service gets
  DefaultDependencies=no so that no sysinit unit (tmpfiles, remount-fs, ...) is pulled in.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BOOT = r"""
set -e
R=$(mktemp -d /run/govd-ns.XXXXXX)
mount --rbind / "$R"
mount -o remount,bind,ro "$R"
for d in run tmp var/tmp var/lib var/log; do mount -t tmpfs -o mode=755 tmpfs "$R/$d"; done
mount -t proc proc "$R/proc"
mkdir -p "$R/run/systemd/system" "$R/run/govd-test"
cp -r "$UNITS"/. "$R/run/systemd/system/"
cp -r "$FILES"/. "$R/run/govd-test/"
exec chroot "$R" /lib/systemd/systemd --system --unit=govd-test.target --log-target=journal --log-level=info
"""


def available() -> str | None:
    """None when a namespaced systemd can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (unshare, mount)"
    for tool in ("unshare", "nsenter", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/lib/systemd/systemd").exists():
        return "systemd is not installed (/lib/systemd/systemd)"
    return None


class SystemdNamespace:
    def __init__(self, unit_text: str, dropin: str, files: dict[str, str]):
        self.tmp = Path(tempfile.mkdtemp(prefix="govd-sd-"))
        units = self.tmp / "units"
        (units / "govd.service.d").mkdir(parents=True)
        (units / "govd.service").write_text(unit_text)
        (units / "govd.service.d" / "test.conf").write_text(dropin)
        (units / "govd-test.target").write_text(
            "[Unit]\nDescription=govd test\nWants=govd.service systemd-journald.socket\nAfter=govd.service\n")
        files_dir = self.tmp / "files"
        files_dir.mkdir()
        for name, text in files.items():
            (files_dir / name).write_text(text)
        self.log = (self.tmp / "console.log").open("w")
        env = {**os.environ, "UNITS": str(units), "FILES": str(files_dir)}
        self.cgroups = self._sub_cgroups()
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--cgroup", "--propagation", "private", "--mount-proc",
             "sh", "-c", BOOT], stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            preexec_fn=self._enter_cgroups)
        self.pid1 = self._find_pid1()

    @staticmethod
    def _sub_cgroups() -> list[Path]:
        """A dedicated sub-cgroup in the hierarchies systemd manages, so that the namespace's cgroup root
        is that sub-cgroup and nothing on the host is moved by the namespaced systemd."""
        made = []
        for hierarchy in (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
            if not (hierarchy / "cgroup.procs").exists():
                continue
            sub = hierarchy / f"govd-test-{os.getpid()}-{time.monotonic_ns()}"
            try:
                sub.mkdir()
                made.append(sub)
            except OSError:
                pass
        return made

    def _enter_cgroups(self) -> None:
        for sub in self.cgroups:
            try:
                (sub / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                pass

    def _find_pid1(self, timeout: float = 20.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
            for pid in out:
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
                except OSError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.close()
        raise RuntimeError("systemd did not start in the namespace:\n" + self.console())

    def console(self) -> str:
        try:
            return (self.tmp / "console.log").read_text()[-4000:]
        except OSError:
            return ""

    def run(self, *cmd: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(self.pid1), "-m", "-p", "-r", "-w", *cmd],
                              capture_output=True, text=True, timeout=timeout)

    def show(self, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", "govd.service").stdout.strip()

    def wait(self, pred, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.2)
        return False

    def read(self, path: str) -> str | None:
        r = self.run("cat", path)
        return r.stdout if r.returncode == 0 else None

    def journal(self) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", "govd.service").stdout

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for sub in self.cgroups:  # empty once every process in it has ended; children first
            for child in sorted(sub.rglob("*"), key=lambda p: -len(p.parts)):
                if child.is_dir():
                    try:
                        child.rmdir()
                    except OSError:
                        pass
            try:
                sub.rmdir()
            except OSError:
                pass


def python_cmd() -> str:
    return f"{sys.executable} -m governor.cli.govd"
