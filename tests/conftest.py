"""Shared fixtures. Helpers come as fixtures (make_trace, static_policy, gemm_phase), never by
importing this file."""

import threading
import time

import pytest

from governor.clock import VirtualClock
from governor.config import default_config
from governor.originals import OriginalsFile
from governor.policy import Policy
from governor.sim.device import SimDevice
from governor.sim.spec import load_spec
from governor.sim.trace import trace_from_dict

GEMM_PHASE = {"name": "p", "seconds": 30.0, "busy": 1.0, "clock_bound": 1.0, "intensity": 1.0, "dram": 0.3}


def _make_trace(*phases, **top):
    data = {"format": 1, "name": top.pop("name", "t"), "seed": top.pop("seed", 1), **top,
            "phase": [dict(p) for p in phases]}
    return trace_from_dict(data, "test")


def _static_policy(**params):
    return Policy(name="static-test", controller="static", params=params, source="test")


class InProcessDaemon:
    """A daemon on simulated GPUs in a thread of the test process (started and stopped by the test)."""

    def __init__(self, root, gpus=("h100-sxm", "a100-sxm4"), trace="decode", speed=5.0):
        from governor.backends import open_sim_devices
        from governor.clock import RealClock
        from governor.daemon import Daemon, DaemonOptions
        from governor.paths import resolve_paths
        from governor.sim.trace import load_trace

        self.paths = resolve_paths(root)
        self.paths.ensure()
        clock = RealClock(speed=speed)
        devices = open_sim_devices(list(gpus), clock, self.paths.runtime_dir, load_trace(trace))
        self.daemon = Daemon(self.paths, DaemonOptions(), devices, clock)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def start(self, ready, timeout_s: float = 20.0):
        """Run it until ready(daemon) holds (bounded)."""
        self.thread.start()
        end = time.monotonic() + timeout_s
        while not ready(self.daemon) and time.monotonic() < end:
            time.sleep(0.05)
        return self.daemon

    def stop(self) -> None:
        self.daemon.stop()
        self.thread.join(30)


@pytest.fixture(scope="session")
def in_process_daemon():
    """InProcessDaemon(root, gpus=..., trace=..., speed=...): start() it, stop() it in a finally."""
    return InProcessDaemon


@pytest.fixture
def training_daemon_on_root(root, in_process_daemon):
    """A running in-process govd on the requesting module's `root` (h100 and a100 replaying
    `training`), stopped after the test, pass or fail."""
    run = in_process_daemon(root, trace="training")
    d = run.start(lambda d: d.paths.socket.exists())
    try:
        yield d
    finally:
        run.stop()


@pytest.fixture
def make_trace():
    """make_trace(*phase_tables, **top_keys): a trace built from tables, as trace-format.md has them."""
    return _make_trace


@pytest.fixture
def gemm_phase():
    """A 30 s compute-bound phase (a dense GEMM), as a trace's [[phase]] table."""
    return dict(GEMM_PHASE)


@pytest.fixture
def static_policy():
    """static_policy(**params): a `static` policy with these parameters."""
    return _static_policy


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def sim(tmp_path, clock):
    """A simulated h100 with a 30 s GEMM phase, its originals file and a config."""
    dev = SimDevice(load_spec("h100-sxm"), 0, clock, tmp_path / "sim", trace=_make_trace(GEMM_PHASE))
    return dev


@pytest.fixture
def originals(tmp_path):
    return OriginalsFile(tmp_path / "originals.json")


@pytest.fixture
def config():
    return default_config()
