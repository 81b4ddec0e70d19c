"""The NVML backend against a fake pynvml that answers like recorded A100 and H100 GPUs."""

import pytest
from fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_TIMEOUT,
    FakeNvml,
    a100,
    h100,
)

from governor.actuation import apply_setpoint, restore_settings
from governor.device import UNKNOWN_LOCK
from governor.errors import (
    DeviceTimeoutError,
    GpuLostError,
    NoDriverError,
    NoPermissionError,
    NotSupportedError,
)
from governor.nvml_backend import NvmlSystem
from governor.restore import restore_from_originals
from governor.settings import Setpoint


def system(*gpus):
    fake = FakeNvml(list(gpus) or [a100(), h100()])
    return fake, NvmlSystem(fake)


def test_enumerates_gpus_with_identity():
    _, s = system()
    devs = s.devices()
    assert [d.info.index for d in devs] == [0, 1]
    assert devs[0].info.name == "NVIDIA A100-SXM4-80GB" and devs[0].info.pci_bus_id == "00000000:07:00.0"
    assert devs[1].info.uuid.startswith("GPU-h100") and devs[1].info.backend == "nvml"
    assert s.by_uuid(devs[1].info.uuid).info.index == 1


def test_limits_from_the_gpu():
    _, s = system()
    a, h = s.devices()
    la, lh = a.limits(), h.limits()
    assert la.sm_clocks_mhz[0] == 210 and la.sm_clocks_mhz[-1] == 1410 and len(la.sm_clocks_mhz) == 81
    assert (la.power_limit_min_w, la.power_limit_max_w, la.power_limit_default_w) == (100, 400, 400)
    assert (lh.temp_slowdown_c, lh.temp_shutdown_c) == (87, 92)
    assert lh.capabilities.has_gpm and not la.capabilities.has_gpm
    assert lh.capabilities.has_instant_power and lh.capabilities.has_energy_counter
    assert lh.capabilities.can_lock_clocks and lh.capabilities.can_set_power_limit


def test_sample_reads_every_field():
    _, s = system()
    h = s.devices()[1]
    h.sample()  # the first GPM reading only takes the baseline sample
    smp = h.sample()
    assert (smp.gpu_util_pct, smp.mem_util_pct) == (87, 41)
    assert smp.power_w == 695.0 and smp.power_instant_w == 702.0
    assert smp.energy_mj == 123_456_789 and smp.temp_c == 61
    assert (smp.sm_clock_mhz, smp.mem_clock_mhz) == (1575, 2619)
    assert smp.power_limit_w == 700 and smp.clock_event_reasons == 0x4
    assert (smp.sm_activity_pct, smp.dram_bw_pct) == (72.5, 38.0)
    assert s.devices()[0].sample().sm_activity_pct is None  # A100: no GPM


def test_missing_instant_power_field_falls_back_to_the_average():
    g = h100()
    g.fail["nvmlDeviceGetFieldValues"] = NVML_ERROR_NOT_SUPPORTED
    _, s = system(g)
    d = s.devices()[0]
    assert not d.limits().capabilities.has_instant_power
    assert d.sample().power_instant_w is None and d.sample().power_w == 695.0


def test_apply_and_restore_through_the_shared_actuation_code():
    fake, s = system()
    a = s.devices()[0]
    lim = a.limits()
    assert a.get_locked_clocks() == UNKNOWN_LOCK
    saved = a.read_settings()
    assert not saved.clocks_known and saved.power_limit_w == 400
    results = apply_setpoint(a, lim, Setpoint(sm_clock_max_mhz=1200, power_limit_w=300), None)
    assert all(r.ok for r in results)
    assert fake.gpus[0].locked == (210, 1200) and fake.gpus[0].pl_mw == 300_000
    assert all(r.ok for r in restore_settings(a, saved, lim))
    assert fake.gpus[0].locked is None and fake.gpus[0].pl_mw == 400_000


def test_no_permission_names_the_capability():
    g = a100()
    g.fail["nvmlDeviceSetGpuLockedClocks"] = NVML_ERROR_NO_PERMISSION
    _, s = system(g)
    with pytest.raises(NoPermissionError, match="root or CAP_SYS_ADMIN"):
        s.devices()[0].set_locked_clocks(210, 1200)


def test_not_supported_says_the_gpu_keeps_running():
    g = a100()
    g.fail["nvmlDeviceSetPowerManagementLimit"] = NVML_ERROR_NOT_SUPPORTED
    _, s = system(g)
    with pytest.raises(NotSupportedError, match="GPU keeps running without that knob"):
        s.devices()[0].set_power_limit_w(300)


def test_mig_partitions_cannot_lock_clocks():
    g = a100()
    g.mig = True
    _, s = system(g)
    d = s.devices()[0]
    assert not d.limits().capabilities.can_lock_clocks and d.limits().capabilities.is_mig
    with pytest.raises(NotSupportedError, match="MIG partitions cannot lock clocks"):
        d.set_locked_clocks(210, 1200)
    result = apply_setpoint(d, d.limits(), Setpoint(sm_clock_max_mhz=1200, power_limit_w=300), None)
    assert [r.knob for r in result] == ["power_limit"]  # the clock knob is skipped, not failed


def test_no_driver_message():
    for code in (NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED):
        with pytest.raises(NoDriverError, match="no NVIDIA driver found; run with --sim GPU"):
            NvmlSystem(FakeNvml([], init_error=code))


def test_lost_gpu_and_timeout_are_distinct_errors():
    g = h100()
    g.fail["nvmlDeviceGetUtilizationRates"] = NVML_ERROR_GPU_IS_LOST
    _, s = system(g)
    with pytest.raises(GpuLostError):
        s.devices()[0].sample()
    g.fail["nvmlDeviceGetUtilizationRates"] = NVML_ERROR_TIMEOUT
    with pytest.raises(DeviceTimeoutError):
        s.devices()[0].sample()


def test_offline_restore_of_nvml_gpus(tmp_path):
    fake, s = system()
    from governor.originals import OriginalsFile

    orig = OriginalsFile(tmp_path / "originals.json")
    for d in s.devices():
        orig.save_once(d)
        d.set_locked_clocks(d.limits().sm_clock_min_mhz, 1200)
        d.set_power_limit_w(300)
    orig._data["owner"]["pid"] = 999_999_999  # the daemon is gone
    from governor.atomic import write_json_atomic

    write_json_atomic(orig.path, orig._data)
    report = restore_from_originals(orig.path, nvml=fake)
    assert report.ok and [g["index"] for g in report.gpus] == [1, 0]  # reverse order of first write
    assert all(g.locked is None for g in fake.gpus)
    assert [g.pl_mw for g in fake.gpus] == [400_000, 700_000]
    assert not orig.path.exists()


def test_restore_keeps_going_when_one_knob_fails(tmp_path):
    g = a100()
    fake, s = system(g, h100())
    from governor.originals import OriginalsFile

    orig = OriginalsFile(tmp_path / "originals.json")
    for d in s.devices():
        orig.save_once(d)
        d.set_power_limit_w(300)
    g.fail["nvmlDeviceSetPowerManagementLimit"] = NVML_ERROR_NO_PERMISSION
    data = orig._data
    data["owner"]["pid"] = 999_999_999
    from governor.atomic import write_json_atomic

    write_json_atomic(orig.path, data)
    report = restore_from_originals(orig.path, nvml=fake)
    assert not report.ok
    by_index = {r["index"]: r for r in report.gpus}
    assert by_index[1]["ok"] and not by_index[0]["ok"]
    assert by_index[0]["knobs"][1]["ok"]  # the clock reset still ran after the power limit failed
    assert fake.gpus[1].pl_mw == 700_000
    remaining = OriginalsFile.read(orig.path)["gpus"]
    assert list(remaining) == [g.uuid]  # only the failed GPU stays for a later try
    line = [x for x in orig.path.read_text().splitlines() if g.uuid in x]
    assert len(line) == 1 and '"power_limit_w"' in line[0]  # the daemon's format: `grep` the uuid


NVML_HOST = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from fake_nvml import FakeNvml, a100, h100
from governor.clock import RealClock
from governor.daemon import Daemon, DaemonOptions
from governor.nvml_backend import NvmlSystem
from governor.paths import resolve_paths

paths = resolve_paths(sys.argv[1])
system = NvmlSystem(FakeNvml([a100(), h100()]))
d = Daemon(paths, DaemonOptions(policy="balanced", duration_s=1.0), list(system.devices()), RealClock())
code = d.run()
loaded = sorted(m for m in sys.modules if m.startswith(("governor.sim", "governor.lab", "matplotlib")))
print(code, ",".join(loaded) or "-")
"""


def test_the_daemon_on_an_nvml_host_loads_neither_the_simulator_nor_the_lab(tmp_path):
    """The product apart from the lab: a daemon with NVML GPUs runs, stops, and has imported no
    simulator, oracle, peer or plotting module (checked in a fresh interpreter)."""
    import subprocess
    import sys
    from pathlib import Path

    r = subprocess.run([sys.executable, "-c", NVML_HOST, str(tmp_path), str(Path(__file__).parent)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    code, loaded = r.stdout.split()
    assert code == "0" and loaded == "-", loaded
