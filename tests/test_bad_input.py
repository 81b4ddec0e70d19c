"""Bad input gets a clear error that names what was wrong: never a traceback, never a wrong culprit."""

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governor.config import SCHEMA, load_config
from governor.errors import ConfigError, GovdError, TraceError
from governor.sim.trace import load_trace, trace_from_dict


def govd(root, *args):
    return subprocess.run([sys.executable, "-m", "governor.cli.govd", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60)


def govctl(root, *args):
    return subprocess.run([sys.executable, "-m", "governor.cli.govctl", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=120)


def test_a_binary_trace_file_is_a_clear_error_in_govd_and_govctl_simulate(tmp_path):
    trace = tmp_path / "trace.bin"
    trace.write_bytes(bytes(range(256)) * 4)
    for r in (govd(tmp_path, "--sim", "h100-sxm", "--trace", str(trace), "--duration", "1"),
              govctl(tmp_path, "simulate", "--gpu", "h100-sxm", "--trace", str(trace))):
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert str(trace) in r.stderr and "not a text file" in r.stderr


def test_a_bad_gpu_policy_is_blamed_on_its_file_and_key(tmp_path):
    (tmp_path / "etc").mkdir()
    conf = tmp_path / "etc" / "govd.toml"
    conf.write_text('[gpu.0]\npolicy = "turbo"\n')
    r = govd(tmp_path, "--sim", "h100-sxm", "--duration", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{conf}: gpu.0.policy: 'turbo': unknown policy" in r.stderr and "--policy" not in r.stderr
    conf.write_text('[daemon]\npolicy = "/nonexistent/p.toml"\n')
    r = govd(tmp_path, "--sim", "h100-sxm", "--duration", "1")
    assert r.returncode == 1 and f"{conf}: daemon.policy: '/nonexistent/p.toml': policy file does not exist" \
        in r.stderr


def test_an_admin_group_that_does_not_exist_is_refused_at_start(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "govd.toml").write_text('[socket]\nadmin_group = "nosuchgroup-govd"\n')
    r = govd(tmp_path, "--sim", "h100-sxm", "--duration", "1")
    assert r.returncode == 1 and "socket.admin_group: no group 'nosuchgroup-govd' on this host" in r.stderr


def test_since_banana_is_blamed_on_since(tmp_path):
    r = govctl(tmp_path, "ledger", "--since", "banana")
    assert r.returncode == 1 and "--since 'banana'" in r.stderr and "--for" not in r.stderr


def test_an_unwritable_snapshot_path_is_a_clear_error(tmp_path):
    from governor.cli import govctl as cli

    class Args:
        socket = str(tmp_path / "govd.sock")
        root = None
        file = str(tmp_path / "no" / "such" / "folder" / "snap.json")

    calls = []
    original = cli.call
    cli.call = lambda *a, **k: calls.append(a) or {"x": 1}
    try:
        try:
            cli.cmd_snapshot(Args(), None)
            raise AssertionError("no error")
        except GovdError as exc:
            assert "cannot write the snapshot to" in str(exc) and "snap.json" in str(exc)
    finally:
        cli.call = original


def test_a_non_finite_number_in_the_config_is_refused(tmp_path):
    conf = tmp_path / "govd.toml"
    conf.write_text("[daemon]\nstatus_log_s = nan\n")
    try:
        load_config(conf)
        raise AssertionError("accepted nan")
    except ConfigError as exc:
        assert "daemon.status_log_s" in str(exc) and "finite" in str(exc)


KEYS = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys] + ["gpu.0.policy", "gpu.x.manage", "nope.key"]
VALUES = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.text(max_size=12), st.lists(st.integers(-5, 5000), max_size=30))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=6))
def test_fuzz_config_random_toml_gets_a_config_error_or_loads(tmp_path, entries):
    lines = []
    for key, value in entries:
        section, name = key.rsplit(".", 1)
        lines += [f"[{section}]", f"{name} = {toml_value(value)}"]
    conf = tmp_path / "govd.toml"
    conf.write_text("\n".join(lines) + "\n")
    try:
        cfg = load_config(conf)
    except ConfigError as exc:
        assert str(conf) in str(exc)
        return
    for section, keys in SCHEMA.items():  # whatever loaded is within its documented range
        for name, key in keys.items():
            value = cfg.values[section][name]
            if key.lo is not None and isinstance(value, int | float):
                assert value >= key.lo


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_fuzz_config_and_trace_random_bytes_get_a_clear_error(tmp_path, data):
    path = tmp_path / "f.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)
    try:
        load_trace(str(path))
    except TraceError as exc:
        assert str(path) in str(exc)


TRACE_VALUES = st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8),
                         st.booleans(), st.lists(st.integers(), max_size=3))
PHASE = st.dictionaries(st.sampled_from(["name", "seconds", "busy", "clock_bound", "intensity", "dram", "slack",
                                         "request_s", "bogus"]),
                        st.one_of(TRACE_VALUES, st.sampled_from(["serial", "arrival"])), max_size=8)


@settings(max_examples=300, deadline=None)
@given(top=st.dictionaries(st.sampled_from(["format", "name", "description", "ambient_c", "seed", "repeat", "x"]),
                           st.one_of(TRACE_VALUES, st.just(1), st.just("t")), max_size=6),
       phases=st.one_of(st.lists(st.one_of(PHASE, TRACE_VALUES), max_size=3), TRACE_VALUES))
def test_fuzz_trace_tables_get_a_trace_error_or_load(top, phases):
    data = {**{k: v for k, v in top.items() if v is not None}, "phase": phases}
    try:
        trace = trace_from_dict(data, "fuzz")
    except TraceError as exc:
        assert str(exc).startswith("fuzz")
        return
    assert trace.phases and all(p.seconds > 0 and 0 < p.busy <= 1 for p in trace.phases)


def test_fuzz_covers_the_schema():
    assert Path(__file__).exists() and len(KEYS) > 20
