"""Third-party controllers register through the `govd.controllers` entry-point group."""

import sys
import textwrap

from governor.lab.simulate import run_trace
from governor.policy import policy_from_dict
from governor.sim.spec import load_spec


def test_a_plugin_controller_is_found_and_runs(tmp_path, monkeypatch, gemm_phase, make_trace):
    pkg = tmp_path / "tinyctl.py"
    pkg.write_text(textwrap.dedent('''
        from governor.controllers.base import Controller
        from governor.config_keys import Key
        from governor.settings import Setpoint

        class HalfClock(Controller):
            name = "half-clock"
            PARAMS = {"fraction": Key(float, 0.5, lo=0.1, hi=1.0)}

            def decide(self, sample, context=None):
                f = self.limits.snap_clock(self.limits.sm_clock_max_mhz * self.params["fraction"])
                return Setpoint(sm_clock_min_mhz=self.limits.sm_clock_min_mhz, sm_clock_max_mhz=f)
    '''))
    dist = tmp_path / "tinyctl-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyctl\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[govd.controllers]\nhalf-clock = tinyctl:HalfClock\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    policy = policy_from_dict({"name": "half", "controller": "half-clock", "params": {"fraction": 0.5}}, "test")
    trace = make_trace({**gemm_phase, "seconds": 5.0})
    result = run_trace(load_spec("h100-sxm"), trace, policy)
    assert result.writes >= 1
    assert result.seconds > 7.0  # a compute-bound phase at half clock takes about twice as long
    sys.modules.pop("tinyctl", None)


def test_a_broken_plugin_is_a_config_error(tmp_path, monkeypatch):
    import pytest

    from governor.errors import ConfigError

    dist = tmp_path / "broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[govd.controllers]\nbroken = no_such_module:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="failed to load"):
        policy_from_dict({"name": "b", "controller": "broken"}, "test")


def test_a_plugin_written_for_the_old_contract_is_a_clear_config_error(tmp_path, monkeypatch):
    import pytest

    from governor.errors import ConfigError

    (tmp_path / "oldctl.py").write_text(textwrap.dedent('''
        from governor.controllers.base import Controller
        from governor.settings import Setpoint

        class Old(Controller):
            name = "old"

            def decide(self, sample):
                return Setpoint()
    '''))
    dist = tmp_path / "oldctl-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: oldctl\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[govd.controllers]\nold = oldctl:Old\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"decide\(self, sample, context\)"):
        policy_from_dict({"name": "o", "controller": "old"}, "test")
    sys.modules.pop("oldctl", None)
