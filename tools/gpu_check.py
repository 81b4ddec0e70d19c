#!/usr/bin/env python3
"""One prepared check of govd's NVML backend on a real GPU (for a machine with an NVIDIA GPU).

It answers, per GPU: what NVML can read (every Sample field, Limits, capabilities), whether SM clocks
can be locked and the power limit set (and read back), and, with PyTorch installed, how much energy
govd's policies (`balanced` and `batch` unless --policies says) save against firmware defaults on a
memory-bound and a compute-bound loop (energy from NVML's counter, time from the loop itself). Every
setting it changes is saved to an originals file first and restored at the end, on error too;
`govd --restore --root DIR` restores after a crash. Output: a JSON report (stdout, or --out FILE) for docs/hardware.md.

    sudo python tools/gpu_check.py --out /tmp/gpu_check.json            # reads, writes, workloads
    sudo python tools/gpu_check.py --sweep --out /tmp/gpu_check.json    # also each loop at fixed clocks
    python tools/gpu_check.py --read-only                               # no root needed

Under a policy the report keeps a timeline (once a second: the controller's state, its clock ceiling and
what NVML read), so that a run that saved nothing says why. The sweep locks each loop at a few fixed SM
clocks and records time and energy per iteration at each: the real curve the simulator's GPU models
should be checked against.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.actuation import restore_settings  # noqa: E402
from governor.clock import RealClock  # noqa: E402
from governor.config import default_config  # noqa: E402
from governor.errors import GovdError  # noqa: E402
from governor.nvml_backend import NvmlSystem  # noqa: E402
from governor.originals import OriginalsFile  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.worker import GpuWorker  # noqa: E402


def check_reads(dev) -> dict:
    out: dict = {"info": dev.info.__dict__}
    try:
        out["limits"] = dev.limits().to_dict()
        out["limits"]["sm_clocks_mhz"] = [out["limits"]["sm_clocks_mhz"][0], out["limits"]["sm_clocks_mhz"][-1],
                                          len(out["limits"]["sm_clocks_mhz"])]
    except GovdError as exc:
        out["limits_error"] = str(exc)
    try:
        dev.sample()
        time.sleep(0.2)
        out["sample"] = dev.sample().to_dict()
    except GovdError as exc:
        out["sample_error"] = str(exc)
    return out


@contextmanager
def restored_after(dev, originals: OriginalsFile, lim):
    """Save the GPU's settings to the originals file, and restore them when the block ends, on error
    too; yields the list the restore actions are appended to."""
    originals.save_once(dev)
    saved = originals.saved(dev.info.uuid)
    actions: list = []
    try:
        yield actions
    finally:
        actions.extend(restore_settings(dev, saved, lim))
        originals.forget(dev.info.uuid)


def check_writes(dev, originals: OriginalsFile) -> dict:
    """Lock a mid clock, set a lower power limit, read both back, then restore."""
    lim = dev.limits()
    res: dict = {}
    with restored_after(dev, originals, lim) as restore:
        try:
            mid = lim.sm_clocks_mhz[len(lim.sm_clocks_mhz) // 2]
            t0 = time.perf_counter()
            dev.set_locked_clocks(lim.sm_clock_min_mhz, mid)
            res["lock_call_ms"] = round(1000 * (time.perf_counter() - t0), 2)
            time.sleep(0.1)
            res["lock"] = {"asked_max_mhz": mid, "sm_clock_after_100ms": dev.sample().sm_clock_mhz, "ok": True}
        except GovdError as exc:
            res["lock"] = {"ok": False, "error": str(exc)}
        try:
            target = max(lim.power_limit_min_w, round(lim.power_limit_default_w * 0.8))
            dev.set_power_limit_w(target)
            res["power_limit"] = {"asked_w": target, "read_back_w": dev.get_power_limit_w(), "ok": True}
        except GovdError as exc:
            res["power_limit"] = {"ok": False, "error": str(exc)}
    res["restore"] = [r.to_dict() for r in restore]
    return res


def torch_loop(kind: str, seconds: float, device_index: int) -> tuple[float, int]:
    """Run a memory-bound (copy) or compute-bound (matmul) loop; returns (seconds, iterations)."""
    import torch

    dev = torch.device(f"cuda:{device_index}")
    step = _make_step(kind, dev)
    for _ in range(5):
        step()
    torch.cuda.synchronize(dev)
    return _timed(step, seconds, dev)


def _make_step(kind: str, dev):
    """One iteration of the memory-bound (a 1 GiB copy) or the compute-bound (bf16 8192^3 matmul) loop."""
    import torch

    if kind == "memory":
        a = torch.empty(1 << 28, dtype=torch.float32, device=dev)  # 1 GiB
        b = torch.empty_like(a)
        return lambda: b.copy_(a)
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    return lambda: a @ a


def _timed(step, seconds: float, dev) -> tuple[float, int]:
    import torch

    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            step()
        torch.cuda.synchronize(dev)
        n += 10
    return time.perf_counter() - t0, n


def energy_run(dev, kind: str, policy_name: str | None, seconds: float, root: Path) -> dict:
    """Energy per iteration of a loop, under firmware defaults (None) or a govd policy."""
    worker = None
    stop = threading.Event()
    timeline: list[dict] = []
    if policy_name:
        worker = GpuWorker(dev, load_policy(policy_name), default_config(), OriginalsFile(root / "originals.json"),
                           RealClock())
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        watcher = threading.Thread(target=_watch, args=(worker, stop, timeline), daemon=True)
        watcher.start()
    e0 = dev.sample().energy_mj
    try:
        elapsed, iters = torch_loop(kind, seconds, dev.info.index)
    finally:
        e1 = dev.sample().energy_mj
        if worker is not None:
            stop.set()
            thread.join(10)
            worker.hand_back()
    joules = (e1 - e0) / 1000.0 if e0 is not None and e1 is not None else None
    run = {"policy": policy_name or "default", "seconds": round(elapsed, 3), "iterations": iters,
           "joules": joules, "joules_per_iteration": joules / iters if joules else None,
           "seconds_per_iteration": elapsed / iters}
    if worker is not None:
        run["timeline"] = timeline
    return run


def _watch(worker: GpuWorker, stop: threading.Event, timeline: list[dict], period_s: float = 1.0) -> None:
    """Once a second, what the controller held and what NVML read, until the run stops."""
    t0 = time.perf_counter()
    while not stop.wait(period_s):
        status = worker.controller.status()
        s = worker.last_sample
        timeline.append({
            "t_s": round(time.perf_counter() - t0, 1), "state": status.get("state"),
            "ceiling_mhz": worker.target.sm_clock_max_mhz if worker.target else None,
            "power_limit_w": worker.target.power_limit_w if worker.target else None,
            "why": status.get("last_change"), "composite": status.get("composite"),
            "sm_clock_mhz": s.sm_clock_mhz if s else None, "gpu_util_pct": s.gpu_util_pct if s else None,
            "mem_util_pct": s.mem_util_pct if s else None, "sm_activity_pct": s.sm_activity_pct if s else None,
            "dram_bw_pct": s.dram_bw_pct if s else None, "power_w": s.power_w if s else None,
        })


def clock_sweep(dev, kind: str, seconds: float, originals: OriginalsFile, settle_s: float = 1.0) -> list[dict]:
    """Each loop locked at a few SM clocks in turn: time and energy per iteration, and what NVML read."""
    import torch

    lim = dev.limits()
    clocks = lim.sm_clocks_mhz
    picks = sorted({clocks[round(i * (len(clocks) - 1) / 6)] for i in range(7)}, reverse=True)[:6]
    tdev = torch.device(f"cuda:{dev.info.index}")
    step = _make_step(kind, tdev)
    rows = []
    with restored_after(dev, originals, lim):
        for mhz in picks:
            dev.set_locked_clocks(lim.sm_clock_min_mhz, mhz)
            _timed(step, settle_s, tdev)  # settle at the new clock
            e0 = dev.sample().energy_mj
            elapsed, iters = _timed(step, seconds, tdev)
            s = dev.sample()
            joules = (s.energy_mj - e0) / 1000.0
            rows.append({"ceiling_mhz": mhz, "sm_clock_mhz": s.sm_clock_mhz, "seconds_per_iteration": elapsed / iters,
                         "joules_per_iteration": joules / iters, "power_w": joules / elapsed,
                         "gpu_util_pct": s.gpu_util_pct, "mem_util_pct": s.mem_util_pct,
                         "sm_activity_pct": s.sm_activity_pct, "dram_bw_pct": s.dram_bw_pct,
                         "clock_event_reasons": s.clock_event_reasons})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--read-only", action="store_true", help="only read: no clocks, limits or workloads")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each workload run")
    p.add_argument("--gpu", type=int, default=0, help="GPU index for writes and workloads")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    p.add_argument("--policies", default="balanced,batch",
                   help="comma-separated policies to run each loop under (balanced holds saturated work at default "
                        "settings, since it could be requests; batch bounds end time only)")
    p.add_argument("--sweep", action="store_true", help="also run each loop locked at six SM clocks")
    p.add_argument("--sweep-seconds", type=float, default=5.0, help="length of each sweep point")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="govd-gpucheck-"))
    report: dict = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "originals": str(root / "originals.json")}
    try:
        system = NvmlSystem()
    except GovdError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    report["driver"] = system.driver_version()
    devices = system.devices()
    report["gpus"] = [check_reads(d) for d in devices]
    if not args.read_only:
        dev = devices[args.gpu]
        originals = OriginalsFile(root / "originals.json")
        report["writes"] = check_writes(dev, originals)
        try:
            import torch  # noqa: F401

            report["workloads"] = {}
            for kind in ("memory", "compute"):
                ref = energy_run(dev, kind, None, args.seconds, root)
                runs = [ref]
                for name in args.policies.split(","):
                    gov = energy_run(dev, kind, name, args.seconds, root)
                    if ref["joules_per_iteration"] and gov["joules_per_iteration"]:
                        gov["saved"] = 1 - gov["joules_per_iteration"] / ref["joules_per_iteration"]
                        gov["slowdown"] = gov["seconds_per_iteration"] / ref["seconds_per_iteration"] - 1
                    runs.append(gov)
                report["workloads"][kind] = runs
                if args.sweep:
                    report.setdefault("sweep", {})[kind] = clock_sweep(dev, kind, args.sweep_seconds, originals)
        except ImportError:
            report["workloads"] = "skipped: PyTorch is not installed"
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    system.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
