"""tools/gpu_check.py's read and write checks against the fake NVML (the real run needs a GPU)."""


import pytest
from fake_nvml import FakeNvml, h100
from tool_loader import load_tool

from governor.nvml_backend import NvmlSystem
from governor.originals import OriginalsFile

gpu_check = load_tool("gpu_check")


def test_reads_and_writes_restore_what_they_changed(tmp_path):
    fake = FakeNvml([h100()])
    dev = NvmlSystem(fake).devices()[0]
    reads = gpu_check.check_reads(dev)
    assert reads["limits"]["sm_clocks_mhz"] == [345, 1980, 110] and reads["sample"]["power_w"] == 695.0
    writes = gpu_check.check_writes(dev, OriginalsFile(tmp_path / "originals.json"))
    assert writes["lock"]["ok"] and writes["power_limit"]["read_back_w"] == 560
    assert all(r["ok"] for r in writes["restore"])
    assert fake.gpus[0].locked is None and fake.gpus[0].pl_mw == 700_000
    assert not (tmp_path / "originals.json").exists()


class _StubTorch:
    """Just enough of torch for the loops: a step that costs nothing, a synchronize that waits 1 ms."""

    float32 = bfloat16 = None

    def __init__(self, fail_after: int | None = None):
        self.steps = 0
        self.fail_after = fail_after
        self.cuda = self

    def device(self, name):
        return name

    def synchronize(self, dev):
        import time

        time.sleep(0.001)

    def _tensor(self, *args, **kwargs):
        return self

    empty = empty_like = randn = _tensor

    def copy_(self, other):
        self.steps += 1
        if self.fail_after is not None and self.steps > self.fail_after:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_clock_sweep_locks_each_clock_then_restores(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", _StubTorch())
    fake = FakeNvml([h100()])
    dev = NvmlSystem(fake).devices()[0]
    locks = []
    real_lock = dev.set_locked_clocks
    monkeypatch.setattr(dev, "set_locked_clocks", lambda lo, hi: (locks.append(hi), real_lock(lo, hi)))
    rows = gpu_check.clock_sweep(dev, "memory", 0.02, OriginalsFile(tmp_path / "originals.json"), settle_s=0.01)
    assert [r["ceiling_mhz"] for r in rows] == locks and len(locks) == 6
    assert locks == sorted(locks, reverse=True) and locks[0] == 1980 and locks[-1] > 345
    assert all(r["seconds_per_iteration"] > 0 for r in rows)
    assert fake.gpus[0].locked is None and not (tmp_path / "originals.json").exists()


def test_clock_sweep_restores_when_the_loop_fails(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", _StubTorch(fail_after=50))
    fake = FakeNvml([h100()])
    dev = NvmlSystem(fake).devices()[0]
    with pytest.raises(RuntimeError, match="illegal memory access"):
        gpu_check.clock_sweep(dev, "memory", 0.05, OriginalsFile(tmp_path / "originals.json"), settle_s=0.01)
    assert fake.gpus[0].locked is None and fake.gpus[0].pl_mw == 700_000


def test_a_policy_run_keeps_a_timeline_and_hands_the_gpu_back(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", _StubTorch())
    fake = FakeNvml([h100()])
    dev = NvmlSystem(fake).devices()[0]
    run = gpu_check.energy_run(dev, "memory", "batch", 1.3, tmp_path)
    assert run["policy"] == "batch" and run["iterations"] > 0
    assert run["timeline"], "no timeline row in 1.3 s"
    row = run["timeline"][0]
    assert row["state"] is not None and row["gpu_util_pct"] is not None and "ceiling_mhz" in row
    assert fake.gpus[0].locked is None and fake.gpus[0].pl_mw == 700_000
