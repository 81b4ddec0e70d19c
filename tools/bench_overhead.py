#!/usr/bin/env python3
"""The daemon's own cost: govd with N simulated GPUs at a control rate, for a fixed wall time.

Reports the governor's CPU time as a share of one core with the simulator's own cost taken out
(the time spent inside the simulated device's calls, which on real GPUs is NVML's), peak RSS of the
process (simulator included), and tick latency p50/p99 excluding the device calls. A GPU's first
write needs its original settings on disk (originals.json, fsynced: what a restore after SIGKILL
reads; the daemon saves them at start-up); those ticks are also shown apart: p99 over the other
ticks, and the slowest first write.

The CPU share is the running daemon's: from READY=1 (every GPU set up and read once) to STOPPING=1,
the span a long-running service spends in. Start-up (opening the ledger, restoring a crash's leftovers,
loading policies, saving every GPU's originals in one write) and shutdown (restoring every GPU) are
one-off costs, reported apart in CPU seconds.

    python tools/bench_overhead.py                      # 1, 8 and 64 GPUs, 10 Hz, 20 s each
    python tools/bench_overhead.py --gpus 8 --seconds 30 --json
    python tools/bench_overhead.py --gpus 8 --scrape-s 5   # metrics on, scraped every 5 s by another process

Without --scrape-s the metrics endpoint is off. With it, the endpoint listens on loopback and a
separate process scrapes it (its own CPU is not counted; the daemon's work to answer is).

Each configuration runs in its own process so that peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


SCRAPER = r"""
import sys, time, urllib.request
url, every, end = sys.argv[1], float(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        pass
    time.sleep(every)
"""


def run_one(gpus: int, hz: float, seconds: float, scrape_s: float | None = None) -> dict:
    from governor.backends import open_sim_devices
    from governor.clock import RealClock
    from governor.daemon import Daemon, DaemonOptions
    from governor.logsetup import setup_logging
    from governor.paths import resolve_paths
    from governor.sim.device import SimDevice
    from governor.sim.trace import load_trace
    from governor.systemd_integration import Notifier

    setup_logging("error")
    device_cpu = {"s": 0.0}
    tick_device_wall: dict[int, float] = {}
    lock = threading.Lock()

    def timed(method):
        def wrapper(self, *a, **kw):
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                return method(self, *a, **kw)
            finally:
                dc, dw = time.thread_time() - c0, time.perf_counter() - w0
                with lock:
                    device_cpu["s"] += dc
                tid = threading.get_ident()
                tick_device_wall[tid] = tick_device_wall.get(tid, 0.0) + dw
        return wrapper

    for name in ("sample", "get_power_limit_w", "get_locked_clocks", "set_locked_clocks", "reset_locked_clocks",
                 "set_power_limit_w"):
        setattr(SimDevice, name, timed(getattr(SimDevice, name)))

    marks: dict[str, tuple[float, float, float]] = {}  # event -> (process CPU, device CPU, wall)

    def mark(name: str) -> None:
        if name not in marks:
            with lock:  # process_time: every thread's CPU, at the kernel's nanosecond resolution
                marks[name] = (time.process_time(), device_cpu["s"], time.perf_counter())

    class MarkingNotifier(Notifier):
        """Marks the running span; sends nothing (no NOTIFY_SOCKET in the benchmark)."""

        def ready(self, status: str) -> bool:
            mark("ready")
            return super().ready(status)

        def stopping(self) -> bool:
            mark("stopping")
            return super().stopping()

    root = Path(tempfile.mkdtemp(prefix="govd-bench-"))
    (root / "etc").mkdir()
    (root / "etc" / "govd.toml").write_text(
        f"[daemon]\nperiod_ms = {int(1000 / hz)}\nstatus_log_s = 0\n[socket]\nenabled = false\n"
        "[ledger]\nlog_every_s = 0\n"
        f"[metrics]\nlisten = \"{'127.0.0.1:0' if scrape_s else ''}\"\n")
    paths = resolve_paths(root)
    paths.ensure()
    clock = RealClock()
    trace = load_trace("llm-serving")
    devices = open_sim_devices(["h100-sxm"] * gpus, clock, paths.runtime_dir, trace)
    options = DaemonOptions(duration_s=seconds, policy="balanced", notifier=MarkingNotifier(env={}))
    daemon = Daemon(paths, options, devices, clock)

    latencies: list[float] = []
    first_writes: list[float] = []  # each GPU's first write needs its originals on disk
    later: list[float] = []  # every other tick
    from governor.worker import GpuWorker

    original_tick = GpuWorker.tick

    def tick(self):
        tid = threading.get_ident()
        tick_device_wall[tid] = 0.0
        unwritten = self.stats.writes == 0
        w0 = time.perf_counter()
        original_tick(self)
        total = time.perf_counter() - w0
        with lock:
            latency = total - tick_device_wall.get(tid, 0.0)
            latencies.append(latency)
            (first_writes if unwritten and self.stats.writes > 0 else later).append(latency)

    GpuWorker.tick = tick
    scraper = None
    if scrape_s:
        def start_scraper():
            while daemon.metrics is None or daemon.metrics.address is None:
                time.sleep(0.05)
            host, port = daemon.metrics.address
            nonlocal scraper
            scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, f"http://{host}:{port}/metrics", str(scrape_s),
                                        str(seconds + 30)])

        threading.Thread(target=start_scraper, daemon=True).start()
    mark("start")
    try:
        daemon.run()
    finally:
        if scraper is not None and scraper.pid > 1:
            scraper.kill()
            scraper.wait(10)
    mark("end")
    shutil.rmtree(root, ignore_errors=True)  # after the mark: not counted as the daemon's shutdown
    (c0, d0, _), (c1, d1, w1), (c2, d2, w2), (c3, d3, _) = (marks[k] for k in ("start", "ready", "stopping", "end"))
    wall = w2 - w1
    governor_cpu = max(0.0, (c2 - c1) - (d2 - d1))

    def pct(q, values=latencies):
        values = sorted(values)
        return 1000.0 * values[min(len(values) - 1, int(q * len(values)))] if values else None

    return {"gpus": gpus, "hz": hz, "scrape_s": scrape_s, "seconds": round(wall, 2), "ticks": len(latencies),
            "governor_cpu_core_share": round(governor_cpu / wall, 5),
            "governor_cpu_core_share_per_gpu": round(governor_cpu / wall / gpus, 6),
            "simulator_cpu_core_share": round((d2 - d1) / wall, 5),
            "startup_cpu_s": round(max(0.0, (c1 - c0) - (d1 - d0)), 4),
            "shutdown_cpu_s": round(max(0.0, (c3 - c2) - (d3 - d2)), 4),
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "tick_p50_ms": round(pct(0.5), 3), "tick_p99_ms": round(pct(0.99), 3),
            "tick_p99_after_first_write_ms": round(pct(0.99, later), 3),
            "first_write_max_ms": round(1000.0 * max(first_writes), 1) if first_writes else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=int, help="one configuration: this many simulated GPUs")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--hz", type=float, default=10.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--write", action="store_true", help="refresh the table in docs/benchmarks.md in place")
    p.add_argument("--scrape-s", type=float, help="metrics on, scraped this often by another process")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.gpus, args.hz, args.seconds, args.scrape_s)))
        return 0
    results = []
    for n in ([args.gpus] if args.gpus else [1, 8, 64]):
        scrape = ["--scrape-s", str(args.scrape_s)] if args.scrape_s else []
        out = subprocess.run([sys.executable, __file__, "--one", "--gpus", str(n), "--seconds", str(args.seconds),
                              "--hz", str(args.hz), *scrape], capture_output=True, text=True, env=os.environ)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    lines = ["| GPUs | Hz | governor CPU (share of one core) | per GPU | simulator CPU | peak RSS | tick p50 "
             "| tick p99 | tick p99 after first writes | slowest first write | start-up CPU | shutdown CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['gpus']} | {r['hz']:g} | {100 * r['governor_cpu_core_share']:.2f}% | "
                     f"{100 * r['governor_cpu_core_share_per_gpu']:.3f}% | "
                     f"{100 * r['simulator_cpu_core_share']:.2f}% | "
                     f"{r['rss_mb']:.0f} MB | {r['tick_p50_ms']:.2f} ms | {r['tick_p99_ms']:.2f} ms | "
                     f"{r['tick_p99_after_first_write_ms']:.2f} ms | {r['first_write_max_ms'] or 0:.1f} ms | "
                     f"{1000 * r['startup_cpu_s']:.0f} ms | {1000 * r['shutdown_cpu_s']:.0f} ms |")
    text = "\n".join(lines)
    if args.write:
        from docsection import write_section  # noqa: PLC0415 - a sibling in tools/

        write_section("bench_overhead", text)
    print(text)
    return 0

if __name__ == "__main__":
    sys.exit(main())
