"""Errors keep their message, type and details when they cross a process boundary.

The benchmark tools run simulations in a process pool; a policy file with a bad key raised a
ConfigError there that could not be unpickled, and the operator saw only that a worker process
had died."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from governor.control_client import CommandFailed
from governor.errors import (
    ConfigError,
    GpuLostError,
    NoDriverError,
    NoPermissionError,
    NotSupportedError,
    TraceError,
)

ERRORS = [
    ConfigError("/tmp/p.toml", "expert.refresh_s", "unknown key; allowed: settle_s, measure_s"),
    NoPermissionError("nvmlDeviceSetGpuLockedClocks"),
    NotSupportedError("power limit", "MIG instance"),
    GpuLostError("nvmlDeviceGetPowerUsage"),
    NoDriverError("libnvidia-ml.so.1: not found"),
    TraceError("gen:nope:1: unknown family 'nope'"),
    CommandFailed("forbidden", "changing settings needs root or the admin group"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_survives_pickling_as_itself(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)  # not wrapped a second time by the constructor
    assert back.__dict__ == error.__dict__


def _load_bad_policy(path: str) -> None:
    from governor.policy import load_policy

    load_policy(path)


def test_a_bad_policy_in_a_worker_process_reaches_the_caller_as_a_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ncontroller = "model"\n\n[expert]\nno_such_knob = 1.0\n')
    with ProcessPoolExecutor(1) as pool, pytest.raises(ConfigError) as caught:
        pool.submit(_load_bad_policy, str(bad)).result(timeout=60)
    assert caught.value.source == str(bad)
    assert "no_such_knob" in str(caught.value)
