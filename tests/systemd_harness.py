"""A real systemd as PID 1 of a private namespace, for testing govd.service end to end.

Safety first (a systemd booted carelessly on a shared filesystem cleans /tmp and remounts things,
and a test that signals the wrong PID kills its own runner):
- its own PID, mount and cgroup namespaces, mounts private; in every cgroup hierarchy of the host
  (v2, and each v1 controller) it sits in a sub-cgroup of its own, removed at the end;
- it runs chrooted in a read-only bind of /, mounted on a folder inside the test's own temporary
  folder, with fresh tmpfs on /run, /tmp, /var/tmp, /var/lib and /var/log, so nothing it writes
  or cleans reaches the host; the folders the interpreter and this checkout live in are bound
  back in read-only, wherever they are (a virtualenv under /tmp included);
- it boots only `govd-test.target`, which wants govd.service and nothing else; govd.service gets
  DefaultDependencies=no so that no sysinit unit (tmpfiles, remount-fs, ...) is pulled in;
- only processes it started and checked are signalled: the namespace's PID 1 (by its host PID,
  checked to be the systemd it started, in a PID namespace that is not the test's), and the
  `unshare` process group it created. `close()` waits, bounded, until no process is left in the
  namespace and fails loudly if one is.
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

from governor.install import runtime_paths

BOOT = r"""
set -e
R="$NSROOT"
mount --rbind / "$R"
mount -o remount,bind,ro "$R"
for d in run tmp var/tmp var/lib var/log; do mount -t tmpfs -o mode=755 tmpfs "$R/$d"; done
mount -t proc proc "$R/proc"
# the interpreter and the checkout, wherever they live (the tmpfs above may hide them)
IFS=:
for p in $EXPOSE; do
    if [ -d "$p" ] && ! [ -d "$R$p" ]; then
        mkdir -p "$R$p" && mount --bind "$p" "$R$p" && mount -o remount,bind,ro "$R$p"
    fi
done
unset IFS
mkdir -p "$R/run/systemd/system" "$R/run/govd-test"
cp -r "$UNITS"/. "$R/run/systemd/system/"
cp -r "$FILES"/. "$R/run/govd-test/"
exec chroot "$R" /lib/systemd/systemd --system --unit=govd-test.target --log-target=journal --log-level=info
"""


def available() -> str | None:
    """None when a namespaced systemd can run here, else why not. In CI (GOVD_TESTS_REQUIRE_REAL,
    set by tools/test.sh) a reason is an error: there every real-component test must run."""
    why = _why_not()
    if why is not None and os.environ.get("GOVD_TESTS_REQUIRE_REAL"):
        raise RuntimeError(f"the real-systemd tests cannot run ({why}) but CI requires them")
    return why


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (unshare, mount)"
    for tool in ("unshare", "nsenter", "chroot", "pgrep"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/lib/systemd/systemd").exists():
        return "systemd is not installed (/lib/systemd/systemd)"
    return None


def _pidns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with the
    PID, it names one process, never a later one that reuses the number."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def exposed_paths() -> list[str]:
    """What the namespace must see of the host that its tmpfs mounts would hide: the interpreter's
    prefixes and this checkout (PYTHONPATH of the unit under test)."""
    repo = Path(__file__).resolve().parent.parent
    return sorted({str(p) for p in runtime_paths()} | {str(repo)})


SYSTEMD_TOP_CGROUPS = ("system.slice", "init.scope", "user.slice", "machine.slice")

class SystemdNamespace:
    def __init__(self, unit_text: str, dropin: str, files: dict[str, str]):
        self.tmp = Path(tempfile.mkdtemp(prefix="govd-sd-"))
        self.proc: subprocess.Popen | None = None
        self.pid1: int | None = None
        self.pid1_ticks: str | None = None
        self.ns: str | None = None
        self.cgroups: list[Path] = []
        self._systemd_dirs_before: set[Path] = set()
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
        nsroot = self.tmp / "root"
        nsroot.mkdir()
        self.log = (self.tmp / "console.log").open("w")
        env = {**os.environ, "UNITS": str(units), "FILES": str(files_dir), "NSROOT": str(nsroot),
               "EXPOSE": ":".join(exposed_paths())}
        try:
            self.cgroups = self._sub_cgroups()
            self._systemd_dirs_before = self._systemd_dirs()
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--cgroup", "--propagation", "private", "--mount-proc",
                 "sh", "-c", BOOT], stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=self._enter_cgroups)
            self.pid1 = self._find_pid1()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _sub_cgroups() -> list[Path]:
        """A sub-cgroup of its own in every hierarchy of the host (the v2 one and each v1 controller
        or named hierarchy), so that the namespace's cgroup root is that sub-cgroup everywhere and
        nothing of it sits in, or moves anything of, the host's root cgroups."""
        base = Path("/sys/fs/cgroup")
        hierarchies = [base] if (base / "cgroup.procs").exists() else []
        if base.is_dir():
            hierarchies += sorted(p for p in base.iterdir() if not p.is_symlink() and (p / "cgroup.procs").exists())
        made = []
        for hierarchy in hierarchies:
            sub = hierarchy / f"govd-test-{os.getpid()}-{time.monotonic_ns()}"
            try:
                sub.mkdir()
            except OSError:
                continue
            made.append(sub)
            # cpuset needs its cpus and mems set before a process may join (v1)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                try:
                    if (sub / knob).exists() and not (sub / knob).read_text().strip():
                        (sub / knob).write_text((hierarchy / knob).read_text())
                except OSError:
                    pass
        return made

    @staticmethod
    def _systemd_dirs() -> set[Path]:
        """The top-level cgroups systemd makes (system.slice, init.scope, ...) at each hierarchy's root.
        Where the kernel (gVisor) does not root the namespace's cgroups in its sub-cgroup, the
        namespace's systemd makes them at the host's roots; those that were not there before the
        test are its own, and are removed with it once empty."""
        base = Path("/sys/fs/cgroup")
        roots = [base, *(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())] if base.is_dir() else []
        return {r / name for r in roots for name in SYSTEMD_TOP_CGROUPS if (r / name).is_dir()}

    def _enter_cgroups(self) -> None:
        for sub in self.cgroups:
            try:
                (sub / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                pass

    def _find_pid1(self, timeout: float = 20.0) -> int:
        """The namespace's systemd: a child of our `unshare`, named systemd, in another PID namespace."""
        ours = _pidns("self")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
            for pid in out:
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    continue
                ns = _pidns(pid)
                if comm == "systemd" and ns is not None and ns != ours:
                    self.ns, self.pid1_ticks = ns, _start_ticks(int(pid))
                    return int(pid)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
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

    def main_pid(self) -> int:
        """govd's main PID inside the namespace; fails (never returns 0 or 1) when it has none."""
        text = self.show("MainPID")
        pid = int(text) if text.isdigit() else 0
        if pid <= 1:
            raise AssertionError(f"govd.service has no main process (MainPID={text!r}):\n{self.journal()[-3000:]}")
        return pid

    def kill_main(self, sig: str = "SIGKILL") -> int:
        """Signal govd's main process through systemd, which signals only the unit's own main
        process (and fails if there is none); returns the PID it had."""
        pid = self.main_pid()
        r = self.run("systemctl", "kill", "--kill-who=main", f"--signal={sig}", "govd.service")
        if r.returncode != 0:
            raise AssertionError(f"systemctl kill failed: {r.stderr}")
        return pid

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

    def processes(self) -> list[int]:
        """Host PIDs of every process still in the namespace."""
        if self.ns is None:
            return []
        left = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _pidns(entry.name) == self.ns:
                left.append(int(entry.name))
        return left

    def close(self, timeout: float = 20.0) -> None:
        """Stop everything the namespace holds, by PID, and remove what the test made."""
        pid1 = self.pid1
        if pid1 is not None and pid1 > 1 and _pidns(pid1) == self.ns and _start_ticks(pid1) == self.pid1_ticks:
            try:
                os.kill(pid1, signal.SIGKILL)  # the kernel then kills every process of the namespace
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.pid > 1 and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the session `unshare` was started in
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        end = time.monotonic() + timeout
        while self.processes() and time.monotonic() < end:
            time.sleep(0.1)
        left = self.processes()
        self.log.close()
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
        if not left:
            for top in self._systemd_dirs() - self._systemd_dirs_before:
                for child in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    try:
                        child.rmdir()  # an empty cgroup only: the kernel refuses one with processes
                    except OSError:
                        pass
                try:
                    top.rmdir()
                except OSError:
                    pass
        nsroot = self.tmp / "root"
        if not left and not (nsroot.exists() and os.path.ismount(nsroot)):
            shutil.rmtree(self.tmp, ignore_errors=True)
        if left:
            raise RuntimeError(f"processes of the test's namespace still run after close: {left}")


def python_cmd() -> str:
    return f"{sys.executable} -m governor.cli.govd"
