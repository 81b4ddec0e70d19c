"""Shared fixtures. Helpers come as fixtures (make_trace, static_policy, gemm_phase), never by
importing this file."""

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
