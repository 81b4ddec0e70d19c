import pytest

from governor.errors import ConfigError
from governor.policy import load_policy, policy_names


def test_shipped_policies_load():
    for name in policy_names(None):
        p = load_policy(name)
        assert p.name and p.controller


def test_a_path_works_and_admin_overrides_shipped(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\ncontroller = "static"\n[params]\nsm_clock_max_mhz = 1200\n')
    assert load_policy(str(f)).params == {"sm_clock_max_mhz": 1200}
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "performance.toml").write_text('name = "performance"\ncontroller = "static"\n')
    assert load_policy("performance", tmp_path).controller == "static"
    assert load_policy("performance").controller == "default"


@pytest.mark.parametrize("text,match", [
    ('name = "x"\ncontroller = "static"\n[params]\nsm_clock_max = 1\n',
     r"params.sm_clock_max: unknown key; did you mean"),
    ('name = "x"\ncontroller = "static"\n[params]\npower_limit_frac = 3.0\n', r"params.power_limit_frac: got 3.0"),
    ('name = "x"\ncontroller = "warp"\n', r"unknown controller 'warp'; available: default"),
    ('controller = "static"\n', r"name: missing"),
    ('name = "x"\ncontroller = "static"\n[bounds]\nsm_clock_min_mhz = 1500\nsm_clock_max_mhz = 1000\n',
     r"bounds.sm_clock_min_mhz: 1500 is above"),
])
def test_bad_policy_is_refused_with_file_key_and_allowed(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_policy(str(f))


def test_unknown_policy_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown policy; available: balanced, batch, max-savings, performance"):
        load_policy("turbo")


def test_a_model_heuristic_is_set_only_under_expert():
    import pytest

    from governor.errors import ConfigError
    from governor.policy import policy_from_dict

    base = {"name": "p", "controller": "model"}
    with pytest.raises(ConfigError, match=r"params.cusum_drift: a heuristic of 'model': set it under \[expert\]"):
        policy_from_dict({**base, "params": {"cusum_drift": 0.1}}, "p.toml")
    p = policy_from_dict({**base, "params": {"slowdown_budget": 0.05}, "expert": {"cusum_drift": 0.1}}, "p.toml")
    assert p.params == {"slowdown_budget": 0.05} and p.expert == {"cusum_drift": 0.1}
    with pytest.raises(ConfigError, match="expert.slowdown_budget"):
        policy_from_dict({**base, "expert": {"slowdown_budget": 0.05}}, "p.toml")
