import pytest

from governor.errors import TraceError
from governor.sim.trace import builtin_traces, load_trace, trace_from_dict

GOOD = {"format": 1, "name": "x", "phase": [{"seconds": 1.0, "busy": 0.5, "clock_bound": 0.5, "intensity": 1.0,
                                              "dram": 0.2}]}


def with_phase(**changes):
    d = {**GOOD, "phase": [{**GOOD["phase"][0], **changes}]}
    return {k: v for k, v in d.items()}


def test_defaults_follow_the_format():
    t = trace_from_dict(GOOD, "t")
    assert t.ambient_c == 30.0 and t.repeat == 1 and t.seed == 0
    assert t.phases[0].slack == "serial"


@pytest.mark.parametrize("key", ["seconds", "busy", "clock_bound", "intensity", "dram"])
def test_missing_phase_field_is_named(key):
    d = with_phase()
    del d["phase"][0][key]
    with pytest.raises(TraceError, match=rf"phase\[0\]\.{key} is missing"):
        trace_from_dict(d, "t.toml")


@pytest.mark.parametrize("key,value", [("busy", 0.0), ("busy", 1.2), ("clock_bound", -0.1), ("intensity", 1.6),
                                       ("dram", 2), ("seconds", 0)])
def test_out_of_range_field_is_named_with_its_range(key, value):
    with pytest.raises(TraceError, match=rf"phase\[0\]\.{key} = {value} is out of range; allowed"):
        trace_from_dict(with_phase(**{key: value}), "t.toml")


def test_unknown_key_gets_a_suggestion():
    with pytest.raises(TraceError, match="did you mean 'intensity'"):
        trace_from_dict(with_phase(intensty=1.0), "t.toml")


def test_bad_slack_and_format():
    with pytest.raises(TraceError, match="slack"):
        trace_from_dict(with_phase(slack="later"), "t")
    with pytest.raises(TraceError, match="format must be 1"):
        trace_from_dict({**GOOD, "format": 2}, "t")


def test_builtin_suite_loads_and_covers_the_workload_kinds():
    names = builtin_traces()
    for required in ("gemm", "decode", "training", "training-stalls", "pipeline-bubbles", "llm-serving",
                     "bursty-inference", "idle", "fast-phases", "hot-room"):
        assert required in names
    for n in names:
        assert load_trace(n).phases


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(TraceError, match="no such trace"):
        load_trace(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("format = = 1")
    with pytest.raises(TraceError, match="not valid TOML"):
        load_trace(str(bad))


def test_request_s_follows_the_trace_format(make_trace):
    import pytest

    from governor.errors import TraceError

    arrival = {"name": "d", "seconds": 5.0, "busy": 0.5, "clock_bound": 0.1, "intensity": 0.1, "dram": 0.5,
               "slack": "arrival"}
    assert make_trace(arrival).phases[0].request_s == 0.1  # the format's default
    assert make_trace({**arrival, "request_s": 0.02}).phases[0].request_s == 0.02
    with pytest.raises(TraceError, match="request_s"):
        make_trace({**arrival, "request_s": 0.0})
    with pytest.raises(TraceError, match="only arrival phases have requests"):
        make_trace({**arrival, "slack": "serial", "request_s": 0.05})


def test_a_knee_is_optional_and_makes_the_phase_a_roofline():
    plain = trace_from_dict(GOOD, "t").phases[0]
    assert plain.knee_mhz is None
    assert plain.kernel_stretch(1000.0, 2000.0) == pytest.approx(0.5 * 2 + 0.5)  # trace-format.md's line
    p = trace_from_dict(with_phase(clock_bound=0.0, knee_mhz=1500), "t").phases[0]
    assert p.knee_mhz == 1500.0
    assert p.kernel_stretch(1980.0, 1980.0) == 1.0 and p.kernel_stretch(1600.0, 1980.0) == 1.0  # memory's pace
    assert p.kernel_stretch(1000.0, 1980.0) == pytest.approx(1.5)  # below the knee, the clock's
    # default settings already below the knee (a power cap): normalised to 1 there
    assert p.kernel_stretch(1200.0, 1200.0) == pytest.approx(1.0)
    assert p.kernel_stretch(1000.0, 1200.0) == pytest.approx(1.2)


def test_a_bad_knee_is_named_with_its_range():
    with pytest.raises(TraceError, match=r"phase\[0\]\.knee_mhz = -5 is out of range; allowed \(0.0, 10000.0\]"):
        trace_from_dict(with_phase(knee_mhz=-5), "t.toml")
    with pytest.raises(TraceError, match=r"phase\[0\]\.knee_mhz must be a number"):
        trace_from_dict(with_phase(knee_mhz="fast"), "t.toml")


def test_a_knee_survives_saving_the_trace():
    import tomllib

    from governor.sim.generate import to_toml

    t = trace_from_dict(with_phase(knee_mhz=1450.0), "t")
    assert trace_from_dict(tomllib.loads(to_toml(t)), "saved").phases[0].knee_mhz == 1450.0
