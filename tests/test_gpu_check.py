"""tools/gpu_check.py's read and write checks against the fake NVML (the real run needs a GPU)."""

import importlib.util
from pathlib import Path

from fake_nvml import FakeNvml, h100

from governor.nvml_backend import NvmlSystem
from governor.originals import OriginalsFile

spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).parent.parent / "tools" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


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
