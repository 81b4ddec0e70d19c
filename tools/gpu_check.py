#!/usr/bin/env python3
"""One prepared check of govd's NVML backend on a real GPU (for a machine with an NVIDIA GPU).

It answers, per GPU: what NVML can read (every Sample field, Limits, capabilities), whether SM clocks
can be locked and the power limit set (and read back), and, with PyTorch installed, how much energy
govd's `balanced` policy saves against firmware defaults on a memory-bound and a compute-bound
loop (energy from NVML's counter, time from the loop itself). Every setting it changes is saved to
an originals file first and restored at the end, on error too; `govd --restore --root DIR` restores
after a crash. Output: a JSON report (stdout, or --out FILE) for docs/hardware.md.

    sudo python tools/gpu_check.py --out /tmp/gpu_check.json            # reads, writes, workloads
    python tools/gpu_check.py --read-only                               # no root needed
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
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


def check_writes(dev, originals: OriginalsFile) -> dict:
    """Lock a mid clock, set a lower power limit, read both back, then restore."""
    lim = dev.limits()
    res: dict = {}
    originals.save_once(dev)
    saved = originals.saved(dev.info.uuid)
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
    finally:
        res["restore"] = [r.to_dict() for r in restore_settings(dev, saved, lim)]
        originals.forget(dev.info.uuid)
    return res


def torch_loop(kind: str, seconds: float, device_index: int) -> tuple[float, int]:
    """Run a memory-bound (copy) or compute-bound (matmul) loop; returns (seconds, iterations)."""
    import torch

    dev = torch.device(f"cuda:{device_index}")
    if kind == "memory":
        a = torch.empty(1 << 28, dtype=torch.float32, device=dev)  # 1 GiB
        b = torch.empty_like(a)
        step = lambda: b.copy_(a)  # noqa: E731
    else:
        a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
        step = lambda: a @ a  # noqa: E731
    for _ in range(5):
        step()
    torch.cuda.synchronize(dev)
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
    if policy_name:
        worker = GpuWorker(dev, load_policy(policy_name), default_config(), OriginalsFile(root / "originals.json"),
                           RealClock())
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
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
    return {"policy": policy_name or "default", "seconds": round(elapsed, 3), "iterations": iters,
            "joules": joules, "joules_per_iteration": joules / iters if joules else None,
            "seconds_per_iteration": elapsed / iters}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--read-only", action="store_true", help="only read: no clocks, limits or workloads")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each workload run")
    p.add_argument("--gpu", type=int, default=0, help="GPU index for writes and workloads")
    p.add_argument("--out", type=Path, help="write the JSON report here")
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
                runs = [energy_run(dev, kind, None, args.seconds, root),
                        energy_run(dev, kind, "balanced", args.seconds, root)]
                ref, gov = runs
                if ref["joules_per_iteration"] and gov["joules_per_iteration"]:
                    runs.append({"saved": 1 - gov["joules_per_iteration"] / ref["joules_per_iteration"],
                                 "slowdown": gov["seconds_per_iteration"] / ref["seconds_per_iteration"] - 1})
                report["workloads"][kind] = runs
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
