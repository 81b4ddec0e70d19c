import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from governor.clock import VirtualClock  # noqa: E402
from governor.config import default_config  # noqa: E402
from governor.originals import OriginalsFile  # noqa: E402
from governor.policy import Policy  # noqa: E402
from governor.sim.device import SimDevice  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import trace_from_dict  # noqa: E402


def make_trace(*phases, **top):
    data = {"format": 1, "name": top.pop("name", "t"), "seed": top.pop("seed", 1), **top,
            "phase": [dict(p) for p in phases]}
    return trace_from_dict(data, "test")


PHASE = {"name": "p", "seconds": 30.0, "busy": 1.0, "clock_bound": 1.0, "intensity": 1.0, "dram": 0.3}


def static_policy(**params):
    return Policy(name="static-test", controller="static", params=params, source="test")


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def sim(tmp_path, clock):
    """A simulated h100 with a 30 s GEMM phase, its originals file and a config."""
    dev = SimDevice(load_spec("h100-sxm"), 0, clock, tmp_path / "sim", trace=make_trace(PHASE))
    return dev


@pytest.fixture
def originals(tmp_path):
    return OriginalsFile(tmp_path / "originals.json")


@pytest.fixture
def config():
    return default_config()
